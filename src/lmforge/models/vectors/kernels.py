"""numba inner loops: word2vec (skip-gram / CBOW, negative sampling, fastText subwords) and GloVe.

They follow word2vec.c: a 64-bit linear congruential generator per thread, a sigmoid table over
[-6, 6], the unigram^0.75 noise distribution, subsampling and per-word shrunk windows. Every function
is ``nogil`` so Python threads run them in parallel on disjoint jobs (hogwild: rows are shared and
updated without locks, which is what gensim and word2vec.c do too).

Word inputs go through ``sub_ptr``/``sub_idx`` (CSR): the rows of syn0 that make up word w are
``sub_idx[sub_ptr[w]:sub_ptr[w+1]]``. Plain word2vec has exactly one row per word (itself);
fastText adds its hashed n-gram rows, and the input vector is their mean.
"""

from __future__ import annotations

import numpy as np

from ...errors import ConfigError

try:
    import numba
except ImportError:  # pragma: no cover - exercised only without the extra
    numba = None

MAX_EXP = 6.0
EXP_TABLE_SIZE = 1000
_MUL = np.uint64(25214903917)
_ADD = np.uint64(11)
_S16 = np.uint64(16)
_M24 = np.uint64(0xFFFFFF)
_M16 = np.uint64(0xFFFF)


def require_numba() -> None:
    if numba is None:
        raise ConfigError("training word vectors needs numba, which is not installed",
                          "pip install 'lmforge[vectors]' (or: pip install numba)")


def exp_table() -> np.ndarray:
    """sigmoid(x) for x in [-MAX_EXP, MAX_EXP), EXP_TABLE_SIZE steps (word2vec.c's expTable)."""
    x = (np.arange(EXP_TABLE_SIZE, dtype=np.float64) / EXP_TABLE_SIZE * 2 - 1) * MAX_EXP
    return (1.0 / (1.0 + np.exp(-x))).astype(np.float32)


def _jit(fn):
    if numba is None:
        return fn
    return numba.njit(nogil=True, fastmath=True, cache=True)(fn)


@_jit
def _next(state):
    state[0] = state[0] * _MUL + _ADD
    return state[0] >> _S16


@_jit
def _noise(prob, alias, state):
    """A word from the noise distribution in O(1): Walker's alias method (one 64-bit draw)."""
    r = _next(state)  # 48 random bits
    i = np.int64((r >> _S16) % np.uint64(prob.size))
    if np.float32(r & _M16) * np.float32(1.0 / 65536.0) < prob[i]:
        return i
    return np.int64(alias[i])


def alias_table(weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Walker/Vose alias table for sampling index i with probability weights[i] / sum."""
    n = weights.size
    p = weights.astype(np.float64) * n / weights.sum()
    prob = np.ones(n, dtype=np.float32)
    alias = np.arange(n, dtype=np.int32)
    small = [i for i in range(n) if p[i] < 1.0]
    large = [i for i in range(n) if p[i] >= 1.0]
    while small and large:
        s, g = small.pop(), large.pop()
        prob[s], alias[s] = p[s], g
        p[g] -= 1.0 - p[s]
        (small if p[g] < 1.0 else large).append(g)
    return prob, alias


@_jit
def _ns_update(h, w_out, syn1neg, prob, alias, negative, alpha, state, table, neu1e):
    """Negative-sampling step for hidden ``h`` predicting ``w_out``: updates syn1neg, adds into neu1e."""
    dim = h.size
    for d in range(negative + 1):
        if d == 0:
            target = np.int64(w_out)
            label = 1.0
        else:
            target = _noise(prob, alias, state)
            if target == w_out:
                continue
            label = 0.0
        f = np.float32(0.0)
        for k in range(dim):
            f += h[k] * syn1neg[target, k]
        if f >= MAX_EXP:
            g = (label - 1.0) * alpha
        elif f <= -MAX_EXP:
            g = label * alpha
        else:
            g = (label - table[int((f + MAX_EXP) * (EXP_TABLE_SIZE / MAX_EXP / 2))]) * alpha
        g = np.float32(g)
        for k in range(dim):
            neu1e[k] += g * syn1neg[target, k]
            syn1neg[target, k] += g * h[k]


@_jit
def _subsample(ids, lo, hi, keep, state, buf):
    """Copy ids[lo:hi] into buf, dropping frequent words with probability 1 - keep[w]."""
    n = 0
    for i in range(lo, hi):
        w = ids[i]
        if keep[w] < 1.0:
            if keep[w] < (_next(state) & _M24) / 16777216.0:
                continue
        buf[n] = w
        n += 1
    return n


@_jit
def sg_job(syn0, syn1neg, ids, starts, s_lo, s_hi, keep, prob, alias, sub_ptr, sub_idx, window, negative,
           alpha0, alpha1, state, table, h, neu1e, buf):
    """Skip-gram over sentences [s_lo, s_hi); the rate goes linearly alpha0 -> alpha1. Returns words kept."""
    dim = syn0.shape[1]
    total = starts[s_hi] - starts[s_lo]
    done = 0
    effective = 0
    for s in range(s_lo, s_hi):
        alpha = alpha0 + (alpha1 - alpha0) * (done / max(total, 1))
        lo = starts[s]
        hi = starts[s + 1]
        done += hi - lo
        n = _subsample(ids, lo, hi, keep, state, buf)
        effective += n
        for pos in range(n):
            b = int(_next(state) % np.uint64(window))
            start = max(0, pos - window + b)
            end = min(n, pos + window + 1 - b)
            w_out = buf[pos]
            for pos2 in range(start, end):
                if pos2 == pos:
                    continue
                w_in = buf[pos2]
                r0 = sub_ptr[w_in]
                r1 = sub_ptr[w_in + 1]
                for k in range(dim):
                    neu1e[k] = 0.0
                if r1 - r0 == 1:  # plain word2vec: the input row itself (not changed by the update)
                    _ns_update(syn0[sub_idx[r0]], w_out, syn1neg, prob, alias, negative, alpha, state, table, neu1e)
                else:
                    inv = np.float32(1.0 / (r1 - r0))
                    for k in range(dim):
                        h[k] = 0.0
                    for r in range(r0, r1):
                        row = sub_idx[r]
                        for k in range(dim):
                            h[k] += syn0[row, k]
                    for k in range(dim):
                        h[k] *= inv
                    _ns_update(h, w_out, syn1neg, prob, alias, negative, alpha, state, table, neu1e)
                for r in range(r0, r1):
                    row = sub_idx[r]
                    for k in range(dim):
                        syn0[row, k] += neu1e[k]
    return effective


@_jit
def cbow_job(syn0, syn1neg, ids, starts, s_lo, s_hi, keep, prob, alias, sub_ptr, sub_idx, window, negative,
             alpha0, alpha1, state, table, h, neu1e, buf, cbow_mean):
    """CBOW: the mean (or sum) of the context rows predicts the centre word. Returns words kept."""
    dim = syn0.shape[1]
    total = starts[s_hi] - starts[s_lo]
    done = 0
    effective = 0
    for s in range(s_lo, s_hi):
        alpha = alpha0 + (alpha1 - alpha0) * (done / max(total, 1))
        lo = starts[s]
        hi = starts[s + 1]
        done += hi - lo
        n = _subsample(ids, lo, hi, keep, state, buf)
        effective += n
        for pos in range(n):
            b = int(_next(state) % np.uint64(window))
            start = max(0, pos - window + b)
            end = min(n, pos + window + 1 - b)
            for k in range(dim):
                h[k] = 0.0
                neu1e[k] = 0.0
            count = 0
            for pos2 in range(start, end):
                if pos2 == pos:
                    continue
                w = buf[pos2]
                for r in range(sub_ptr[w], sub_ptr[w + 1]):
                    row = sub_idx[r]
                    count += 1
                    for k in range(dim):
                        h[k] += syn0[row, k]
            if count == 0:
                continue
            inv = np.float32(1.0 / count)
            if cbow_mean:
                for k in range(dim):
                    h[k] *= inv
            _ns_update(h, buf[pos], syn1neg, prob, alias, negative, alpha, state, table, neu1e)
            if not cbow_mean:
                for k in range(dim):
                    neu1e[k] *= inv
            for pos2 in range(start, end):
                if pos2 == pos:
                    continue
                w = buf[pos2]
                for r in range(sub_ptr[w], sub_ptr[w + 1]):
                    row = sub_idx[r]
                    for k in range(dim):
                        syn0[row, k] += neu1e[k]
    return effective


@_jit
def cooc_pairs(ids, starts, s_lo, s_hi, window, rows, cols, vals):
    """(left word, right word, 1/distance) for every pair within ``window`` in sentences [s_lo, s_hi)."""
    n = 0
    for s in range(s_lo, s_hi):
        lo = starts[s]
        hi = starts[s + 1]
        for i in range(lo, hi):
            for j in range(max(lo, i - window), i):
                rows[n] = ids[j]
                cols[n] = ids[i]
                vals[n] = 1.0 / (i - j)
                n += 1
    return n


@_jit
def glove_job(W, C, bw, bc, gW, gC, gbw, gbc, rows, cols, logx, fx, order, lo, hi, lr):
    """AdaGrad on f(x) (w_i.c_j + b_i + b_j - log x)^2 over entries order[lo:hi] (Stanford glove.c)."""
    dim = W.shape[1]
    cost = 0.0
    for t in range(lo, hi):
        e = order[t]
        i = rows[e]
        j = cols[e]
        diff = bw[i] + bc[j] - logx[e]
        for k in range(dim):
            diff += W[i, k] * C[j, k]
        fdiff = fx[e] * diff
        cost += 0.5 * fdiff * diff
        fdiff *= lr
        for k in range(dim):
            t1 = min(max(fdiff * C[j, k], -100.0), 100.0)
            t2 = min(max(fdiff * W[i, k], -100.0), 100.0)
            W[i, k] -= t1 / np.sqrt(gW[i, k])
            C[j, k] -= t2 / np.sqrt(gC[j, k])
            gW[i, k] += t1 * t1
            gC[j, k] += t2 * t2
        bw[i] -= fdiff / np.sqrt(gbw[i])
        bc[j] -= fdiff / np.sqrt(gbc[j])
        gbw[i] += fdiff * fdiff
        gbc[j] += fdiff * fdiff
    return cost


@_jit
def compose(syn0, sub_ptr, sub_idx, out):
    """out[w] = mean of word w's rows (its fastText vector)."""
    dim = syn0.shape[1]
    for w in range(out.shape[0]):
        r0 = sub_ptr[w]
        r1 = sub_ptr[w + 1]
        for k in range(dim):
            out[w, k] = 0.0
        for r in range(r0, r1):
            row = sub_idx[r]
            for k in range(dim):
                out[w, k] += syn0[row, k]
        for k in range(dim):
            out[w, k] /= r1 - r0
