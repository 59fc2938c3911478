"""fastText-style character n-grams hashed into a fixed number of rows ("buckets")."""

from __future__ import annotations

import numpy as np


def fnv1a(text: str) -> int:
    """32-bit FNV-1a over UTF-8 bytes (fastText's hash, without its signed-char quirk)."""
    h = 2166136261
    for byte in text.encode("utf-8"):
        h = ((h ^ byte) * 16777619) & 0xFFFFFFFF
    return h


def ngrams(word: str, min_n: int, max_n: int) -> list[str]:
    """Character n-grams of ``<word>``; the boundary marks let prefixes and suffixes differ from infixes."""
    w = f"<{word}>"
    return [w[i:i + n] for n in range(min_n, max_n + 1) for i in range(len(w) - n + 1)]


def ngram_buckets(word: str, min_n: int, max_n: int, bucket: int) -> list[int]:
    return [fnv1a(g) % bucket for g in ngrams(word, min_n, max_n)]


def subword_rows(words: list[str], min_n: int, max_n: int, bucket: int) -> tuple[np.ndarray, np.ndarray]:
    """CSR rows of syn0 per word: the word's own row, then V + its n-gram buckets."""
    V = len(words)
    ptr = np.zeros(V + 1, dtype=np.int64)
    idx: list[int] = []
    for i, w in enumerate(words):
        idx.append(i)
        idx.extend(V + b for b in ngram_buckets(w, min_n, max_n, bucket))
        ptr[i + 1] = len(idx)
    return ptr, np.asarray(idx, dtype=np.int64)


class SubwordTable:
    """The n-gram rows a fastText model keeps, so words never seen in training still get a vector."""

    def __init__(self, matrix: np.ndarray, min_n: int, max_n: int):
        self.matrix = np.asarray(matrix, dtype=np.float32)
        self.min_n, self.max_n = min_n, max_n

    @property
    def bucket(self) -> int:
        return self.matrix.shape[0]

    def vector(self, word: str) -> np.ndarray | None:
        """Mean of the word's n-gram rows (None when it has no n-grams, e.g. min_n > len + 2)."""
        rows = ngram_buckets(word, self.min_n, self.max_n, self.bucket)
        return self.matrix[rows].mean(axis=0) if rows else None
