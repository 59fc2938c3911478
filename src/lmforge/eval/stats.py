"""Bootstrap confidence intervals and the paired bootstrap test for comparing two systems.

Two shapes of metric: a mean of per-example scores (accuracy, EM, F1 per question), resampled fully
vectorised; and a corpus-level metric (BLEU, entity F1, macro-F1) given as ``metric_fn(indices)``
and recomputed on each resample. Both draw the same indices from the same seed, so a mean computed
either way gives the same interval, and a paired test feeds the same resample to both systems.
Intervals are percentile intervals (Efron & Tibshirani 1993, ch. 13).
"""

from __future__ import annotations

from typing import Callable, Iterator, Union

import numpy as np

from ..errors import InputError

MetricFn = Callable[[np.ndarray], float]
Scores = Union[MetricFn, np.ndarray, list]
_CHUNK = 2_000_000  # indices drawn per block: bounds memory at ~16 MB whatever n * n_resamples is


def resample_indices(n: int, n_resamples: int = 1000, seed: int = 0) -> Iterator[np.ndarray]:
    """Blocks of bootstrap index rows, shape (k, n), n_resamples rows in all, reproducible from ``seed``.

    The rows use the smallest unsigned dtype that holds n (gathering is then ~2x faster); metric
    functions receive each row as ``intp``.
    """
    if n <= 0:
        raise InputError("cannot bootstrap an empty evaluation set", "check that predictions were produced")
    rng = np.random.default_rng(seed)
    dtype = np.uint16 if n <= 1 << 16 else np.uint32 if n <= 1 << 32 else np.int64  # small ints gather faster
    rows = max(1, _CHUNK // n)
    done = 0
    while done < n_resamples:
        k = min(rows, n_resamples - done)
        yield rng.integers(0, n, size=(k, n), dtype=dtype)
        done += k


def _values(x) -> np.ndarray:
    v = np.asarray(x, dtype=float)
    if v.ndim != 1:
        raise InputError(f"per-example scores must be one number per example, got shape {v.shape}",
                         "pass a flat list or 1-D array")
    if not np.isfinite(v).all():
        raise InputError("per-example scores contain NaN or infinity", "drop or fix those examples first")
    return v


def _interval(stats: np.ndarray, alpha: float) -> tuple[float, float]:
    lo, hi = np.quantile(stats, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def _resampled_means(v: np.ndarray, n_resamples: int, seed: int) -> np.ndarray:
    return np.concatenate([v[idx].mean(1) for idx in resample_indices(len(v), n_resamples, seed)])


def _resampled_metric(fn: MetricFn, n: int, n_resamples: int, seed: int) -> np.ndarray:
    return np.array([fn(row.astype(np.intp)) for idx in resample_indices(n, n_resamples, seed) for row in idx],
                    dtype=float)


def bootstrap_ci(values: Scores, n_resamples: int = 1000, alpha: float = 0.05, seed: int = 0,
                 n: int | None = None) -> tuple[float, float]:
    """Percentile interval of the mean of per-example ``values`` (or of ``metric_fn`` with ``n``)."""
    if callable(values):
        if n is None:
            raise InputError("bootstrap_ci got a metric function but no n", "pass n= (the number of examples)")
        return bootstrap_metric(values, n, n_resamples, alpha, seed)
    return _interval(_resampled_means(_values(values), n_resamples, seed), alpha)


def bootstrap_metric(metric_fn: MetricFn, n: int, n_resamples: int = 1000, alpha: float = 0.05,
                     seed: int = 0) -> tuple[float, float]:
    """Percentile interval of a corpus-level metric, ``metric_fn(indices) -> float`` over n examples.

    ``indices`` is an int array of length n drawn with replacement (duplicates matter: an example
    drawn twice counts twice). ``textmetrics.bleu_fn`` and ``ner_metrics.entity_f1_fn`` build such
    functions from per-example statistics.
    """
    return _interval(_resampled_metric(metric_fn, n, n_resamples, seed), alpha)


def _as_fn(x: Scores) -> tuple[MetricFn, int | None]:
    if callable(x):
        return x, None
    v = _values(x)
    return (lambda idx: float(v[idx].mean())), len(v)


def paired_bootstrap(a: Scores, b: Scores, n: int | None = None, n_resamples: int = 1000, seed: int = 0,
                     alpha: float = 0.05) -> dict:
    """Is system A's score different from B's? Paired bootstrap (Koehn 2004) on the same resamples.

    ``a`` and ``b`` are per-example score arrays (the metric is their mean) or ``metric_fn(indices)``
    functions. ``delta`` = A - B on the full set; ``ci_low``/``ci_high`` its percentile interval;
    ``p_value`` is two-sided: twice the share of resamples where the delta is zero or has the
    opposite sign to the observed one (capped at 1; 1 when the observed delta is 0). Note that
    sacrebleu's ``--paired-bs`` uses a different statistic (shifted absolute differences, +1
    smoothing) and reports about 0.001 for identical systems; this one reports 1.
    """
    if not callable(a) and not callable(b):
        va, vb = _values(a), _values(b)
        if len(va) != len(vb):
            raise InputError(f"paired scores need the same examples: {len(va)} vs {len(vb)} scores",
                             "score both systems on the same evaluation set")
        d = va - vb
        delta = float(d.mean())
        deltas = _resampled_means(d, n_resamples, seed)
        score_a, score_b = float(va.mean()), float(vb.mean())
    else:
        fa, na = _as_fn(a)
        fb, nb = _as_fn(b)
        sizes = {x for x in (n, na, nb) if x is not None}
        if len(sizes) != 1:
            raise InputError(f"paired_bootstrap cannot tell the number of examples (got {sorted(sizes) or 'none'})",
                             "pass n= equal to the length of any per-example array")
        n = sizes.pop()
        full = np.arange(n)
        score_a, score_b = fa(full), fb(full)
        delta = float(score_a - score_b)
        rows = (row.astype(np.intp) for idx in resample_indices(n, n_resamples, seed) for row in idx)
        deltas = np.array([fa(row) - fb(row) for row in rows])
    if delta == 0:
        p = 1.0
    else:
        flipped = np.mean(deltas <= 0) if delta > 0 else np.mean(deltas >= 0)
        p = float(min(1.0, 2 * flipped))
    lo, hi = _interval(deltas, alpha)
    return {"delta": delta, "ci_low": lo, "ci_high": hi, "p_value": p, "a": float(score_a), "b": float(score_b),
            "n_resamples": int(n_resamples)}
