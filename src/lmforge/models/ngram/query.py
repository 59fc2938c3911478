"""Querying an n-gram model fast: hash tables over the n-gram keys, and compiled scoring loops.

A query has two costs, turning text into word ids and finding, for every token, the longest n-gram
ending there. In numpy both are many passes over the batch (a dict look-up per token, one probe
round per order); KenLM does each token once in C++. With numba installed (the ``ngram`` or
``vectors`` extra) this module does the same: one pass over the UTF-8 bytes splits on whitespace
exactly as ``str.split`` does and looks every word up in a hash table of the vocabulary's bytes, and
one pass over the ids walks each token's chain of n-grams through the per-order hash tables. Without
numba the numpy path in model.py gives the same numbers, only slower.
"""

from __future__ import annotations

import numpy as np

try:
    import numba
except ImportError:  # pragma: no cover - exercised only without the extra
    numba = None

FIB = np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing: the high bits depend on every bit of the key
_FNV_OFFSET = np.uint64(0xCBF29CE484222325)
_FNV_PRIME = np.uint64(0x100000001B3)
_SHIFT = np.uint64(32)


class KeyHash:
    """Open-addressing hash table over a sorted key array, looked up for many keys at once.

    Sorted arrays are what the model stores; a hash probe touches one or two cache lines where a
    binary search touches ~log2(n), which makes batch queries 2-4x faster on large tables.
    """

    MUL = FIB

    def __init__(self, keys: np.ndarray):
        self.bits = max(4, int(np.ceil(np.log2(max(len(keys), 1) * 3))))  # load factor <= 1/3
        size = 1 << self.bits
        self.keys = np.zeros(size, np.uint64)
        self.vals = np.full(size, -1, np.int64)
        slot = self._slot(keys)
        todo = np.arange(len(keys))
        while len(todo):  # linear probing, one round for all keys still without a slot
            s = slot[todo]
            free = self.vals[s] < 0
            cand, s = todo[free], s[free]
            s, first = np.unique(s, return_index=True)
            win = cand[first]
            self.keys[s], self.vals[s] = keys[win], win
            placed = np.zeros(len(keys), bool)
            placed[win] = True
            todo = todo[~placed[todo]]
            slot[todo] = (slot[todo] + 1) & (size - 1)

    def _slot(self, q: np.ndarray) -> np.ndarray:
        return ((q * self.MUL) >> np.uint64(64 - self.bits)).astype(np.int64)

    def find(self, q: np.ndarray) -> np.ndarray:
        """Index of each key of ``q`` in the sorted array, or -1."""
        out = np.full(len(q), -1, np.int64)
        slot = self._slot(q)
        todo = np.arange(len(q))
        mask = (1 << self.bits) - 1
        while len(todo):
            s = slot[todo]
            v = self.vals[s]
            hit = (self.keys[s] == q[todo]) & (v >= 0)
            out[todo[hit]] = v[hit]
            todo = todo[~hit & (v >= 0)]
            slot[todo] = (slot[todo] + 1) & mask
        return out


def _jit(fn):
    return fn if numba is None else numba.njit(nogil=True, cache=True)(fn)


@_jit
def _fnv(u, start, end):
    h = _FNV_OFFSET
    for i in range(start, end):
        h = (h ^ np.uint64(u[i])) * _FNV_PRIME
    return h


@_jit
def _build_words(buf, off, bits):
    """Slot table of the vocabulary: slot -> word id (-1: empty); words are ``buf[off[i]:off[i+1]]``."""
    size = 1 << bits
    table = np.full(size, -1, np.int64)
    mask = size - 1
    for w in range(len(off) - 1):
        s = np.int64((_fnv(buf, off[w], off[w + 1]) * FIB) >> np.uint64(64 - bits))
        while table[s] >= 0:
            s = (s + 1) & mask
        table[s] = w
    return table


@_jit
def _fill(table, start, bits, keys):
    """Put ``keys`` (with their indices as values) into slots ``start..start + 2**bits`` of ``table``."""
    mask = (1 << bits) - 1
    for i in range(len(keys)):
        s = np.int64((keys[i] * FIB) >> np.uint64(64 - bits))
        while table[start + s, 1] >= 0:
            s = (s + 1) & mask
        table[start + s, 0] = np.int64(keys[i])
        table[start + s, 1] = i


@_jit
def _is_space(b):
    return b == 32 or (9 <= b <= 13) or (28 <= b <= 31)


@_jit
def _tokenize(u, table, bits, buf, off, bos, eos, unk):
    """ids of ``<s> w.. </s>`` for every line of ``u`` with a word (lines end at \\n), and positions.

    Separators are the ASCII bytes ``str.isspace`` accepts (non-ASCII spaces are blanked before).
    """
    n = len(u)
    cap = 3 * (n + 1) // 2 + 2  # k words take >= 2k - 1 bytes and at most 3k ids (each its own line)
    ids = np.empty(cap, np.int64)
    pos = np.empty(cap, np.int64)
    k = 0
    mask = (1 << bits) - 1
    i = 0
    while i < n:
        p = 0  # position in the current sentence; 0: no word yet
        while i < n and u[i] != 10:
            if _is_space(u[i]):
                i += 1
                continue
            j = i
            while j < n and u[j] != 10 and not _is_space(u[j]):
                j += 1
            if p == 0:
                ids[k] = bos
                pos[k] = 0
                k += 1
                p = 1
            s = np.int64((_fnv(u, i, j) * FIB) >> np.uint64(64 - bits))
            w = unk
            while table[s] >= 0:
                c = table[s]
                a, b = off[c], off[c + 1]
                if b - a == j - i:
                    same = True
                    for t in range(j - i):
                        if buf[a + t] != u[i + t]:
                            same = False
                            break
                    if same:
                        w = c
                        break
                s = (s + 1) & mask
            ids[k] = w
            pos[k] = p
            k += 1
            p += 1
            i = j
        if p > 0:
            ids[k] = eos
            pos[k] = p
            k += 1
        i += 1
    return ids[:k], pos[:k]


@_jit
def _score(ids, pos, order, table, hstart, hbits, logp, lstart, bow, bstart):
    """log10 p of every token after <s> and the length of the n-gram that matched (as model.log10_probs).

    Order by order, as the numpy path: within one order the probes of different tokens do not
    depend on each other, so their loads overlap (token by token, each waits for the last).
    """
    n = len(ids)
    idx = np.full((order + 1, n), -1, np.int64)  # idx[m, i]: the m-gram ending at token i, or -1
    idx[1] = ids
    for m in range(2, order + 1):
        mask = (1 << hbits[m]) - 1
        base = hstart[m]
        shift = np.uint64(64 - hbits[m])
        for i in range(1, n):
            c = idx[m - 1, i - 1]
            if c >= 0 and pos[i] >= m - 1:
                key = (np.uint64(c) << _SHIFT) | np.uint64(ids[i])
                k = np.int64(key)
                s = np.int64((key * FIB) >> shift)
                while True:  # linear probing; an empty slot (-1) is a miss
                    v = table[base + s, 1]
                    if v < 0 or table[base + s, 0] == k:
                        idx[m, i] = v
                        break
                    s = (s + 1) & mask
    lp = np.empty(n, np.float64)
    length = np.empty(n, np.int64)
    k = 0
    for i in range(n):
        if pos[i] == 0:
            continue
        best = 1
        for m in range(2, order + 1):
            if idx[m, i] >= 0:
                best = m
        x = np.float64(logp[lstart[best] + idx[best, i]])
        for j in range(best, order):  # back-off of each longer context that did not match
            if pos[i] >= j and idx[j, i - 1] >= 0:
                x += np.float64(bow[bstart[j] + idx[j, i - 1]])
        lp[k] = x
        length[k] = best
        k += 1
    return lp[:k], length[:k]


class Scorer:
    """The compiled query path of one model: flat tables built once, then ``score(ids, pos)`` and
    ``tokenize(data)`` (whitespace-split UTF-8 bytes -> ids, positions)."""

    def __init__(self, words: list[str], logp: list[np.ndarray], bow: list[np.ndarray],
                 keys: list[np.ndarray | None], bos: int, eos: int, unk: int):
        order = len(logp)
        self.order = order
        self.bos, self.eos, self.unk = bos, eos, unk
        # one table for all orders, key and value side by side (a probe reads one cache line), at a
        # load of at most 2/3 as KenLM's probing tables: a quarter of KeyHash's bytes, so more of
        # it stays in cache
        bits = [0, 0] + [max(4, int(np.ceil(np.log2(max(len(k), 1) * 1.5)))) for k in keys[1:]]
        self.hbits = np.array(bits, np.int64)
        self.hstart = np.concatenate([[0], np.cumsum([0 if b == 0 else 1 << b for b in bits])])[:order + 1]
        self.table = np.full((int(sum(1 << b for b in bits[2:])), 2), -1, np.int64)
        for m in range(2, order + 1):
            _fill(self.table, int(self.hstart[m]), bits[m], np.ascontiguousarray(keys[m - 1], np.uint64))
        self.logp = np.concatenate(logp)
        self.lstart = np.concatenate([[0, 0], np.cumsum([len(x) for x in logp])[:-1]]).astype(np.int64)
        bows = list(bow)
        self.bow = np.concatenate(bows) if bows else np.zeros(0, np.float32)
        self.bstart = np.concatenate([[0, 0], np.cumsum([len(x) for x in bows])[:-1]]).astype(np.int64) \
            if bows else np.zeros(2, np.int64)
        enc = [w.encode("utf-8") for w in words]
        self.buf = np.frombuffer(b"".join(enc), np.uint8)
        self.off = np.concatenate([[0], np.cumsum([len(b) for b in enc])]).astype(np.int64)
        self.wbits = max(4, int(np.ceil(np.log2(max(len(words), 1) * 3))))
        self.wtable = _build_words(self.buf, self.off, self.wbits)

    def score(self, ids: np.ndarray, pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return _score(ids, pos, self.order, self.table, self.hstart, self.hbits,
                      self.logp, self.lstart, self.bow, self.bstart)

    def tokenize(self, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return _tokenize(u, self.wtable, self.wbits, self.buf, self.off, self.bos, self.eos, self.unk)
