"""``Tok``: a thin wrapper over ``tokenizers.Tokenizer`` that knows its family's special ids."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Iterable

from tokenizers import Tokenizer

from ..errors import InputError
from ..runs import atomic_write_json, atomic_write_text
from .specials import ROLES, assign_roles, infer_family

TOKENIZER_FILE = "tokenizer.json"
META_FILE = "tokenizer_meta.json"

# WordPiece decoding joins every token with a space; CJK text has none between characters.
_CJK = r"\u3000-\u303f\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff00-\uffef"
_CJK_SPACE = re.compile(rf"(?<=[{_CJK}]) (?=[{_CJK}])")


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

    # -- persistence ------------------------------------------------------------------------

    def save(self, path: str | Path) -> Path:
        """Write ``tokenizer.json`` and ``tokenizer_meta.json`` into directory ``path``.

        A path ending in ``.json`` is taken as the tokenizer file itself (meta written beside it).
        """
        path = Path(path)
        file = path if path.suffix == ".json" else path / TOKENIZER_FILE
        atomic_write_text(file, self.hf.to_str(pretty=True))
        atomic_write_json(file.parent / META_FILE, self.meta)
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
        return cls(hf, meta)

    def __repr__(self) -> str:
        return f"Tok(kind={self.kind}, family={self.family}, vocab_size={self.vocab_size})"


def _guess_kind(hf: Tokenizer) -> str:
    spec = json.loads(hf.to_str())
    model = (spec.get("model") or {}).get("type")
    if model == "BPE":
        return "byte_bpe" if "ByteLevel" in json.dumps(spec.get("pre_tokenizer")) else "bpe"
    return {"WordPiece": "wordpiece", "Unigram": "unigram", "WordLevel": "char"}.get(model, "bpe")
