"""``Tok``: a thin wrapper over ``tokenizers.Tokenizer`` that knows its family's special ids."""

from __future__ import annotations

import contextlib
import gc
import json
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from tokenizers import Tokenizer

from ..errors import ConfigError, InputError
from ..runs import atomic_write_json, atomic_write_text
from ..text.scripts import CJK_CHARS
from . import chat
from .chat import CHAT_TEMPLATE_FILE, HF_CONFIG_FILE, ChatRender, ChatTemplate
from .specials import ROLES, assign_roles, infer_family

TOKENIZER_FILE = "tokenizer.json"
META_FILE = "tokenizer_meta.json"

# WordPiece decoding joins every token with a space; CJK text has none between characters.
_CJK_SPACE = re.compile(rf"(?<=[{CJK_CHARS}]) (?=[{CJK_CHARS}])")
_METASPACE = "\u2581"


@dataclass
class Encoding:
    """One encoded text (or pair, or window of one), as plain Python lists aligned with ``ids``.

    ``offsets`` are character (not byte) spans into the original string of the token's sequence (the
    word itself when the input was split into words); specials and tokens that stand for no text (a
    SentencePiece-style prefix ``▁``) get empty spans, specials ``(0, 0)``. Byte-level BPE offsets
    include the leading space the token carries, and the byte pieces of one character share its span.
    ``missing_words`` lists ``(sequence_id, word_index)`` of input words that produced no token (a lone
    space or control character): label them yourself, they have no position to carry a label.
    """

    ids: list[int]
    type_ids: list[int]
    tokens: list[str]
    offsets: list[tuple[int, int]]
    word_ids: list[int | None]
    sequence_ids: list[int | None]
    special_tokens_mask: list[int]
    missing_words: list[tuple[int, int]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ids)


class Tok:
    """Encode/decode plus the special ids the trainers and models need (None where absent)."""

    def __init__(self, hf: Tokenizer, meta: dict[str, Any] | None = None):
        self.hf = hf
        specials = [t.content for t in hf.get_added_tokens_decoder().values() if t.special]
        meta = dict(meta or {})
        meta.setdefault("kind", _guess_kind(hf))
        meta.setdefault("family", infer_family(specials))
        meta.setdefault("special_tokens", specials)
        meta.setdefault("roles", assign_roles(meta["special_tokens"]))
        self.meta = meta
        self.kind: str = meta["kind"]
        self.family: str = meta["family"]
        self.special_tokens: list[str] = list(meta["special_tokens"])
        ids = {role: (hf.token_to_id(tok) if tok else None) for role, tok in meta["roles"].items()}
        self.eos_id: int | None = ids.get("eos")
        self.bos_id: int | None = ids.get("bos")
        self.pad_id: int | None = ids.get("pad")
        self.unk_id: int | None = ids.get("unk")
        self.cls_id: int | None = ids.get("cls")
        self.sep_id: int | None = ids.get("sep")
        self.mask_id: int | None = ids.get("mask")
        self._chat_template: ChatTemplate | None = None
        # Tokenizer copies with a fixed setting (truncation for windows, specials-as-text for chat
        # contents), so ``self.hf`` keeps no padding/truncation and needs no set-and-restore.
        self._variants: dict[tuple, Tokenizer] = {}
        self._markup: dict[str, list[int]] = {}

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_variants"], state["_markup"] = {}, {}  # caches: rebuilt on demand
        return state

    # -- encoding ---------------------------------------------------------------------------

    @property
    def vocab_size(self) -> int:
        return self.hf.get_vocab_size(with_added_tokens=True)

    def __len__(self) -> int:
        return self.vocab_size

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        """Plain ids by default; ``add_special_tokens`` applies the family template ([CLS] .. [SEP])."""
        return self.hf.encode(text, add_special_tokens=add_special_tokens).ids

    def encode_batch(self, texts: list[str], add_special_tokens: bool = False) -> list[list[int]]:
        """Batch encode on the Rust side's thread pool (all cores)."""
        if not texts:
            return []
        # encode_batch_fast (tokenizers >= 0.21) skips offset tracking, which we never use
        fast = getattr(self.hf, "encode_batch_fast", self.hf.encode_batch)
        return [e.ids for e in fast(list(texts), add_special_tokens=add_special_tokens)]

    def encode_full(self, text: str | Sequence[str], pair: str | Sequence[str] | None = None,
                    add_special_tokens: bool = True, max_length: int | None = None, stride: int = 0,
                    return_overflow: bool = False, is_split_into_words: bool = False) -> Encoding | list[Encoding]:
        """Ids with offsets, word ids, sequence ids and special-token mask (see ``Encoding``).

        ``pair`` is the second sequence ([CLS] a [SEP] b [SEP] for BERT-family tokenizers; plain
        concatenation for byte-level BPE, which has no template). ``max_length`` truncates; with
        ``return_overflow`` the result is a list of windows of at most ``max_length`` tokens that
        overlap by ``stride`` tokens: for QA pass the question as ``text`` and the context as ``pair``,
        every window repeats the whole question and covers the next part of the context.
        ``is_split_into_words``: ``text`` (and ``pair``) are lists of words, e.g. CoNLL tokens or one
        Chinese character per word; ``word_ids`` then index those words.
        """
        out = self.encode_full_batch([text], None if pair is None else [pair], add_special_tokens=add_special_tokens,
                                     max_length=max_length, stride=stride, return_overflow=return_overflow,
                                     is_split_into_words=is_split_into_words)
        return out[0]

    def encode_full_batch(self, texts: Sequence[str | Sequence[str]], pairs: Sequence[str | Sequence[str]] | None = None,
                          add_special_tokens: bool = True, max_length: int | None = None, stride: int = 0,
                          return_overflow: bool = False, is_split_into_words: bool = False
                          ) -> list[Encoding] | list[list[Encoding]]:
        """``encode_full`` for many inputs on the Rust batch encoder; one list of windows per input
        with ``return_overflow``."""
        texts = list(texts)
        if pairs is not None:
            pairs = list(pairs)
            if len(pairs) != len(texts):
                raise InputError(f"encode_full_batch: {len(texts)} texts but {len(pairs)} pairs",
                                 "pass one pair per text, or pairs=None")
        _check_inputs(texts, is_split_into_words, "texts")
        if pairs is not None:
            _check_inputs(pairs, is_split_into_words, "pairs")
        if not texts:
            return []
        inputs: list = texts if pairs is None else list(zip(texts, pairs))
        kw = dict(is_pretokenized=is_split_into_words, add_special_tokens=add_special_tokens)
        hf = self.hf
        if max_length is not None:
            hf = self._truncating(texts, pairs is not None, max_length, stride if return_overflow else 0,
                                  return_overflow, add_special_tokens, is_split_into_words)
        with _no_gc():  # millions of small lists: the cyclic GC's passes would triple the time
            raw = hf.encode_batch(inputs, **kw)
            missing: list[list[tuple[int, int]]] | None = None
            if is_split_into_words:
                # count words from an untruncated encoding: words cut off by max_length are not "missing"
                full = raw if max_length is None else self.hf.encode_batch(inputs, **kw)
                missing = [_missing_words(e, x, pairs is not None) for e, x in zip(full, inputs)]
            out = []
            for i, (e, x) in enumerate(zip(raw, inputs)):
                seqs = (x,) if pairs is None else x
                windows = [e] + (list(e.overflowing) if return_overflow else [])
                encs = [_to_encoding(w, seqs, is_split_into_words, missing[i] if missing else [], overflow=k > 0)
                        for k, w in enumerate(windows)]
                out.append(encs if return_overflow else encs[0])
        return out

    def _variant(self, key: tuple, setup: Callable[[Tokenizer], None]) -> Tokenizer:
        """A cached copy of ``self.hf`` configured once by ``setup`` (rebuilt if tokens were added)."""
        key = (id(self.hf), self.hf.get_vocab_size(with_added_tokens=True)) + key
        hf = self._variants.get(key)
        if hf is None:
            if len(self._variants) >= 8:
                self._variants.pop(next(iter(self._variants)))
            hf = Tokenizer.from_str(self.hf.to_str())
            hf.no_padding()
            hf.no_truncation()
            setup(hf)
            self._variants[key] = hf
        return hf

    def _truncating(self, texts: list, is_pair: bool, max_length: int, stride: int, windows: bool,
                    add_special_tokens: bool, is_split_into_words: bool) -> Tokenizer:
        """The truncating copy, after checking the settings the Rust side would panic on."""
        n_special = self.hf.num_special_tokens_to_add(is_pair) if add_special_tokens else 0
        if stride < 0:
            raise InputError(f"stride={stride} must be >= 0", "stride is how many tokens windows overlap")
        if max_length - n_special <= stride:
            raise InputError(f"max_length={max_length} leaves {max_length - n_special} tokens after {n_special} "
                             f"special tokens, not more than stride={stride}", "raise max_length or lower stride")
        # QA windows cut only the context, so the first text must leave room for more than `stride` tokens
        strategy = "only_second" if is_pair and windows else "longest_first"
        if strategy == "only_second":
            fast = getattr(self.hf, "encode_batch_fast", self.hf.encode_batch)
            firsts = fast(texts, add_special_tokens=False, is_pretokenized=is_split_into_words)
            for i, e in enumerate(firsts):
                room = max_length - n_special - len(e.ids)
                if room <= stride:
                    raise InputError(f"input {i}: the first text (question) takes {len(e.ids)} tokens, leaving {room} of "
                                     f"max_length={max_length} for context windows that overlap by stride={stride}",
                                     "raise max_length, lower stride, or shorten the question")

        def setup(hf: Tokenizer) -> None:
            hf.enable_truncation(max_length, stride=stride, strategy=strategy)

        return self._variant(("truncate", max_length, stride, strategy), setup)

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = False) -> str:
        text = self.hf.decode([int(i) for i in ids], skip_special_tokens=skip_special_tokens)
        return _CJK_SPACE.sub("", text) if self.kind == "wordpiece" else text

    def decode_batch(self, batch: list[list[int]], skip_special_tokens: bool = False) -> list[str]:
        return [self.decode(ids, skip_special_tokens) for ids in batch]

    def token_to_id(self, token: str) -> int | None:
        return self.hf.token_to_id(token)

    def id_to_token(self, i: int) -> str | None:
        return self.hf.id_to_token(i)

    @property
    def special_ids(self) -> dict[str, int | None]:
        return {role: getattr(self, f"{role}_id") for role in ROLES}

    # -- chat -------------------------------------------------------------------------------

    @property
    def chat_template(self) -> ChatTemplate:
        """The template set or loaded (``chat_template.json``), else the default for this vocabulary:
        ChatML / Llama-3 / Zephyr when their markers are special tokens, plain-text headers otherwise."""
        return self._chat_template or chat.default_template(self)

    @chat_template.setter
    def chat_template(self, template: ChatTemplate | None) -> None:
        self._chat_template = template

    @property
    def own_chat_template(self) -> ChatTemplate | None:
        """The template set or loaded, without the default: whether a plain decoder can chat."""
        return self._chat_template

    def render_chat(self, messages: Sequence[Mapping[str, Any]], add_generation_prompt: bool = False,
                    max_length: int | None = None) -> ChatRender:
        """``ids, loss_mask = tok.render_chat(messages)``: loss_mask is 1 on assistant contents and their
        end marker, 0 on system/user turns and role headers. Over ``max_length`` whole turns are kept
        from the start (``.truncated`` says whether any were cut, ``.turns_kept`` how many stayed)."""
        return chat.render(self, self.chat_template, messages, add_generation_prompt, max_length)

    def chat_prompt(self, messages: Sequence[Mapping[str, Any]], max_length: int | None = None) -> list[int]:
        """Ids for generation: the conversation plus the assistant header (oldest turns dropped first)."""
        return chat.prompt(self, self.chat_template, messages, max_length)

    @property
    def chat_stop_ids(self) -> list[int]:
        """Token ids that end an assistant reply: the template's end marker and the tokenizer's eos."""
        added = {t.content: i for i, t in self.hf.get_added_tokens_decoder().items()}
        ids = [added.get(s) for s in self.chat_template.stop_strings] + [self.eos_id]
        return list(dict.fromkeys(i for i in ids if i is not None))

    @property
    def chat_stop_strings(self) -> list[str]:
        return list(self.chat_template.stop_strings)

    def _encode_markup(self, text: str) -> list[int]:
        """Template text: marker strings become their special tokens (cached, a template has few)."""
        if text not in self._markup:
            self._markup[text] = self.hf.encode(text, add_special_tokens=False).ids if text else []
        return self._markup[text]

    def _encode_content(self, text: str) -> list[int]:
        """Message text: a literal "<|im_end|>" typed by a user stays text, it cannot end a turn."""
        hf = self._variant(("content",), lambda h: setattr(h, "encode_special_tokens", True))
        return hf.encode(text, add_special_tokens=False).ids

    # -- persistence ------------------------------------------------------------------------

    def save(self, path: str | Path) -> Path:
        """Write ``tokenizer.json`` and ``tokenizer_meta.json`` into directory ``path``.

        A path ending in ``.json`` is taken as the tokenizer file itself (meta written beside it).
        """
        path = Path(path)
        file = path if path.suffix == ".json" else path / TOKENIZER_FILE
        atomic_write_text(file, self.hf.to_str(pretty=True))
        atomic_write_json(file.parent / META_FILE, self.meta)
        if self._chat_template is not None:
            self._chat_template.save(file.parent / CHAT_TEMPLATE_FILE)
        return file

    @classmethod
    def load(cls, path: str | Path) -> "Tok":
        """Load from a directory holding ``tokenizer.json`` or from the file itself.

        ``tokenizer_meta.json`` is optional, so any Hugging Face ``tokenizer.json`` loads too.
        """
        path = Path(path)
        file = path / TOKENIZER_FILE if path.is_dir() else path
        if not file.exists():
            where = f"directory {path} has no {TOKENIZER_FILE}" if path.is_dir() else f"not found: {path}"
            raise InputError(f"tokenizer {where}", "train one with `lmforge tokenizer train`")
        try:
            hf = Tokenizer.from_file(str(file))
        except Exception as err:  # the Rust side raises a plain Exception on bad JSON
            raise InputError(f"{file}: not a valid tokenizer.json ({err})",
                             "pass a file written by `lmforge tokenizer train` or a Hugging Face tokenizer.json") from None
        # Hugging Face tokenizer.json files often carry fixed padding/truncation (MiniLM: pad and cut to
        # 128). lmforge pads and truncates where it batches, so an encoding must be the text's tokens
        # only: padding here would look like real tokens, truncation would silently cut documents.
        hf.no_padding()
        hf.no_truncation()
        meta = None
        meta_file = file.parent / META_FILE
        if meta_file.exists():
            try:
                meta = json.loads(meta_file.read_text(encoding="utf-8"))
            except json.JSONDecodeError as err:
                raise InputError(f"{meta_file}: invalid JSON ({err})", "delete it to infer roles from token names") from None
        tok = cls(hf, meta)
        tok._chat_template = _load_chat_template(file.parent)
        return tok

    def __repr__(self) -> str:
        return f"Tok(kind={self.kind}, family={self.family}, vocab_size={self.vocab_size})"


def _load_chat_template(folder: Path) -> ChatTemplate | None:
    """``chat_template.json``, else a recognised Hugging Face ``chat_template``, else None (default)."""
    if (folder / CHAT_TEMPLATE_FILE).exists():
        return ChatTemplate.load(folder / CHAT_TEMPLATE_FILE)
    if (folder / HF_CONFIG_FILE).exists():
        try:
            return chat.read_hf_tokenizer_config(folder / HF_CONFIG_FILE)
        except (ConfigError, InputError) as err:
            warnings.warn(f"{err}; using the default chat template instead", stacklevel=3)
    return None


@contextlib.contextmanager
def _no_gc():
    """Pause the cyclic garbage collector (the lists built here hold no cycles); restore it after."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _check_inputs(items: list, words: bool, what: str) -> None:
    """Clear errors for what the Rust side would reject with a bare TypeError."""
    for i, x in enumerate(items):
        if words:
            if isinstance(x, str) or not isinstance(x, Sequence) or not all(isinstance(w, str) for w in x):
                raise InputError(f"{what}[{i}]: is_split_into_words needs a list of word strings, got {x!r:.60}",
                                 "pass e.g. ['EU', 'rejects', 'German'], or is_split_into_words=False for a string")
        elif not isinstance(x, str):
            raise InputError(f"{what}[{i}]: expected a string, got {type(x).__name__}",
                             "pass is_split_into_words=True for lists of words")


def _to_encoding(e: Any, seqs: tuple, words: bool, missing: list[tuple[int, int]], overflow: bool = False) -> Encoding:
    tokens, offsets, seq_ids, word_ids = e.tokens, e.offsets, e.sequence_ids, e.word_ids
    if overflow and len(seqs) == 2:
        # tokenizers 0.23 loses the sequence ids of overflow windows of a pair when the tokenizer has no
        # post-processor (our bpe/unigram/wordpiece/char gpt tokenizers); the type ids (0/1) still say
        mask = e.special_tokens_mask
        seq_ids = [t if s is None and not m else s for s, m, t in zip(seq_ids, mask, e.type_ids)]
    if _METASPACE in tokens:
        # Metaspace's prepended "▁" stands for no character, yet Rust aligns it to the first one
        for j, t in enumerate(tokens):
            if t == _METASPACE and seq_ids[j] is not None:
                a, b = offsets[j]
                src = seqs[seq_ids[j]][word_ids[j]] if words else seqs[seq_ids[j]]
                if not src[a:b].isspace():
                    offsets[j] = (a, a)
    return Encoding(ids=e.ids, type_ids=e.type_ids, tokens=tokens, offsets=offsets, word_ids=word_ids,
                    sequence_ids=seq_ids, special_tokens_mask=e.special_tokens_mask, missing_words=missing)


def _missing_words(e: Any, x: Any, is_pair: bool) -> list[tuple[int, int]]:
    """Words of a pre-split input that got no token at all."""
    seqs = x if is_pair else (x,)
    seen = {(s, w) for s, w in zip(e.sequence_ids, e.word_ids) if s is not None and w is not None}
    return [(s, w) for s, words in enumerate(seqs) for w in range(len(words)) if (s, w) not in seen]


def _guess_kind(hf: Tokenizer) -> str:
    spec = json.loads(hf.to_str())
    model = (spec.get("model") or {}).get("type")
    if model == "BPE":
        return "byte_bpe" if "ByteLevel" in json.dumps(spec.get("pre_tokenizer")) else "bpe"
    return {"WordPiece": "wordpiece", "Unigram": "unigram", "WordLevel": "char"}.get(model, "bpe")
