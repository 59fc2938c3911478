import numpy as np
import pytest

from lmforge.eval.metrics import classification_metrics, perplexity


def test_classification_metrics_by_hand():
    y = [0, 0, 1, 1, 1]
    probs = np.array([[0.9, 0.1], [0.4, 0.6], [0.2, 0.8], [0.3, 0.7], [0.6, 0.4]])
    m = classification_metrics(y, probs, ["neg", "pos"])
    assert m["accuracy"] == pytest.approx(3 / 5)
    assert m["confusion_matrix"] == [[1, 1], [1, 2]]
    # neg: P=1/2 R=1/2 F=1/2; pos: P=2/3 R=2/3 F=2/3
    assert m["macro_f1"] == pytest.approx((0.5 + 2 / 3) / 2)
    assert m["per_class"]["pos"]["support"] == 3
    # AUC: pairs (neg, pos) with pos score higher: scores neg [0.1, 0.6], pos [0.8, 0.7, 0.4]
    assert m["roc_auc"] == pytest.approx(5 / 6)  # 5 of the 6 pairs ranked right


def test_multiclass_auc_and_missing_class():
    y = [0, 1, 2, 2]
    probs = np.eye(3)[[0, 1, 2, 1]] * 0.8 + 0.2 / 3
    m = classification_metrics(y, probs, ["a", "b", "c"])
    assert m["accuracy"] == pytest.approx(0.75)
    assert 0 <= m["roc_auc"] <= 1
    single = classification_metrics([1, 1], np.array([[0.2, 0.8], [0.6, 0.4]]), ["a", "b"])
    assert "roc_auc" not in single  # undefined with one class present


def test_perplexity():
    assert perplexity(0.0) == 1.0
    assert perplexity(np.log(10)) == pytest.approx(10)
