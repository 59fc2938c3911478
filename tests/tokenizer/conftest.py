"""Fixtures for tokenizer tests: real text from the shared datasets (skipped when absent), and
small tokenizers trained once per session so the whole suite stays fast."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lmforge.tokenizer import TokenizerConfig, train_tokenizer

REPO = Path(__file__).resolve().parents[2]


def _datasets() -> Path:
    return Path(os.environ.get("LMFORGE_DATASETS", REPO.parent / "shared" / "datasets"))


def _read(rel: str) -> str:
    path = _datasets() / rel
    if not path.exists():
        pytest.skip(f"dataset file missing: {path} (set LMFORGE_DATASETS)")
    return path.read_text(encoding="utf-8")


def paragraphs(text: str) -> list[str]:
    return [p.strip("\n") for p in text.replace("\r\n", "\n").split("\n\n") if p.strip()]


@pytest.fixture(scope="session")
def shakespeare_text() -> str:
    return _read("pretrain/tinyshakespeare/input.txt")


@pytest.fixture(scope="session")
def shakespeare_path() -> Path:
    _read("pretrain/tinyshakespeare/input.txt")
    return _datasets() / "pretrain/tinyshakespeare/input.txt"


@pytest.fixture(scope="session")
def zh_text() -> str:
    """西游记 without its byte-order mark."""
    return _read("pretrain/zh_novels/西游记.txt").lstrip("\ufeff")


@pytest.fixture(scope="session")
def en_docs(shakespeare_text) -> list[str]:
    """Training documents: the first ~300 KB of tiny Shakespeare (the end is held out)."""
    return paragraphs(shakespeare_text[:300_000])


@pytest.fixture(scope="session")
def zh_docs(zh_text) -> list[str]:
    return paragraphs(zh_text[:150_000])


@pytest.fixture(scope="session")
def mixed_docs(en_docs, zh_docs) -> list[str]:
    """English and Chinese interleaved, as a bilingual corpus would be."""
    out = []
    for i in range(max(len(en_docs), len(zh_docs))):
        out += en_docs[i:i + 1] + zh_docs[i:i + 1]
    return out


@pytest.fixture(scope="session")
def held_out(shakespeare_text, zh_text) -> dict[str, str]:
    """Text never seen in training: the end of each book."""
    return {"en": shakespeare_text[-20_000:], "zh": zh_text[-20_000:]}


_CACHE: dict = {}


@pytest.fixture(scope="session")
def small_mixed_docs(en_docs, zh_docs) -> list[str]:
    """~50 KB English + ~15 KB Chinese, for the many family/kind combinations and for slow Unigram."""
    return en_docs[: len(en_docs) // 6] + zh_docs[: len(zh_docs) // 10]


@pytest.fixture(scope="session")
def trained(mixed_docs, small_mixed_docs):
    """``trained(kind, family="gpt", vocab_size=..., small=False)``: a tokenizer on the mixed corpus, cached.

    ``small`` (always for Unigram, the slowest trainer) uses the smaller corpus and 3000 tokens.
    """

    def get(kind: str, family: str = "gpt", vocab_size: int | None = None, small: bool = False, **kw):
        small = small or kind == "unigram"
        vocab_size = vocab_size or (3000 if small else 6000)
        key = (kind, family, vocab_size, small, tuple(sorted(kw.items())))
        if key not in _CACHE:
            cfg = TokenizerConfig(kind=kind, family=family, vocab_size=vocab_size, **kw)
            _CACHE[key] = train_tokenizer(small_mixed_docs if small else mixed_docs, cfg)
        return _CACHE[key]

    return get
