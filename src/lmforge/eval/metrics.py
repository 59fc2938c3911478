"""Evaluation metrics, computed with scikit-learn so they match what users already trust."""

from __future__ import annotations

import math

import numpy as np
from sklearn import metrics as skm


def classification_metrics(y_true: list[int], probs: np.ndarray, labels: list[str]) -> dict:
    """Accuracy, macro-F1, per-class precision/recall/F1, confusion matrix and ROC-AUC."""
    y_true = np.asarray(y_true)
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
    if len(set(y_true.tolist())) > 1:
        if len(labels) == 2:
            out["roc_auc"] = float(skm.roc_auc_score(y_true, probs[:, 1]))
        else:
            out["roc_auc"] = float(skm.roc_auc_score(y_true, probs, multi_class="ovr", labels=idx))
    return out


def roc_curve(y_true: list[int], scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    fpr, tpr, _ = skm.roc_curve(y_true, scores)
    return fpr, tpr


def perplexity(mean_nll: float) -> float:
    return math.exp(min(mean_nll, 50.0))
