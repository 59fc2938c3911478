"""From raw counts to back-off tables: p(w | h) for every seen n-gram and a back-off weight per context.

All three methods end in the same ARPA-shaped model, so querying, sampling and export share code:

    p(w | h) = prob(h w)                     if h w was seen
             = bow(h) * p(w | h minus its first word)   otherwise (bow = 1 for unseen h)

* ``kneser_ney``: interpolated modified Kneser-Ney (Chen & Goodman 1998, eq. 26), as KenLM's lmplz
  builds it: adjusted counts (continuation counts for lower orders, raw counts for the highest
  order and for n-grams that start with <s>), three discounts per order from the count-of-counts,
  unigrams interpolated with the uniform distribution over the vocabulary without <s>, so <unk>
  gets the unigram back-off mass. ``prob`` holds the interpolated probability, ``bow`` gamma(h).
* ``katz``: Good-Turing discounts for counts <= 5 (Katz 1987), the freed mass of each context
  spread over the unseen words in proportion to the lower order; unigram leftover mass spread
  uniformly.
* ``add_k``: (c(h w) + k) / (c(h) + k |V|) for seen n-grams; the mass add-k gives unseen words
  backs off to the lower order (Katz-style) instead of being spread uniformly, so it stays a proper
  distribution that an ARPA file can hold.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .counts import BOS_ID, LOW, Counts, pack

KATZ_MAX = 5  # counts above this are trusted as they are (Katz's k)
EPS = 1e-7


@dataclass
class Structure:
    """For each order n >= 2 (list index n-1): prefix index and suffix index of every n-gram.

    ``bos[n-1]`` is the index range of the n-grams that start with <s>: keys sort by their word ids,
    so these are one run (the children of the previous order's run).
    """

    parent: list[np.ndarray | None]
    suffix: list[np.ndarray | None]
    bos: list[tuple[int, int]]


def structure(keys: list[np.ndarray | None], vocab_size: int,
              known_suffix: list[np.ndarray | None] | None = None) -> Structure:
    """Prefix from the keys; suffixes from counting when given, else by search."""
    parent, suffix = [None], [None]
    bos = [(BOS_ID, BOS_ID + 1)]
    for n in range(1, len(keys)):
        p = (keys[n] >> np.uint64(32)).view(np.int64)
        parent.append(p)
        lo, hi = bos[-1]
        bos.append((int(np.searchsorted(p, lo)), int(np.searchsorted(p, hi))))
        if known_suffix is not None:
            suffix.append(known_suffix[n])
            continue
        w = (keys[n] & LOW).astype(np.int64)
        if n == 1:
            suffix.append(w)
        else:  # suffix of (prefix, w) is (suffix of prefix, w), one order down
            q = pack(suffix[n - 1][p], w)
            s = np.searchsorted(keys[n - 1], q)
            s[s == len(keys[n - 1])] = 0
            if not np.array_equal(keys[n - 1][s], q):
                raise ValueError(f"order {n + 1}: some n-grams lack their suffix among the {n}-grams")
            suffix.append(s)
    return Structure(parent, suffix, bos)


@dataclass
class Tables:
    """log10 probabilities per order (index n-1) and log10 back-offs for orders < N."""

    logp: list[np.ndarray]
    bow: list[np.ndarray]
    info: dict = field(default_factory=dict)


def _log10(p: np.ndarray) -> np.ndarray:
    """log10 p as float32, within [-99, 0] (-99: SRILM's "zero"); clipping after the cast gives the same
    values as before it (rounding is monotone and both bounds are float32 numbers) on half the bytes."""
    with np.errstate(divide="ignore"):
        out = np.log10(p).astype(np.float32)
    return np.clip(out, -99.0, 0.0, out=out)


def kn_discounts(a: np.ndarray, fallback: tuple[float, float, float]) -> tuple[np.ndarray, bool]:
    """D1, D2, D3+ from the counts-of-counts of the adjusted counts ``a`` (Chen & Goodman eq. 26)."""
    t = np.array([np.count_nonzero(a == k) for k in (1, 2, 3, 4)], dtype=np.float64)
    if np.all(t > 0):
        y = t[0] / (t[0] + 2 * t[1])
        d = np.array([j - (j + 1) * y * t[j] / t[j - 1] for j in (1, 2, 3)])
        if np.all((d >= 0) & (d <= np.array([1, 2, 3]))):
            return d, True
    return np.array(fallback, dtype=np.float64), False


def _bincount(idx: np.ndarray, weights: np.ndarray, size: int) -> np.ndarray:
    return np.bincount(idx, weights=weights, minlength=size).astype(np.float64, copy=False)


def _kn_gamma(a: np.ndarray, a3: np.ndarray, par: np.ndarray, d: np.ndarray, ctx: int) -> tuple[np.ndarray, np.ndarray]:
    """Per context h: total adjusted count of its children, and gamma(h) = (D1 n1 + D2 n2 + D3 n3+) / total."""
    total = _bincount(par, a, ctx)
    n_by_a = np.bincount(a3 * ctx + par, minlength=4 * ctx).reshape(4, ctx)  # children with a = 0, 1, 2, 3+
    mass = d[0] * n_by_a[1]
    mass += d[1] * n_by_a[2]
    mass += d[2] * n_by_a[3]
    return total, np.divide(mass, total, out=np.ones(ctx), where=total > 0)


def kneser_ney(counts: Counts, st: Structure, fallback: tuple[float, float, float]) -> Tables:
    """Interpolated modified Kneser-Ney tables. Arrays are freed as soon as they are used: fewer fresh
    pages to fault in, which is a good part of the time of these memory-bound passes."""
    order, v = counts.order, len(counts.counts[0])
    # adjusted counts, top down: continuation counts, except raw counts at the top and after <s>
    adj = [None] * order
    adj[order - 1] = counts.counts[order - 1]
    for n in range(order - 2, -1, -1):
        a = np.bincount(st.suffix[n + 1], minlength=len(counts.counts[n])).astype(np.int64, copy=False)
        lo, hi = st.bos[n]
        a[lo:hi] = counts.counts[n][lo:hi]
        adj[n] = a
    adj[0] = adj[0].copy()
    adj[0][BOS_ID] = 0
    logp, bows, discounts, estimated = [], [], [], []
    prob_lower = None
    for n in range(order):
        a, adj[n] = adj[n], None
        d, ok = kn_discounts(a, fallback)
        discounts.append([round(float(x), 6) for x in d])
        estimated.append(ok)
        a3 = np.minimum(a, 3)
        if n == 0:
            total = float(a.sum())
            mass = float(sum(d[j - 1] * np.count_nonzero(a == j) for j in (1, 2)) + d[2] * np.count_nonzero(a >= 3))
            p = (a - np.concatenate([[0.0], d])[a3]) / total + (mass / total) / (v - 1)  # uniform over V without <s>
            p[BOS_ID] = 1.0  # never predicted; lmplz writes log10 p(<s>) = 0
        else:
            par = st.parent[n]
            total, gamma = _kn_gamma(a, a3, par, d, len(counts.counts[n - 1]))
            # p = (a - D[a]) / total[par] + gamma[par] * prob_lower[suffix], with fewer temporaries
            p = a - np.concatenate([[0.0], d])[a3]
            del a3
            p /= total[par]
            del total
            lower = prob_lower[st.suffix[n]]
            lower *= gamma[par]
            p += lower
            del lower
            bows.append(np.log10(np.clip(gamma, 1e-30, None)).astype(np.float32))  # 0 where h has no children
        logp.append(_log10(p))
        prob_lower = p
    return Tables(logp, bows, {"discounts": discounts, "discounts_estimated": estimated})


def good_turing(c: np.ndarray, k: int = KATZ_MAX) -> np.ndarray:
    """Katz discount ratio d_r for r = 0..k (1.0 where the count-of-counts do not allow one)."""
    nr = np.bincount(c, minlength=k + 2)[: k + 2].astype(np.float64)
    d = np.ones(k + 1)
    if nr[1] == 0:
        return d
    common = (k + 1) * nr[k + 1] / nr[1]
    if common >= 1:
        return d
    for r in range(1, k + 1):
        if nr[r] > 0 and nr[r + 1] > 0:
            dr = ((r + 1) * nr[r + 1] / (r * nr[r]) - common) / (1 - common)
            if 0 < dr <= 1:
                d[r] = dr
    return d


def backoff(counts: Counts, st: Structure, smoothing: str, k: float = 1.0) -> Tables:
    """Katz or add-k: discounted probabilities of seen n-grams, leftover mass to the lower order."""
    order, v = counts.order, len(counts.counts[0])
    logp, bows, info = [], [], {}
    prob_lower = None
    for n in range(order):
        c = counts.counts[n]
        if smoothing == "katz":
            d = good_turing(c)
            info.setdefault("good_turing", []).append([round(float(x), 6) for x in d[1:]])
            disc = c * np.where(c <= KATZ_MAX, d[np.minimum(c, KATZ_MAX)], 1.0)
        if n == 0:
            c = c.copy()
            c[BOS_ID] = 0
            if smoothing == "katz":
                disc[BOS_ID] = 0
                p = disc / c.sum()
                p += max(0.0, 1.0 - p.sum()) / (v - 1)
            else:
                p = (c + k) / (c.sum() + k * (v - 1))
            p[BOS_ID] = 1.0
        else:
            ctx = len(counts.counts[n - 1])
            par = st.parent[n]
            total = _bincount(par, c, ctx)
            p = (disc / total[par]) if smoothing == "katz" else (c + k) / (total[par] + k * (v - 1))
            left = 1.0 - _bincount(par, p, ctx)
            lower = 1.0 - _bincount(par, prob_lower[st.suffix[n]], ctx)
            starved = (total > 0) & (left < EPS)  # all mass on seen words: keep a sliver for the rest
            if starved.any():
                scale = np.divide(1 - EPS, 1 - left, out=np.ones(ctx), where=starved)
                p = p * scale[par]
                left = np.where(starved, EPS, left)
            alpha = np.divide(left, lower, out=np.ones(ctx), where=(total > 0) & (lower > EPS))
            bows.append(np.log10(np.clip(alpha, 1e-30, None)).astype(np.float32))
        logp.append(_log10(p))
        prob_lower = p
    return Tables(logp, bows, info)


def estimate(counts: Counts, smoothing: str, k: float = 1.0,
             fallback: tuple[float, float, float] = (0.5, 1.0, 1.5)) -> Tables:
    st = structure(counts.keys, len(counts.counts[0]), counts.suffix)
    if smoothing == "kneser_ney":
        return kneser_ney(counts, st, fallback)
    return backoff(counts, st, smoothing, k)
