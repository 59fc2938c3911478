"""Training drivers: jobs of ~10k words handed to ``threads`` Python threads running nogil kernels.

The learning rate decays linearly with the position of a job in the whole run (epochs x corpus), so a
run's schedule does not depend on which thread is faster. One thread with a fixed seed is exactly
reproducible; more threads are hogwild, like gensim.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from . import kernels
from .config import VectorsConfig
from .corpus import Corpus
from .keyed import WordVectors
from .subwords import SubwordTable, subword_rows

JOB_WORDS = 10_000
PAIRS_PER_CHUNK = 4_000_000  # GloVe co-occurrence pairs counted per sparse-matrix chunk


@dataclass
class TrainStats:
    """What a run measured; ``words_per_s`` counts corpus tokens (OOV included) x epochs / train time."""

    raw_words: int
    retained_words: int
    effective_words: int
    epochs: int
    seconds: float
    vocab_size: int
    extra: dict = field(default_factory=dict)

    @property
    def words_per_s(self) -> float:
        return self.raw_words * self.epochs / max(self.seconds, 1e-9)

    def to_dict(self) -> dict:
        return {"raw_words": self.raw_words, "retained_words": self.retained_words,
                "effective_words": self.effective_words, "epochs": self.epochs, "seconds": round(self.seconds, 3),
                "words_per_s": round(self.words_per_s), "vocab_size": self.vocab_size, **self.extra}


def _jobs(starts: np.ndarray, job_words: int = JOB_WORDS) -> list[tuple[int, int]]:
    """Sentence ranges of about ``job_words`` words each."""
    out, lo = [], 0
    n_sent = starts.size - 1
    cut = np.searchsorted(starts, np.arange(job_words, starts[-1] + job_words, job_words), side="left")
    for hi in cut:
        hi = int(min(max(hi, lo + 1), n_sent))
        if hi > lo:
            out.append((lo, hi))
            lo = hi
    if lo < n_sent:
        out.append((lo, n_sent))
    return out


def _run_threads(n_threads: int, n_jobs: int, work: Callable[[int, int], float],
                 progress: Callable[[float], None] | None = None) -> list[float]:
    """Run ``work(thread, job)`` for jobs 0..n_jobs-1 on a shared counter; returns per-job results."""
    lock = threading.Lock()
    nxt = [0]
    results = [0.0] * n_jobs
    errors: list[BaseException] = []

    def loop(t: int) -> None:
        try:
            while True:
                with lock:
                    j = nxt[0]
                    if j >= n_jobs or errors:
                        return
                    nxt[0] += 1
                results[j] = work(t, j)
                if progress is not None:
                    with lock:
                        progress((j + 1) / n_jobs)
        except BaseException as err:  # surface in the caller's thread
            errors.append(err)

    threads = [threading.Thread(target=loop, args=(t,), daemon=True) for t in range(n_threads)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    if errors:
        raise errors[0]
    return results


def _init_rows(n: int, dim: int, seed: int) -> np.ndarray:
    """word2vec's initialisation: uniform in [-0.5/dim, 0.5/dim)."""
    rng = np.random.default_rng(seed)
    return ((rng.random((n, dim), dtype=np.float32) - 0.5) / dim).astype(np.float32)


def train_word2vec(corpus: Corpus, cfg: VectorsConfig, progress: Callable[[float], None] | None = None
                   ) -> tuple[WordVectors, TrainStats]:
    """Skip-gram or CBOW with negative sampling; fastText n-gram rows when ``cfg.subwords``."""
    kernels.require_numba()
    V, dim = len(corpus.words), cfg.dim
    counts = corpus.counts.astype(np.float64)
    if cfg.subwords:
        sub_ptr, sub_idx = subword_rows(corpus.words, cfg.min_n, cfg.max_n, cfg.bucket)
        n_rows = V + cfg.bucket
    else:
        sub_ptr, sub_idx = np.arange(V + 1, dtype=np.int64), np.arange(V, dtype=np.int64)
        n_rows = V
    syn0 = _init_rows(n_rows, dim, cfg.seed)
    syn1neg = np.zeros((V, dim), dtype=np.float32)
    # subsampling (word2vec.c): keep with probability (sqrt(c / t) + 1) * t / c, t = sample * corpus size
    if cfg.sample > 0:
        t = cfg.sample * counts.sum()
        keep = np.minimum((np.sqrt(counts / t) + 1) * t / counts, 1.0).astype(np.float32)
    else:
        keep = np.ones(V, dtype=np.float32)
    prob, alias = kernels.alias_table(counts ** cfg.ns_exponent)  # noise: unigram^0.75
    table = kernels.exp_table()
    jobs = _jobs(corpus.starts)
    job_words = np.array([corpus.starts[hi] - corpus.starts[lo] for lo, hi in jobs], dtype=np.float64)
    before = np.concatenate([[0.0], np.cumsum(job_words)])
    total = before[-1] * cfg.n_epochs
    a0, a1 = cfg.start_alpha, cfg.min_alpha
    bufs = [(np.zeros(dim, np.float32), np.zeros(dim, np.float32), np.zeros(cfg.max_sentence_length, np.int32),
             np.array([cfg.seed * 7919 + t + 1], dtype=np.uint64)) for t in range(cfg.threads)]

    def work(t: int, j: int) -> float:
        epoch, k = divmod(j, len(jobs))
        p0 = (epoch * before[-1] + before[k]) / total
        p1 = (epoch * before[-1] + before[k + 1]) / total
        lo, hi = jobs[k]
        h, neu1e, buf, state = bufs[t]
        args = (syn0, syn1neg, corpus.ids, corpus.starts, lo, hi, keep, prob, alias, sub_ptr, sub_idx, cfg.window,
                cfg.negative, a0 - (a0 - a1) * p0, a0 - (a0 - a1) * p1, state, table, h, neu1e, buf)
        if cfg.model == "cbow":
            return kernels.cbow_job(*args, cfg.cbow_mean)
        return kernels.sg_job(*args)

    _compile(cfg, work)
    start = time.perf_counter()
    effective = _run_threads(cfg.threads, len(jobs) * cfg.n_epochs, work, progress)
    seconds = time.perf_counter() - start
    if cfg.subwords:
        vectors = np.empty((V, dim), dtype=np.float32)
        kernels.compose(syn0, sub_ptr, sub_idx, vectors)
        wv = WordVectors(corpus.words, vectors, SubwordTable(syn0[V:], cfg.min_n, cfg.max_n))
    else:
        wv = WordVectors(corpus.words, syn0)
    stats = TrainStats(corpus.raw_words, corpus.retained_words, int(sum(effective)), cfg.n_epochs, seconds, V)
    return wv, stats


def _compile(cfg: VectorsConfig, work: Callable[[int, int], float]) -> None:
    """Trigger numba compilation (or the cache load) outside the timed loop on a throwaway copy."""
    fn = kernels.cbow_job if cfg.model == "cbow" else kernels.sg_job
    if getattr(fn, "signatures", None):
        return
    d = 4
    z = np.zeros((2, d), np.float32)
    args = (z, z.copy(), np.zeros(2, np.int32), np.array([0, 2], np.int64), 0, 1, np.ones(2, np.float32),
            np.ones(2, np.float32), np.zeros(2, np.int32), np.arange(3, dtype=np.int64), np.arange(2, dtype=np.int64), cfg.window,
            cfg.negative, 0.01, 0.01, np.array([1], np.uint64), kernels.exp_table(), np.zeros(d, np.float32),
            np.zeros(d, np.float32), np.zeros(4, np.int32))
    if cfg.model == "cbow":
        fn(*args, cfg.cbow_mean)
    else:
        fn(*args)


def cooccurrence(corpus: Corpus, window: int):
    """Symmetric co-occurrence counts weighted 1/distance (GloVe), as a scipy CSR matrix (V x V)."""
    from scipy import sparse

    kernels.require_numba()
    V = len(corpus.words)
    lengths = np.diff(corpus.starts)
    pairs = np.minimum(lengths, window) * lengths  # an upper bound per sentence
    total = sparse.csr_matrix((V, V), dtype=np.float64)
    lo, n_sent = 0, lengths.size
    acc = np.concatenate([[0], np.cumsum(pairs)])
    while lo < n_sent:
        hi = int(np.searchsorted(acc, acc[lo] + PAIRS_PER_CHUNK, side="right")) - 1
        hi = min(max(hi, lo + 1), n_sent)
        cap = int(acc[hi] - acc[lo])
        rows, cols = np.empty(cap, np.int32), np.empty(cap, np.int32)
        vals = np.empty(cap, np.float64)
        n = kernels.cooc_pairs(corpus.ids, corpus.starts, lo, hi, window, rows, cols, vals)
        total = total + sparse.csr_matrix((vals[:n], (rows[:n], cols[:n])), shape=(V, V))
        lo = hi
    return (total + total.T).tocsr()


def train_glove(corpus: Corpus, cfg: VectorsConfig, progress: Callable[[float], None] | None = None
                ) -> tuple[WordVectors, TrainStats]:
    """GloVe: co-occurrences, then AdaGrad on the weighted least squares; vectors = W + C (glove.c model 2)."""
    kernels.require_numba()
    V, dim = len(corpus.words), cfg.dim
    start = time.perf_counter()
    X = cooccurrence(corpus, cfg.window).tocoo()
    count_s = time.perf_counter() - start
    rows, cols = X.row.astype(np.int32), X.col.astype(np.int32)
    logx = np.log(X.data)
    fx = np.minimum(1.0, (X.data / cfg.x_max) ** cfg.power)
    rng = np.random.default_rng(cfg.seed)
    W = (rng.random((V, dim)) - 0.5) / dim
    C = (rng.random((V, dim)) - 0.5) / dim
    bw, bc = (rng.random(V) - 0.5) / dim, (rng.random(V) - 0.5) / dim
    gW, gC, gbw, gbc = np.ones_like(W), np.ones_like(C), np.ones(V), np.ones(V)
    nnz = rows.size
    lr = cfg.start_alpha
    costs = []
    for epoch in range(cfg.n_epochs):
        order = rng.permutation(nnz)
        bounds = np.linspace(0, nnz, cfg.threads + 1).astype(np.int64)
        parts = _run_threads(cfg.threads, cfg.threads, lambda t, j: kernels.glove_job(
            W, C, bw, bc, gW, gC, gbw, gbc, rows, cols, logx, fx, order, bounds[j], bounds[j + 1], lr))
        costs.append(sum(parts) / max(nnz, 1))
        if progress is not None:
            progress((epoch + 1) / cfg.n_epochs)
    seconds = time.perf_counter() - start
    wv = WordVectors(corpus.words, (W + C).astype(np.float32))
    stats = TrainStats(corpus.raw_words, corpus.retained_words, corpus.retained_words, cfg.n_epochs, seconds, V,
                       {"cooccurrences": int(nnz), "cooccurrence_seconds": round(count_s, 3),
                        "final_cost": round(costs[-1], 5) if costs else None})
    return wv, stats


def train(corpus: Corpus, cfg: VectorsConfig, progress: Callable[[float], None] | None = None
          ) -> tuple[WordVectors, TrainStats]:
    if cfg.model == "glove":
        return train_glove(corpus, cfg, progress)
    return train_word2vec(corpus, cfg, progress)
