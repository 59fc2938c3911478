"""Train a tokenizer of any kind with Hugging Face ``tokenizers``.

Each kind is the standard recipe for it: byte-level BPE (GPT-2), WordPiece (BERT, CJK characters
split into single-character words), Unigram and plain BPE with Metaspace (SentencePiece style), and
character-level (every character seen becomes a token; exact round trip).
"""

from __future__ import annotations

import json
from collections import Counter
from itertools import islice
from typing import Iterable, Iterator

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

from ..errors import ConfigError, InputError
from .config import TokenizerConfig
from .specials import assign_roles, special_tokens_for
from .tok import Tok

# Kinds whose model needs an unknown token even when the family has none (gpt).
_UNK_FOR_KIND = {"wordpiece": "[UNK]", "bpe": "<unk>", "unigram": "<unk>", "char": "<unk>"}
# bpe and unigram fall back to UTF-8 byte tokens <0x00>..<0xFF> for unseen characters (as LLaMA does).
_BYTE_FALLBACK = ("bpe", "unigram")
_N_BYTES = 256


def train_tokenizer(texts: Iterable[str], cfg: TokenizerConfig) -> Tok:
    """Train on ``texts`` (any iterable of documents; consumed once, never held in full)."""
    specials = special_tokens_for(cfg.family, cfg.special_tokens)
    roles = assign_roles(specials)
    if cfg.kind in _UNK_FOR_KIND and roles["unk"] is None:
        specials.append(_UNK_FOR_KIND[cfg.kind])
        roles = assign_roles(specials)
    docs = _counted(islice(texts, cfg.max_train_docs) if cfg.max_train_docs else texts,
                    track_chars=cfg.kind == "unigram")

    if cfg.kind == "char":
        hf = _train_char(docs, cfg, specials, roles["unk"])
    else:
        hf, trainer = _build(cfg, specials, roles["unk"])
        try:
            hf.train_from_iterator(_batches(docs), trainer=trainer)
        except Exception as err:  # the Rust trainers raise plain Exceptions
            if "not large enough" not in str(err):
                raise
            need = len(docs.chars) + len(specials) + _N_BYTES
            raise ConfigError(
                f"tokenizer.vocab_size={cfg.vocab_size} cannot hold the {len(docs.chars)} distinct characters of "
                f"the training text plus {_N_BYTES} byte-fallback tokens, as a {cfg.kind} vocabulary must",
                f"set tokenizer.vocab_size to at least {need}, or use kind byte_bpe") from None
        if cfg.kind in _BYTE_FALLBACK and docs.n:
            hf = _with_byte_fallback(hf)
    if docs.n == 0:
        raise InputError("no training text: the input files hold no documents",
                         "check the files (jsonl needs a 'text' field; txt must not be empty)")
    _set_post_processor(hf, cfg, roles)
    meta = {"kind": cfg.kind, "family": cfg.family, "special_tokens": specials, "roles": roles,
            "lowercase": cfg.lowercase, "trained_docs": docs.n}
    return Tok(hf, meta)


def _build(cfg: TokenizerConfig, specials: list[str], unk: str | None):
    reserve = _N_BYTES if cfg.kind in _BYTE_FALLBACK else 0
    common = dict(vocab_size=max(cfg.vocab_size - reserve, len(specials) + 1), special_tokens=specials,
                  show_progress=False)
    lower = [normalizers.Lowercase()] if cfg.lowercase else []
    if cfg.kind == "byte_bpe":
        hf = Tokenizer(models.BPE())
        hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        hf.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(min_frequency=cfg.min_frequency,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), **common)
    elif cfg.kind == "bpe":
        hf = Tokenizer(models.BPE(unk_token=unk))
        hf.pre_tokenizer = pre_tokenizers.Metaspace()
        hf.decoder = decoders.Sequence([decoders.ByteFallback(), decoders.Metaspace()])
        trainer = trainers.BpeTrainer(min_frequency=cfg.min_frequency, limit_alphabet=_alphabet(cfg), **common)
    elif cfg.kind == "wordpiece":
        hf = Tokenizer(models.WordPiece(unk_token=unk, max_input_chars_per_word=100))
        hf.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True,
                                                   strip_accents=cfg.lowercase or None, lowercase=cfg.lowercase)
        hf.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        hf.decoder = decoders.WordPiece(prefix="##")
        trainer = trainers.WordPieceTrainer(min_frequency=cfg.min_frequency, continuing_subword_prefix="##",
                                            limit_alphabet=_alphabet(cfg), **common)
        lower = []
    elif cfg.kind == "unigram":
        hf = Tokenizer(models.Unigram())
        hf.pre_tokenizer = pre_tokenizers.Metaspace()
        hf.decoder = decoders.Sequence([decoders.ByteFallback(), decoders.Metaspace()])
        trainer = trainers.UnigramTrainer(unk_token=unk, max_piece_length=16, **common)
    else:  # pragma: no cover - the config's Literal rules this out
        raise ValueError(cfg.kind)
    if lower:
        hf.normalizer = normalizers.Sequence(lower)
    return hf, trainer


def _with_byte_fallback(hf: Tokenizer) -> Tokenizer:
    """Append the 256 byte tokens to a trained BPE/Unigram vocabulary and switch byte fallback on."""
    spec = json.loads(hf.to_str())
    model = spec["model"]
    pieces = [f"<0x{b:02X}>" for b in range(_N_BYTES)]
    if model["type"] == "BPE":
        for p in pieces:
            model["vocab"].setdefault(p, len(model["vocab"]))
    else:  # Unigram: [piece, log prob] pairs; bytes score below every learned piece
        known = {p for p, _ in model["vocab"]}
        low = min(score for _, score in model["vocab"]) - 1.0
        model["vocab"] += [[p, low] for p in pieces if p not in known]
    model["byte_fallback"] = True
    return Tokenizer.from_str(json.dumps(spec))


def _alphabet(cfg: TokenizerConfig) -> int:
    """Cap the initial alphabet so rare Chinese characters cannot take the whole vocabulary.

    Three quarters: CJK text needs thousands of single characters (WordPiece never merges them),
    and a quarter stays for merges. English alphabets are far below either limit.
    """
    return max(cfg.vocab_size * 3 // 4, 100)


def _train_char(docs: Iterable[str], cfg: TokenizerConfig, specials: list[str], unk: str | None) -> Tokenizer:
    """Every character seen becomes a token (the most frequent ``vocab_size`` of them)."""
    counts: Counter[str] = Counter()
    for text in docs:
        counts.update(text.lower() if cfg.lowercase else text)
    keep = max(cfg.vocab_size - len(specials), 1)
    chars = sorted(c for c, _ in counts.most_common(keep))  # sorted: ids independent of ties
    vocab = {tok: i for i, tok in enumerate(specials)}
    for c in chars:
        vocab.setdefault(c, len(vocab))
    hf = Tokenizer(models.WordLevel(vocab=vocab, unk_token=unk))
    if cfg.lowercase:
        hf.normalizer = normalizers.Lowercase()
    hf.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    hf.decoder = decoders.Fuse()
    hf.add_special_tokens(specials)
    return hf


def _set_post_processor(hf: Tokenizer, cfg: TokenizerConfig, roles: dict[str, str | None]) -> None:
    """The family's template for ``add_special_tokens=True`` (and for users of tokenizer.json in transformers)."""
    def ident(role: str) -> tuple[str, int]:
        tok = roles[role]
        return tok, hf.token_to_id(tok)

    template = None
    if cfg.family == "bert" and roles["cls"] and roles["sep"]:
        cls, sep = roles["cls"], roles["sep"]
        template = processors.TemplateProcessing(
            single=f"{cls} $A {sep}", pair=f"{cls} $A {sep} $B:1 {sep}:1",
            special_tokens=[ident("cls"), ident("sep")])
    elif cfg.family == "seq2seq" and roles["eos"]:
        eos = roles["eos"]
        template = processors.TemplateProcessing(single=f"$A {eos}", pair=f"$A {eos} $B:1 {eos}:1",
                                                 special_tokens=[ident("eos")])
    steps = [processors.ByteLevel(trim_offsets=False)] if cfg.kind == "byte_bpe" else []
    steps += [template] if template else []
    if len(steps) == 1:
        hf.post_processor = steps[0]
    elif steps:
        hf.post_processor = processors.Sequence(steps)


class _counted:
    """Pass texts through while counting them, so an empty corpus is reported, not silently trained."""

    def __init__(self, texts: Iterable[str], track_chars: bool = False):
        self.texts, self.n, self.track_chars = texts, 0, track_chars
        self.chars: set[str] = set()

    def __iter__(self) -> Iterator[str]:
        for t in self.texts:
            self.n += 1
            if self.track_chars:
                self.chars.update(t)
            yield t


def _batches(texts: Iterable[str], size: int = 1000) -> Iterator[list[str]]:
    it = iter(texts)
    while batch := list(islice(it, size)):
        yield batch
