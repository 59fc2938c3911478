"""Multi-label metrics and threshold tuning against scikit-learn; calibration and curves of
classification_metrics (kept here: test_metrics.py belongs to the original classification tests)."""

import numpy as np
import pytest
from sklearn import metrics as skm

from lmforge.errors import InputError
from lmforge.eval.metrics import (binary_auc, classification_metrics, expected_calibration_error,
                                  multilabel_metrics, reliability, tune_thresholds)


def _trapezoid(y, x) -> float:  # np.trapezoid is numpy>=2 only
    x, y = np.asarray(x), np.asarray(y)
    return float(np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2))


def _random_multilabel(seed: int, n: int = 300, n_labels: int = 6):
    rng = np.random.default_rng(seed)
    y = (rng.random((n, n_labels)) < rng.uniform(0.05, 0.5, n_labels)).astype(int)
    probs = np.clip(0.35 * y + rng.random((n, n_labels)) * 0.7, 0, 1).round(2)  # rounded: ties in AUC
    y[:, -1] = 0  # a label that never occurs: AUC undefined, F1 0 (zero_division=0)
    return y, probs


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_multilabel_matches_sklearn(seed):
    y, probs = _random_multilabel(seed)
    labels = [f"l{j}" for j in range(y.shape[1])]
    th = np.array([0.5, 0.3, 0.6, 0.45, 0.5, 0.5])
    m = multilabel_metrics(y, probs, labels, thresholds=th)
    pred = (probs >= th).astype(int)
    assert m["micro_f1"] == pytest.approx(skm.f1_score(y, pred, average="micro", zero_division=0))
    assert m["macro_f1"] == pytest.approx(skm.f1_score(y, pred, average="macro", zero_division=0))
    assert m["samples_f1"] == pytest.approx(skm.f1_score(y, pred, average="samples", zero_division=0))
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))  # subset accuracy
    assert m["hamming_loss"] == pytest.approx(skm.hamming_loss(y, pred))
    p, r, f, s = skm.precision_recall_fscore_support(y, pred, zero_division=0)
    for j, lab in enumerate(labels):
        got = m["per_label"][lab]
        assert (got["precision"], got["recall"], got["f1"], got["support"]) == pytest.approx((p[j], r[j], f[j], s[j]))
    defined = [j for j in range(y.shape[1]) if 0 < y[:, j].sum() < len(y)]
    assert m["roc_auc_labels"] == len(defined) == y.shape[1] - 1
    assert m["roc_auc"] == pytest.approx(skm.roc_auc_score(y[:, defined], probs[:, defined], average="macro"))


def test_scalar_threshold_and_empty_rows():
    y = np.array([[1, 0], [0, 0], [0, 1]])
    probs = np.array([[0.9, 0.2], [0.1, 0.1], [0.6, 0.4]])
    m = multilabel_metrics(y, probs, ["a", "b"], thresholds=0.5)
    # row 0 exact, row 1 exact (nothing gold, nothing predicted), row 2 wrong on both labels
    assert m["accuracy"] == pytest.approx(2 / 3)
    assert m["hamming_loss"] == pytest.approx(2 / 6)
    assert m["samples_f1"] == pytest.approx(1 / 3)  # the empty row scores 0, like sklearn zero_division=0
    assert binary_auc([0, 1, 1], [0.5, 0.5, 0.9]) == pytest.approx(0.75)
    assert binary_auc([1, 1], [0.1, 0.2]) is None


def test_multilabel_bad_input():
    with pytest.raises(InputError, match="shape"):
        multilabel_metrics(np.zeros((3, 2)), np.zeros((3, 3)), ["a", "b"])
    with pytest.raises(InputError, match="0 and 1"):
        multilabel_metrics(np.full((2, 2), 2), np.zeros((2, 2)), ["a", "b"])


def test_tune_thresholds_brute_force():
    y, probs = _random_multilabel(3, n=200)
    grid = np.linspace(0.05, 0.95, 19)
    th = tune_thresholds(y, probs, grid)
    for j in range(y.shape[1]):
        f = np.array([skm.f1_score(y[:, j], probs[:, j] >= t, zero_division=0) for t in grid])
        best = np.flatnonzero(np.isclose(f, f.max(), atol=1e-12))
        assert th[j] == pytest.approx(grid[best[np.argmin(np.abs(grid[best] - 0.5))]])
    # the never-occurring label has F1 0 everywhere: the tie goes to 0.5
    assert th[-1] == pytest.approx(0.5)
    tuned = multilabel_metrics(y, probs, list("abcdef"), thresholds=th)["macro_f1"]
    assert tuned >= multilabel_metrics(y, probs, list("abcdef"))["macro_f1"]


def test_tune_thresholds_tie_goes_to_half():
    # separable: any threshold in (0.2, 0.8] gives F1 = 1; 0.5 is the closest to 0.5
    y = np.array([[0], [1]])
    probs = np.array([[0.2], [0.8]])
    assert tune_thresholds(y, probs)[0] == pytest.approx(0.5)
    # only thresholds <= 0.3 catch the positive: the best is the largest of them, 0.3
    assert tune_thresholds(np.array([[0], [1]]), np.array([[0.1], [0.32]]))[0] == pytest.approx(0.3)


def test_ece_and_reliability_by_hand():
    conf = np.array([0.95, 0.95, 0.55, 0.55, 1.0, 0.0])
    correct = np.array([1, 0, 1, 1, 1, 0])
    rel = reliability(conf, correct, n_bins=10)
    assert rel["count"] == [1, 0, 0, 0, 0, 2, 0, 0, 0, 3]
    assert rel["confidence"][9] == pytest.approx((0.95 + 0.95 + 1.0) / 3)
    assert rel["accuracy"][9] == pytest.approx(2 / 3) and rel["accuracy"][1] is None
    want = (3 / 6) * abs(2 / 3 - 2.9 / 3) + (2 / 6) * abs(1 - 0.55) + (1 / 6) * 0.0
    assert expected_calibration_error(conf, correct, n_bins=10) == pytest.approx(want)
    # a bin edge belongs to the bin below: right-closed (lo, hi]
    assert reliability(np.array([0.2]), np.array([1]), n_bins=10)["count"][1] == 1


def test_classification_calibration_and_curves():
    rng = np.random.default_rng(0)
    n = 2000
    y = rng.integers(0, 3, n)
    logits = rng.normal(size=(n, 3)) + 2.0 * np.eye(3)[y]
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    m = classification_metrics(y.tolist(), probs, ["a", "b", "c"])
    assert sum(m["reliability"]["count"]) == n and len(m["reliability"]["count"]) == 15
    correct = probs.argmax(1) == y
    assert m["ece"] == pytest.approx(expected_calibration_error(probs.max(1), correct, 15))
    assert 0 <= m["ece"] < 0.5
    assert set(m["curves"]["roc"]) == {"a", "b", "c"}
    for lab, c in zip("abc", range(3)):
        roc = m["curves"]["roc"][lab]
        assert 2 <= len(roc["fpr"]) <= 200 and roc["fpr"][0] == 0 and roc["tpr"][-1] == 1
        assert np.all(np.diff(roc["fpr"]) >= 0)
        # the down-sampled curve still integrates to about the one-vs-rest AUC
        assert _trapezoid(roc["tpr"], roc["fpr"]) == pytest.approx(skm.roc_auc_score(y == c, probs[:, c]), abs=0.01)
        pr = m["curves"]["pr"][lab]
        assert len(pr["precision"]) <= 200 and pr["average_precision"] == pytest.approx(
            skm.average_precision_score(y == c, probs[:, c]))
    binary = classification_metrics([0, 1, 1, 0], np.array([[0.8, 0.2], [0.3, 0.7], [0.6, 0.4], [0.4, 0.6]]),
                                    ["neg", "pos"])
    assert list(binary["curves"]["roc"]) == ["pos"]  # binary: the positive class only


def test_unknown_gold_label_counts_as_error_but_keeps_auc():
    probs = np.array([[0.7, 0.3], [0.2, 0.8], [0.4, 0.6], [0.5, 0.5]])
    m = classification_metrics([0, 1, 0, -1], probs, ["a", "b"])  # -1: a label the model never saw
    assert m["accuracy"] == pytest.approx(2 / 4)
    assert m["roc_auc"] == pytest.approx(skm.roc_auc_score([0, 1, 0], probs[:3, 1]))
    assert sum(m["reliability"]["count"]) == 4 and list(m["curves"]["roc"]) == ["b"]
