"""Deduplication: exact (hash of normalised text) and near (MinHash LSH), numpy throughout.

Phase 1 (per shard, parallel) computes for every surviving document a 64-bit exact hash, a MinHash
signature and its LSH band hashes. Phase 2 (global) decides: the first copy in input order is kept,
later exact copies are ``dedup:exact``; near-duplicate candidates that share a band are verified
by estimated Jaccard ≥ threshold, joined with union-find, and all but the first of each cluster are
``dedup:near``. Memory in phase 2 is O(documents) — about num_perm*4 + 8*(bands+1) bytes each.
"""

from __future__ import annotations

import re
from functools import lru_cache

import numpy as np
import xxhash

from ...text.scripts import is_cjk
from ..config import DedupConfig

PRIME = np.uint64(4294967291)  # largest prime < 2^32: a*h < 2^64 never overflows
MASK32 = np.uint64(0xFFFFFFFF)
_GOLD = np.uint64(0x9E3779B97F4A7C15)
_WORD = re.compile(r"\w+", re.UNICODE)
_NORM = re.compile(r"[\W_]+", re.UNICODE)


def exact_key(text: str) -> int:
    """Hash of the text lowercased with punctuation and whitespace removed."""
    return xxhash.xxh64_intdigest(_NORM.sub("", text.lower()).encode())


_ALNUM_RUN = re.compile(r"[^\W_]+", re.UNICODE)
_POW = np.array([pow(1_000_003, k, 1 << 64) for k in range(64)], dtype=np.uint64)


def unit_hashes(text: str, cjk: bool | None = None) -> np.ndarray:
    """uint64 hashes of the units of ``text``: lowercased words, or characters for CJK text.

    Deterministic across processes (no Python ``hash``) and vectorised: the text is viewed as
    UTF-32 code points and each word's polynomial hash is one ``np.add.reduceat``.
    """
    if cjk if cjk is not None else is_cjk(text):
        chars = "".join(_ALNUM_RUN.findall(text)).lower()
        return np.frombuffer(chars.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64) * _GOLD
    joined = " ".join(_WORD.findall(text.lower()))
    if not joined:
        return np.zeros(0, dtype=np.uint64)
    a = np.frombuffer(joined.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    space = a == 32
    start = np.flatnonzero(~space & np.concatenate([[True], space[:-1]]))
    word = np.cumsum(~space & np.concatenate([[True], space[:-1]])) - 1
    pos = np.minimum(np.arange(len(a)) - start[word], 63)
    with np.errstate(over="ignore"):
        vals = (a + np.uint64(1)) * _POW[pos]
        vals[space] = 0
        return np.add.reduceat(vals, start) * _GOLD


def units(text: str) -> tuple[list[str], bool]:
    """Words, or characters for CJK text (judged by characters, not spaces)."""
    if is_cjk(text):
        return [c for c in text if c.isalnum()], True
    return _WORD.findall(text.lower()), False


def shingle_hashes(text: str, n: int, cjk: bool | None = None) -> np.ndarray:
    """Distinct uint32 hashes of word n-grams (character n-grams for CJK; ``cjk`` None = detect)."""
    h = unit_hashes(text, cjk)
    if len(h) == 0:
        return np.zeros(1, dtype=np.uint64)
    n = min(n, len(h))
    acc = h[: len(h) - n + 1].copy()
    with np.errstate(over="ignore"):
        for k in range(1, n):  # polynomial combination, wrapping mod 2^64
            acc = acc * np.uint64(1_000_003) + h[k:len(h) - n + 1 + k]
    return np.unique((acc ^ (acc >> np.uint64(32))) & MASK32)


def optimal_bands(threshold: float, num_perm: int, fp_weight: float = 0.1) -> tuple[int, int]:
    """(bands, rows) minimising weighted false positives + negatives around ``threshold`` (as datasketch).

    Candidates are verified on their signatures afterwards, so a false positive costs only a
    comparison while a false negative is a missed duplicate: the weights favour recall (0.1 / 0.9).
    """
    xs = np.linspace(0, 1, 1001)
    best, best_err = (1, num_perm), float("inf")
    for b in range(1, num_perm + 1):
        r = num_perm // b
        p = 1 - (1 - xs ** r) ** b
        lo, hi = xs <= threshold, xs >= threshold
        fp = np.trapezoid(p[lo], xs[lo]) if hasattr(np, "trapezoid") else np.trapz(p[lo], xs[lo])
        fn = np.trapezoid(1 - p[hi], xs[hi]) if hasattr(np, "trapezoid") else np.trapz(1 - p[hi], xs[hi])
        err = fp_weight * fp + (1 - fp_weight) * fn
        if err < best_err:
            best, best_err = (b, r), err
    return best


class MinHasher:
    def __init__(self, cfg: DedupConfig):
        self.cfg = cfg
        self.bands, self.rows = _bands(cfg.threshold, cfg.num_perm)
        rng = np.random.default_rng(cfg.seed)
        # multiply-shift hashing: (a*h + b) mod 2^64, top 32 bits; a odd. No modulo, so it is fast.
        self.a = (rng.integers(0, 1 << 63, size=cfg.num_perm, dtype=np.uint64) * np.uint64(2) + np.uint64(1))[:, None]
        self.b = rng.integers(0, 1 << 63, size=cfg.num_perm, dtype=np.uint64)[:, None]

    def signature(self, text: str) -> np.ndarray:
        """num_perm uint32 minima of the hashed shingles, one per hash function."""
        h = shingle_hashes(text, self.cfg.ngram)[None, :]
        with np.errstate(over="ignore"):
            v = (self.a * h + self.b) >> np.uint64(32)
        return v.min(axis=1).astype(np.uint32)

    def signatures(self, shingles: list[np.ndarray], max_cols: int = 1 << 13) -> np.ndarray:
        """Signatures of many documents at once, from their ``shingle_hashes``: one product and one
        ``np.minimum.reduceat`` per batch of ~8k shingles (an 8 MB temporary) instead of a few
        numpy calls per document. Equal to ``signature`` row by row."""
        out = np.empty((len(shingles), self.cfg.num_perm), dtype=np.uint32)
        i = 0
        while i < len(shingles):
            j, cols = i, 0
            while j < len(shingles) and (j == i or cols + len(shingles[j]) <= max_cols):
                cols += len(shingles[j])
                j += 1
            batch = shingles[i:j]
            h = np.concatenate(batch)[None, :]
            starts = np.concatenate([[0], np.cumsum([len(x) for x in batch[:-1]])]).astype(np.int64)
            with np.errstate(over="ignore"):
                v = (self.a * h + self.b) >> np.uint64(32)
            out[i:j] = np.minimum.reduceat(v, starts, axis=1).T
            i = j
        return out

    def band_hashes(self, sig: np.ndarray) -> np.ndarray:
        """LSH band hashes of one signature (shape (num_perm,)) or many (shape (n, num_perm))."""
        used = sig[..., : self.bands * self.rows].astype(np.uint64)
        used = used.reshape(*sig.shape[:-1], self.bands, self.rows)
        acc = np.zeros(used.shape[:-1], dtype=np.uint64)
        with np.errstate(over="ignore"):
            for k in range(self.rows):
                acc = acc * np.uint64(0x100000001B3) + used[..., k] + np.uint64(k + 1)
            return acc + np.arange(self.bands, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)


@lru_cache(maxsize=16)
def _bands(threshold: float, num_perm: int) -> tuple[int, int]:
    return optimal_bands(threshold, num_perm)


class UnionFind:
    def __init__(self) -> None:
        self.parent: dict[int, int] = {}

    def find(self, x: int) -> int:
        p = self.parent.setdefault(x, x)
        while p != self.parent[p]:
            self.parent[p] = self.parent[self.parent[p]]
            p = self.parent[p]
        self.parent[x] = p
        return p

    def union(self, x: int, y: int) -> None:
        rx, ry = self.find(x), self.find(y)
        if rx != ry:  # the smaller index (earlier document) is the root: it is the copy kept
            self.parent[max(rx, ry)] = min(rx, ry)


def exact_duplicates(keys: np.ndarray) -> np.ndarray:
    """For each doc, the index of the first doc with the same key (itself when first)."""
    if len(keys) == 0:
        return np.zeros(0, dtype=np.int64)
    _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    return first[inverse.reshape(-1)].astype(np.int64)


def near_clusters(sigs: np.ndarray, bands: np.ndarray, candidates: np.ndarray, threshold: float) -> UnionFind:
    """Union-find over docs in ``candidates`` whose signatures agree on ≥ threshold of positions.

    Docs sharing a band bucket are verified against the bucket's first member and their predecessor.
    """
    uf = UnionFind()
    if len(candidates) < 2:
        return uf
    verified: set[tuple[int, int]] = set()
    for j in range(bands.shape[1]):
        col = bands[candidates, j]
        order = np.argsort(col, kind="stable")
        sorted_col = col[order]
        starts = np.flatnonzero(np.r_[True, sorted_col[1:] != sorted_col[:-1]])
        ends = np.r_[starts[1:], len(order)]
        for s, e in zip(starts[(ends - starts) > 1], ends[(ends - starts) > 1]):
            members = candidates[order[s:e]]
            first = int(members[0])
            for i in range(1, len(members)):
                m = int(members[i])
                for other in {first, int(members[i - 1])}:
                    pair = (other, m)
                    if pair in verified or uf.find(other) == uf.find(m):
                        continue
                    verified.add(pair)
                    if np.mean(sigs[other] == sigs[m]) >= threshold:
                        uf.union(other, m)
    return uf


def jaccard(a: str, b: str, n: int = 5) -> float:
    """Exact Jaccard of the shingle sets (for tests and the benchmark)."""
    sa, sb = set(shingle_hashes(a, n).tolist()), set(shingle_hashes(b, n).tolist())
    return len(sa & sb) / max(1, len(sa | sb))
