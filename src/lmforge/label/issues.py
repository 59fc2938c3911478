"""Label-error detection with confident learning (cleanlab).

Every example needs a predicted probability from a model that never saw it: K-fold
cross-validation gives each example the probabilities of the model trained on the other folds.
cleanlab's ``find_label_issues`` (Northcutt et al. 2021) estimates the joint of given and true
labels from those out-of-fold probabilities and flags the examples the noise rates say are
mislabeled; they are ranked by a label-quality score (``self_confidence``: the out-of-fold
probability of the given label; or ``normalized_margin``), lowest first.

Models:
- default: the TF-IDF + logistic-regression baseline of ``eval/baselines.py`` (``tfidf_lr``, with
  its own C search inside each training fold), fit K times; a few seconds per 10,000 examples.
- ``recipe``: a classification recipe's finetune section, through ``lmforge cv``
  (``tune.cv.cross_validate``): each fold's model is fine-tuned on the other folds and its held-out
  predictions (``evaluate/<variant>/predictions.jsonl``, with a probability per label) are the
  out-of-fold probabilities. The data file replaces ``finetune.data.train``; the recipe's text,
  label and id fields apply.

Rows written: ``{"id", "given_label", "suggested_label", "score", "rank", "is_issue", "text"}``,
most suspicious first; ``score`` is the label-quality score (0..1, lower = more likely wrong),
``suggested_label`` the out-of-fold argmax.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal, Sequence

import numpy as np

from ..errors import ConfigError, InputError

RankBy = Literal["self_confidence", "normalized_margin", "confidence_weighted_entropy"]


def read_labeled(path: str | Path, text_field: str = "text", label_field: str = "label",
                 id_field: str = "id") -> tuple[list[str], list[str], list[str]]:
    """(ids, texts, labels) of a jsonl/csv/tsv file (ids as the classification task gives them:
    the record's id, else ``<file name>:<line>``)."""
    from ..data.readers import read_records

    ids, texts, labels = [], [], []
    for line, rec in read_records(str(path)):
        if text_field not in rec or label_field not in rec:
            missing = text_field if text_field not in rec else label_field
            raise InputError(f"{path}:{line}: no field '{missing}' (fields: {', '.join(map(str, rec))})",
                             "set --text-field / --label-field")
        rid = rec.get(id_field)
        ids.append(str(rid) if rid is not None else f"{Path(path).name}:{line}")
        texts.append(str(rec[text_field]))
        labels.append(str(rec[label_field]).strip())
    if not texts:
        raise InputError(f"{path}: no examples", "pass a file with text and label fields")
    return ids, texts, labels


def out_of_fold_probs(texts: Sequence[str], labels: Sequence[str], folds: int = 5, seed: int = 0,
                      names: list[str] | None = None) -> tuple[np.ndarray, list[str]]:
    """(n, K) probabilities of each example from the TF-IDF + LR baseline fit on the other
    ``folds - 1`` stratified folds, and the label order."""
    from sklearn.model_selection import StratifiedKFold

    from ..eval.baselines import _label_list, detect_lang, tfidf_lr

    names = names or _label_list(list(labels), False)
    index = {y: i for i, y in enumerate(names)}
    y = np.array([index[str(v)] for v in labels])
    counts = np.bincount(y, minlength=len(names))
    if len(names) < 2:
        raise InputError("label issues need at least two labels", "pass a labeled classification file")
    if folds < 2 or counts.min() < folds:
        rare = names[int(counts.argmin())]
        raise ConfigError(f"--folds {folds}: label '{rare}' has {int(counts.min())} examples",
                          f"use 2 <= folds <= {max(int(counts.min()), 2)}")
    texts = list(texts)
    lang = detect_lang(texts)
    probs = np.zeros((len(texts), len(names)))
    for train, held in StratifiedKFold(folds, shuffle=True, random_state=seed).split(np.zeros(len(y)), y):
        r = tfidf_lr([texts[i] for i in train], [names[y[i]] for i in train], [texts[i] for i in held],
                     [names[y[i]] for i in held], lang=lang, labels=names, seed=seed, return_probs=True)
        probs[held] = r["probs"]
    return probs, names


def recipe_out_of_fold_probs(recipe: str | Path, data: str | Path, folds: int = 5, seed: int = 0,
                             run_dir: str | Path | None = None, overrides: Sequence[str] = (),
                             progress: bool = False) -> tuple[list[str], list[str], np.ndarray, list[str]]:
    """(ids, given labels, (n, K) out-of-fold probabilities, label order) from ``lmforge cv`` of
    a classification recipe with ``data`` as its training file."""
    from ..tune.cv import cross_validate

    extra = [f"finetune.data.train={Path(data)}", "evaluate.baselines=false", "evaluate.bootstrap=0",
             "evaluate.data=null"]
    result = cross_validate(recipe, folds, run_dir=run_dir, seed=seed, overrides=[*overrides, *extra],
                            progress=progress)
    ids, given, scores = [], [], []
    for d in result["fold_dirs"]:
        variants = sorted(p.parent for p in (Path(d) / "evaluate").glob("*/predictions.jsonl"))
        if not variants:
            raise InputError(f"{d}: no predictions from the evaluate stage", "check the recipe's finetune section")
        chosen = next((v for v in variants if v.name == "pretrained"), variants[0])
        for line in (chosen / "predictions.jsonl").read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            if not isinstance(row.get("scores"), dict) or isinstance(row.get("reference"), list):
                raise ConfigError(f"{recipe}: label issues need a single-label classification recipe",
                                  "use a finetune.task of kind classification without multi_label")
            ids.append(str(row["id"]))
            given.append(str(row["reference"]))
            scores.append(row["scores"])
    names = list(scores[0])
    probs = np.array([[s[n] for n in names] for s in scores], dtype=float)
    probs /= probs.sum(1, keepdims=True)  # rounded to 5 digits when written
    return ids, given, probs, names


def rank_issues(labels: Sequence[str], probs: np.ndarray, names: list[str], rank_by: RankBy = "self_confidence",
                filter_by: str = "prune_by_noise_rate") -> dict:
    """cleanlab on out-of-fold probabilities: ``order`` (all rows, most suspicious first),
    ``quality`` (per row), ``is_issue`` (flagged by confident learning), ``suggested`` (argmax)."""
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    index = {y: i for i, y in enumerate(names)}
    unknown = sorted({str(v) for v in labels} - set(index))
    if unknown:
        raise InputError(f"given labels {unknown} have no probability column", f"labels known: {names}")
    y = np.array([index[str(v)] for v in labels])
    probs = np.asarray(probs, dtype=float)
    is_issue = find_label_issues(y, probs, filter_by=filter_by, n_jobs=1)
    quality = get_label_quality_scores(y, probs, method=rank_by)
    order = np.lexsort((np.arange(len(y)), quality))  # ascending quality; ties in file order
    return {"order": order, "quality": quality, "is_issue": is_issue, "suggested": probs.argmax(1), "y": y}


def find_issues(data: str | Path, folds: int = 5, recipe: str | Path | None = None, text_field: str = "text",
                label_field: str = "label", id_field: str = "id", seed: int = 0, rank_by: RankBy = "self_confidence",
                all_rows: bool = False, run_dir: str | Path | None = None, overrides: Sequence[str] = (),
                progress: bool = False) -> list[dict]:
    """Likely label errors of a labeled file, most suspicious first (only those confident learning
    flags, unless ``all_rows``: then every row, ranked)."""
    if recipe is not None:
        ids, given, probs, names = recipe_out_of_fold_probs(recipe, data, folds, seed, run_dir, overrides, progress)
        text_of = {}
        try:
            i2, t2, _ = read_labeled(data, text_field, label_field, id_field)
            text_of = dict(zip(i2, t2))
        except InputError:  # the recipe names other fields: rows go without their text
            pass
        texts = [text_of.get(i) for i in ids]
    else:
        ids, texts, given = read_labeled(data, text_field, label_field, id_field)
        probs, names = out_of_fold_probs(texts, given, folds, seed)
    r = rank_issues(given, probs, names, rank_by)
    rows = []
    for rank, i in enumerate(r["order"], 1):
        if not all_rows and not r["is_issue"][i]:
            continue
        row = {"id": ids[i], "given_label": given[i], "suggested_label": names[int(r["suggested"][i])],
               "score": round(float(r["quality"][i]), 6), "rank": rank, "is_issue": bool(r["is_issue"][i])}
        if texts[i] is not None:
            row["text"] = texts[i]
        rows.append(row)
    return rows


def precision_recall_at_k(ranked_ids: Sequence[str], true_ids: set, k: int) -> tuple[float, float]:
    """Precision and recall of the first ``k`` ranked ids against the truly wrong ones."""
    top = list(ranked_ids)[:k]
    hits = sum(1 for i in top if i in true_ids)
    return hits / max(len(top), 1), hits / max(len(true_ids), 1)


def flip_labels(labels: Sequence[str], rate: float, seed: int = 0) -> tuple[list[str], np.ndarray]:
    """A copy of ``labels`` with ``round(rate * n)`` of them changed to another label chosen
    uniformly, and the flipped row indices (for measuring detection)."""
    rng = np.random.default_rng(seed)
    labels = [str(v) for v in labels]
    names = sorted(set(labels))
    n_flip = int(round(rate * len(labels)))
    flipped = np.sort(rng.choice(len(labels), n_flip, replace=False))
    out = list(labels)
    for i in flipped:
        out[i] = str(rng.choice([y for y in names if y != labels[i]]))
    return out, flipped
