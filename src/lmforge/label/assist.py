"""Model-assisted labeling: store a model's pre-labels in a project, and pick what to label next.

The model is any predictor ``texts -> [prediction]`` in the task layer's output (classification:
``label``, ``score``, ``scores``; NER: ``entities`` with character offsets), so this module never
imports tasks/; the CLI builds the predictor from a model directory.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from ..errors import InputError
from .active import select
from .project import Project

Predictor = Callable[[list[str]], list[dict]]


def _value(kind: str, pred: dict, labels: list[str], where: str) -> tuple[object, float | None]:
    """The project value a prediction stands for, and its confidence."""
    if kind == "ner":
        if "entities" not in pred:
            raise InputError(f"{where}: the model gives no entity spans", "use an NER model for an NER project")
        ents = pred["entities"]
        spans = [{"start": e["start"], "end": e["end"], "label": e["type"]} for e in ents]
        conf = float(np.mean([e.get("score", 1.0) for e in ents])) if ents else None
        return spans, conf
    if "label" not in pred and "labels" not in pred:
        raise InputError(f"{where}: the model gives no class label", "use a classification model for this project")
    if kind == "multilabel":
        scores = pred.get("scores") or {}
        chosen = pred.get("labels", pred["label"])
        chosen = chosen if isinstance(chosen, list) else [chosen]
        return chosen, float(np.mean([scores.get(c, pred.get("score", 1.0)) for c in chosen])) if chosen else None
    return pred["label"], pred.get("score")


def _probs(preds: list[dict], labels: list[str], where: str) -> np.ndarray:
    """Class probabilities in the project's label order (what the uncertainty strategies rank)."""
    missing = sorted({k for p in preds for k in (p.get("scores") or {})} - set(labels))
    if missing:
        raise InputError(f"{where}: the model predicts labels the project lacks: {missing}",
                         "add them to the project (lmforge label import with those labels) or use another model")
    rows = []
    for p in preds:
        s = p.get("scores")
        if not s:
            raise InputError(f"{where}: the model gives no per-label scores", "active selection needs a classifier")
        rows.append([float(s.get(lab, 0.0)) for lab in labels])
    return np.asarray(rows)


def suggest(project: Project, predict: Predictor, model_name: str, only_unlabeled: bool = True,
            batch_size: int = 256) -> dict:
    """Pre-label the project's examples with ``predict``; returns counts."""
    kind, labels = project.kind, project.labels
    labeled = set(project.current()) if only_unlabeled else set()
    todo = [ex for ex in project.examples() if ex["id"] not in labeled]
    stored = 0
    for i in range(0, len(todo), batch_size):
        chunk = todo[i:i + batch_size]
        preds = predict([ex["text"] for ex in chunk])
        rows = []
        for ex, pred in zip(chunk, preds, strict=True):
            value, score = _value(kind, pred, labels, f"{model_name} on {ex['id']}")
            rows.append({"id": ex["id"], "value": value, "score": score})
        if kind != "ner":  # a model may know labels the project has not seen yet: add them first
            project.add_labels([lab for r in rows for lab in (r["value"] if isinstance(r["value"], list) else [r["value"]])],
                               who=model_name)
        stored += project.set_predictions(rows, model=model_name)
    return {"examples": len(todo), "predictions": stored, "model": model_name}


def next_batch(project: Project, predict: Predictor, k: int, strategy: str, seed: int = 0,
               embed: Callable[[list[str]], object] | None = None) -> list[dict]:
    """The ``k`` unlabeled examples to label next under ``strategy`` (best first), with the model's
    prediction and the probabilities the choice was made on."""
    if project.kind == "ner":
        raise InputError("active selection is for classification projects", "use lmforge label suggest for NER")
    labeled = set(project.current())
    pool = [ex for ex in project.examples() if ex["id"] not in labeled]
    if not pool:
        return []
    texts = [ex["text"] for ex in pool]
    preds = predict(texts)  # random too: the page shows the model's pre-label beside each pick
    probs = _probs(preds, project.labels, "lmforge label next")
    emb = None
    if strategy == "diversity":
        if embed is None:
            from sklearn.feature_extraction.text import TfidfVectorizer

            emb = TfidfVectorizer(sublinear_tf=True, min_df=1).fit_transform(texts)
        else:
            emb = embed(texts)
    order = select(probs, k, strategy, embeddings=emb, seed=seed)
    return [{"id": pool[i]["id"], "text": pool[i]["text"], "prediction": preds[i],
             "rank": r + 1} for r, i in enumerate(order.tolist())]
