"""How well a tokenizer fits text it was not trained on."""

from __future__ import annotations

from itertools import chain
from pathlib import Path

import numpy as np

from .corpus import _batches, iter_documents
from .shards import Shard
from .tok import Tok


class StatsAccumulator:
    """Counts over encoded batches; ``result()`` gives the ratios."""

    def __init__(self, tok: Tok):
        self.tok = tok
        self.counts = np.zeros(tok.vocab_size, dtype=np.int64)
        self.docs = self.bytes = self.chars = self.words = 0

    def add_text(self, texts: list[str]) -> None:
        self.docs += len(texts)
        for t in texts:
            self.bytes += len(t.encode("utf-8"))
            self.chars += len(t)
            self.words += len(t.split())

    def add_ids(self, ids: np.ndarray) -> None:
        ids = np.asarray(ids, dtype=np.int64)
        if ids.size:
            self.counts += np.bincount(ids, minlength=len(self.counts))[: len(self.counts)]

    def result(self) -> dict:
        tokens = int(self.counts.sum())
        unk = int(self.counts[self.tok.unk_id]) if self.tok.unk_id is not None else 0
        ratio = lambda a, b: round(a / b, 4) if b else 0.0  # noqa: E731
        return {
            "docs": self.docs, "bytes": self.bytes, "chars": self.chars, "words": self.words, "tokens": tokens,
            "bytes_per_token": ratio(self.bytes, tokens),
            "chars_per_token": ratio(self.chars, tokens),
            "tokens_per_word": ratio(tokens, self.words),
            "tokens_per_char": ratio(tokens, self.chars),
            "unk_rate": ratio(unk, tokens),
            "vocab_used": int(np.count_nonzero(self.counts)),
            "vocab_coverage": ratio(int(np.count_nonzero(self.counts)), len(self.counts)),
        }


def tokenizer_stats(tok: Tok, file: str | Path, txt_split: str = "paragraph", max_docs: int | None = None) -> dict:
    """Bytes per token, tokens per word and char, unknown-token rate and vocabulary coverage on ``file``.

    Words are whitespace-separated, so ``tokens_per_word`` means little for Chinese; use ``tokens_per_char``.
    Special tokens are never counted: the text is encoded without them.
    """
    acc = StatsAccumulator(tok)
    seen = 0
    for batch in _batches(iter_documents(file, txt_split)):
        if max_docs is not None:
            batch = batch[: max_docs - seen]
        acc.add_text(batch)
        ids = tok.encode_batch(batch)
        acc.add_ids(np.fromiter(chain.from_iterable(ids), dtype=np.int64, count=sum(map(len, ids))))
        seen += len(batch)
        if max_docs is not None and seen >= max_docs:
            break
    return {"file": str(file), "kind": tok.kind, "vocab_size": tok.vocab_size, **acc.result()}


def shard_token_counts(shard: Shard, vocab_size: int, chunk: int = 1 << 24) -> np.ndarray:
    """Token frequencies of a shard, read in chunks from the memmap."""
    counts = np.zeros(vocab_size, dtype=np.int64)
    for start in range(0, len(shard.tokens), chunk):
        part = np.asarray(shard.tokens[start:start + chunk], dtype=np.int64)
        counts += np.bincount(part, minlength=vocab_size)[:vocab_size]
    return counts
