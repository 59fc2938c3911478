"""Classification metrics (single- and multi-label) plus calibration and curves for reports.

Single-label numbers come from scikit-learn so they match what users already trust; the multi-label
counts are a few lines of numpy (fast enough to run inside a threshold search) and the tests check
them against scikit-learn. scikit-learn is imported inside the functions: importing this module must
stay cheap because the CLI imports it on start-up.
"""

from __future__ import annotations

import math

import numpy as np

ECE_BINS = 15
MAX_CURVE_POINTS = 200


def classification_metrics(y_true: list[int], probs: np.ndarray, labels: list[str]) -> dict:
    """Accuracy, macro-F1, per-class P/R/F1, confusion matrix, ROC-AUC, calibration and curves.

    ``probs`` is (N, C) with rows summing to 1. ``ece``/``reliability`` use the max probability
    (the model's confidence in its own prediction); ``curves`` holds ROC and PR points for plotting:
    for two classes those of the positive class (``labels[1]``), otherwise one-vs-rest per class.
    """
    from sklearn import metrics as skm

    y_true = np.asarray(y_true)
    probs = np.asarray(probs, dtype=float)
    y_pred = probs.argmax(-1)
    idx = list(range(len(labels)))
    p, r, f, s = skm.precision_recall_fscore_support(y_true, y_pred, labels=idx, zero_division=0)
    out = {
        "n": int(len(y_true)),
        "accuracy": float(skm.accuracy_score(y_true, y_pred)),
        "macro_f1": float(skm.f1_score(y_true, y_pred, labels=idx, average="macro", zero_division=0)),
        "per_class": {lab: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
                      for i, lab in enumerate(labels)},
        "confusion_matrix": skm.confusion_matrix(y_true, y_pred, labels=idx).tolist(),
        "labels": labels,
    }
    # a gold label the model does not know (-1) counts as an error above, but has no score column
    known = (y_true >= 0) & (y_true < len(labels))
    yk, pk = y_true[known], probs[known]
    if len(set(yk.tolist())) > 1:
        if len(labels) == 2:
            out["roc_auc"] = float(skm.roc_auc_score(yk, pk[:, 1]))
        else:
            out["roc_auc"] = float(skm.roc_auc_score(yk, pk, multi_class="ovr", labels=idx))
    conf = probs.max(-1)
    out["reliability"] = reliability(conf, y_pred == y_true)
    out["ece"] = expected_calibration_error(conf, y_pred == y_true)
    out["curves"] = classification_curves(yk, pk, labels)
    return out


def reliability(confidence: np.ndarray, correct: np.ndarray, n_bins: int = ECE_BINS) -> dict:
    """Per-bin mean confidence, accuracy and count over equal-width bins of [0, 1].

    Bins are right-closed, (lo, hi], as in Guo et al. 2017; the first also takes 0. Empty bins have
    ``None`` confidence/accuracy so a plot can skip them.
    """
    confidence = np.asarray(confidence, dtype=float)
    correct = np.asarray(correct, dtype=float)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    b = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, n_bins - 1)
    count = np.bincount(b, minlength=n_bins)
    conf_sum = np.bincount(b, weights=confidence, minlength=n_bins)
    acc_sum = np.bincount(b, weights=correct, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        conf_mean, acc_mean = conf_sum / count, acc_sum / count
    return {
        "bin_edges": edges.tolist(),
        "confidence": [None if c == 0 else float(v) for c, v in zip(count, conf_mean)],
        "accuracy": [None if c == 0 else float(v) for c, v in zip(count, acc_mean)],
        "count": count.astype(int).tolist(),
    }


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, n_bins: int = ECE_BINS) -> float:
    """ECE = sum over bins of (bin share) * |accuracy - mean confidence|."""
    rel = reliability(confidence, correct, n_bins)
    n = max(sum(rel["count"]), 1)
    return float(sum(c / n * abs(a - p) for c, a, p in zip(rel["count"], rel["accuracy"], rel["confidence"]) if c))


def _downsample(*arrays: np.ndarray, max_points: int = MAX_CURVE_POINTS) -> list[list[float]]:
    """Keep at most ``max_points`` evenly spaced points, always the first and the last."""
    n = len(arrays[0])
    keep = np.unique(np.linspace(0, n - 1, max_points).round().astype(int)) if n > max_points else np.arange(n)
    return [np.asarray(a)[keep].astype(float).tolist() for a in arrays]


def classification_curves(y_true: np.ndarray, probs: np.ndarray, labels: list[str],
                          max_points: int = MAX_CURVE_POINTS) -> dict:
    """ROC and PR curve points per class (binary: the positive class only), down-sampled for plots.

    A class with no positive or no negative example has no curve (it is undefined), so it is left out.
    """
    from sklearn import metrics as skm

    y_true, probs = np.asarray(y_true), np.asarray(probs, dtype=float)
    classes = [1] if len(labels) == 2 else range(len(labels))
    roc, pr = {}, {}
    for c in classes:
        pos = y_true == c
        if pos.all() or not pos.any():
            continue
        fpr, tpr, _ = skm.roc_curve(pos, probs[:, c])
        prec, rec, _ = skm.precision_recall_curve(pos, probs[:, c])
        fpr, tpr = _downsample(fpr, tpr, max_points=max_points)
        prec, rec = _downsample(prec, rec, max_points=max_points)
        roc[labels[c]] = {"fpr": fpr, "tpr": tpr}
        pr[labels[c]] = {"precision": prec, "recall": rec,
                         "average_precision": float(skm.average_precision_score(pos, probs[:, c]))}
    return {"roc": roc, "pr": pr}


def roc_curve(y_true: list[int], scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from sklearn import metrics as skm

    fpr, tpr, _ = skm.roc_curve(y_true, scores)
    return fpr, tpr


def perplexity(mean_nll: float) -> float:
    return math.exp(min(mean_nll, 50.0))


# ----------------------------------------------------------------------------- multi-label


def prf(tp: np.ndarray, n_pred: np.ndarray, n_true: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision, recall, F1 with 0 where undefined (scikit-learn's ``zero_division=0``)."""
    tp, n_pred, n_true = (np.asarray(a, dtype=float) for a in (tp, n_pred, n_true))
    p = np.divide(tp, n_pred, out=np.zeros_like(tp), where=n_pred > 0)
    r = np.divide(tp, n_true, out=np.zeros_like(tp), where=n_true > 0)
    f = np.divide(2 * tp, n_pred + n_true, out=np.zeros_like(tp), where=(n_pred + n_true) > 0)
    return p, r, f


def _check_multilabel(y_true: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from ..errors import InputError

    y_true, probs = np.asarray(y_true), np.asarray(probs, dtype=float)
    if y_true.ndim != 2 or y_true.shape != probs.shape:
        raise InputError(f"multi-label metrics need y_true and probs of the same (N, L) shape, got "
                         f"{y_true.shape} and {probs.shape}", "pass one 0/1 column and one score column per label")
    if not np.isin(y_true, (0, 1)).all():
        raise InputError("multi-label y_true must hold only 0 and 1", "encode each example's labels as a 0/1 row")
    return y_true.astype(bool), probs


def binary_auc(y: np.ndarray, scores: np.ndarray) -> float | None:
    """ROC-AUC as the Mann-Whitney U statistic (ties count half); None if one class is absent."""
    y = np.asarray(y, dtype=bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    _, inv, counts = np.unique(np.asarray(scores, dtype=float), return_inverse=True, return_counts=True)
    ranks = (np.cumsum(counts) - (counts - 1) / 2)[inv.reshape(-1)]  # 1-based ranks, ties averaged
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def multilabel_metrics(y_true: np.ndarray, probs: np.ndarray, labels: list[str],
                       thresholds: np.ndarray | float = 0.5) -> dict:
    """Micro/macro/samples F1, subset accuracy, Hamming loss, per-label P/R/F1 and macro ROC-AUC.

    A label is predicted when ``probs >= threshold`` (one threshold, or one per label from
    ``tune_thresholds``). ``samples_f1`` gives an example with no gold and no predicted label 0, as
    scikit-learn's ``zero_division=0`` does. ``roc_auc`` averages only labels where it is defined
    (both classes present); ``roc_auc_labels`` says how many that was.
    """
    y, probs = _check_multilabel(y_true, probs)
    th = np.broadcast_to(np.asarray(thresholds, dtype=float), (probs.shape[1],))
    pred = probs >= th
    tp = (y & pred).sum(0)
    n_pred, n_true = pred.sum(0), y.sum(0)
    p, r, f = prf(tp, n_pred, n_true)
    _, _, micro = prf(tp.sum(), n_pred.sum(), n_true.sum())
    _, _, sample_f = prf((y & pred).sum(1), pred.sum(1), y.sum(1))
    aucs = [binary_auc(y[:, j], probs[:, j]) for j in range(y.shape[1])]
    defined = [a for a in aucs if a is not None]
    out = {
        "n": int(y.shape[0]),
        "micro_f1": float(micro),
        "macro_f1": float(f.mean()) if len(f) else 0.0,
        "samples_f1": float(sample_f.mean()) if len(sample_f) else 0.0,
        "accuracy": float((pred == y).all(1).mean()) if len(y) else 0.0,
        "hamming_loss": float((pred != y).mean()) if y.size else 0.0,
        "per_label": {lab: {"precision": float(p[j]), "recall": float(r[j]), "f1": float(f[j]),
                            "support": int(n_true[j]), "threshold": float(th[j]),
                            **({"roc_auc": aucs[j]} if aucs[j] is not None else {})}
                      for j, lab in enumerate(labels)},
        "labels": labels,
        "roc_auc_labels": len(defined),
    }
    if defined:
        out["roc_auc"] = float(np.mean(defined))
    return out


def tune_thresholds(y_true: np.ndarray, probs: np.ndarray, grid: np.ndarray | None = None) -> np.ndarray:
    """Per-label threshold from ``grid`` that maximises that label's F1 (ties: the one closest to 0.5).

    Tune on validation data, then pass the result to ``multilabel_metrics`` on the test split.
    """
    y, probs = _check_multilabel(y_true, probs)
    grid = np.linspace(0.05, 0.95, 19) if grid is None else np.asarray(grid, dtype=float)
    pred = probs[None, :, :] >= grid[:, None, None]  # (G, N, L)
    tp = (pred & y[None]).sum(1)
    _, _, f = prf(tp, pred.sum(1), np.broadcast_to(y.sum(0), tp.shape))  # (G, L)
    best = f.max(0, keepdims=True)
    # among grid points within float noise of the best F1, the one nearest 0.5
    dist = np.where(np.isclose(f, best, rtol=0, atol=1e-12), np.abs(grid - 0.5)[:, None], np.inf)
    return grid[dist.argmin(0)]
