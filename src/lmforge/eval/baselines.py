"""Honest baselines for every comparison: TF-IDF + logistic regression, a fastText-style linear
model, and n-gram perplexity.

A fine-tuned Transformer that does not beat a bag of n-grams is worth knowing about, so the
evaluate stage runs these on the same train/test examples and the report prints them beside the
model. They score through ``eval.metrics`` (the functions the task metrics use), so the numbers are
directly comparable. Every function returns a small JSON-able dict.

    from lmforge.eval.baselines import classification_baselines
    classification_baselines(task, train_examples, test_examples)
    # {"tfidf+lr": {"accuracy": .., "macro_f1": .., "seconds": .., "model": "tfidf+lr", ...},
    #  "fasttext": {...}}

scikit-learn and torch are imported inside the functions: importing this module stays cheap.
"""

from __future__ import annotations

import math
import re
import time
from itertools import groupby
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import InputError

C_GRID = (1.0, 4.0, 16.0)  # inverse regularisation strengths tried by the CV
CV_FOLDS = 3
CV_MAX_EXAMPLES = 8000  # the C search runs on at most this many training examples (the final fit on all)


# ----------------------------------------------------------------------------- shared helpers


def detect_lang(texts: Sequence[str], sample: int = 200) -> str:
    """"zh" when most of a sample of texts hold CJK characters, else "en" (decides the n-grams)."""
    from ..text import is_cjk

    picked = [t for t in texts[:sample] if t]
    if not picked:
        return "en"
    return "zh" if sum(is_cjk(t) for t in picked) > len(picked) / 2 else "en"


def _label_list(train_labels, multi_label: bool) -> list[str]:
    """Label names in the classification task's order (numbers numerically, names alphabetically)."""
    from ..tasks.classification import label_sort_key

    seen = {str(y) for ys in train_labels for y in (ys if multi_label else [ys])}
    return sorted(seen, key=label_sort_key)


def _targets(labels_in, names: list[str], multi_label: bool) -> np.ndarray:
    """Single-label: (N,) indices, -1 for a label never seen in training (it counts as an error, as
    in the task's metrics). Multi-label: (N, L) 0/1 rows; unknown labels are dropped."""
    index = {y: i for i, y in enumerate(names)}
    if not multi_label:
        return np.array([index.get(str(y), -1) for y in labels_in], dtype=int)
    out = np.zeros((len(labels_in), len(names)), dtype=int)
    for i, ys in enumerate(labels_in):
        for y in ys:
            if str(y) in index:
                out[i, index[str(y)]] = 1
    return out


def _scores(y_test: np.ndarray, probs: np.ndarray, names: list[str], multi_label: bool) -> dict:
    """The headline numbers from the same metric functions the classification task uses."""
    from .metrics import classification_metrics, multilabel_metrics

    if multi_label:
        m = multilabel_metrics(y_test, probs, names, 0.5)
        return {"micro_f1": m["micro_f1"], "macro_f1": m["macro_f1"], "accuracy": m["accuracy"]}
    m = classification_metrics(y_test.tolist(), probs, names)
    return {"accuracy": m["accuracy"], "macro_f1": m["macro_f1"]}


def _check(train_texts, train_labels, test_texts, test_labels) -> None:
    if len(train_texts) != len(train_labels) or len(test_texts) != len(test_labels):
        raise InputError(f"baselines: {len(train_texts)} train texts for {len(train_labels)} labels, "
                         f"{len(test_texts)} test texts for {len(test_labels)} labels",
                         "pass one label (or label list) per text")
    if not train_texts or not test_texts:
        raise InputError("baselines: no training or no test examples", "pass both splits")


# ----------------------------------------------------------------------------- TF-IDF + LR


def tfidf_features(lang: str):
    """TfidfVectorizer union: English word 1-2-grams + char_wb 2-5-grams; Chinese char 1-3-grams
    (no word segmentation needed). Sublinear tf, as in the strong linear baselines of Wang & Manning."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.pipeline import FeatureUnion

    if lang == "zh":
        return FeatureUnion([("char", TfidfVectorizer(analyzer="char", ngram_range=(1, 3), sublinear_tf=True,
                                                      min_df=1, lowercase=True))])
    return FeatureUnion([
        ("word", TfidfVectorizer(analyzer="word", ngram_range=(1, 2), sublinear_tf=True, min_df=1, lowercase=True,
                                 token_pattern=r"(?u)\b\w+\b|[^\w\s]")),
        ("char", TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True, min_df=2, lowercase=True)),
    ])


def logistic_regression(n_classes: int, multi_label: bool, C: float = 1.0):
    """liblinear for binary and one-vs-rest multi-label; saga (multinomial) for more classes."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier

    if multi_label:
        return OneVsRestClassifier(LogisticRegression(C=C, solver="liblinear", dual=True, max_iter=1000))
    if n_classes <= 2:
        return LogisticRegression(C=C, solver="liblinear", dual=True, max_iter=1000)
    return LogisticRegression(C=C, solver="saga", max_iter=1000, tol=1e-3)


def _choose_c(X, y, n_classes: int, multi_label: bool, seed: int) -> tuple[float, dict]:
    """C with the best mean CV score (accuracy, or micro-F1 for multi-label) on a training subsample."""
    from sklearn.model_selection import KFold, StratifiedKFold, cross_val_score

    n = X.shape[0]
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.permutation(n)[:CV_MAX_EXAMPLES]) if n > CV_MAX_EXAMPLES else np.arange(n)
    Xs, ys = X[idx], y[idx]
    if multi_label:
        cv, scoring = KFold(CV_FOLDS, shuffle=True, random_state=seed), "f1_micro"
    else:
        smallest = np.bincount(ys[ys >= 0]).min() if (ys >= 0).any() else 0
        if smallest < CV_FOLDS:  # too few examples of some class to stratify: keep the middle C
            return C_GRID[len(C_GRID) // 2], {}
        cv, scoring = StratifiedKFold(CV_FOLDS, shuffle=True, random_state=seed), "accuracy"
    cv_scores = {}
    for C in C_GRID:
        cv_scores[C] = float(np.mean(cross_val_score(logistic_regression(n_classes, multi_label, C), Xs, ys,
                                                     cv=cv, scoring=scoring)))
    best = max(C_GRID, key=lambda c: (cv_scores[c], -abs(math.log(c))))  # ties: the C nearest 1
    return best, cv_scores


def tfidf_lr(train_texts: Sequence[str], train_labels: Sequence, test_texts: Sequence[str], test_labels: Sequence,
             lang: str | None = None, multi_label: bool = False, labels: list[str] | None = None,
             seed: int = 0, return_probs: bool = False) -> dict:
    """TF-IDF n-grams + logistic regression, C chosen by 3-fold CV on the training split.

    ``labels``: the label order (default: the classification task's order of the training labels);
    multi-label labels are lists and predicted at probability >= 0.5 per label.
    """
    _check(train_texts, train_labels, test_texts, test_labels)
    start = time.perf_counter()
    lang = lang or detect_lang(list(train_texts))
    names = labels or _label_list(train_labels, multi_label)
    y_train = _targets(train_labels, names, multi_label)
    y_test = _targets(test_labels, names, multi_label)
    keep = np.ones(len(y_train), dtype=bool) if multi_label else y_train >= 0
    feats = tfidf_features(lang)
    X_train = feats.fit_transform([t for t, k in zip(train_texts, keep) if k])
    y_fit = y_train[keep]
    n_present = y_fit.shape[1] if multi_label else len(np.unique(y_fit))
    if n_present < 2:
        raise InputError("tfidf_lr: the training labels hold fewer than two classes", "pass a labeled training split")
    C, cv_scores = _choose_c(X_train, y_fit, len(names), multi_label, seed)
    clf = logistic_regression(len(names), multi_label, C).fit(X_train, y_fit)
    probs = _full_probs(clf.predict_proba(feats.transform(list(test_texts))), clf, len(names), multi_label)
    out = {"model": "tfidf+lr", **_scores(y_test, probs, names, multi_label), "C": C,
           "cv": {str(c): round(s, 5) for c, s in cv_scores.items()}, "n_features": int(X_train.shape[1]),
           "features": "char 1-3-grams" if lang == "zh" else "word 1-2-grams + char_wb 2-5-grams",
           "lang": lang, "n_train": int(X_train.shape[0]), "n_test": len(test_texts),
           "seconds": round(time.perf_counter() - start, 3)}
    if return_probs:  # (n_test, labels) in ``labels`` order: for paired comparisons with a model
        out["probs"] = probs
    return out


def _full_probs(p: np.ndarray, clf, n_labels: int, multi_label: bool) -> np.ndarray:
    """predict_proba has a column per class the classifier saw; put them at the label indices."""
    if multi_label:
        return np.asarray(p, dtype=float)
    full = np.zeros((p.shape[0], n_labels))
    full[:, clf.classes_] = p
    return full


# ----------------------------------------------------------------------------- fastText-style

_TOKEN = re.compile(r"\w+|[^\w\s]", re.UNICODE)


def ngram_tokens(text: str, lang: str) -> list[str]:
    """Units of the bag: lowercased words and punctuation; Chinese: single characters (Han runs
    split, Latin words kept whole)."""
    from ..text.scripts import is_cjk_char

    toks = []
    for t in _TOKEN.findall(text.lower()):
        if lang == "zh" and any(is_cjk_char(c) for c in t):
            for cjk, run in groupby(t, is_cjk_char):
                toks.extend(run) if cjk else toks.append("".join(run))
        else:
            toks.append(t)
    return toks


def hashed_ngrams(text: str, lang: str, buckets: int, word_ngrams: int = 2) -> list[int]:
    """Bucket ids of the unigrams and up to ``word_ngrams``-grams (fastText's ``-wordNgrams``)."""
    import xxhash

    toks = ngram_tokens(text, lang)
    grams = list(toks)
    for n in range(2, word_ngrams + 1):
        grams += [" ".join(toks[i:i + n]) for i in range(len(toks) - n + 1)]
    return [xxhash.xxh64_intdigest(g.encode()) % buckets for g in grams]


def fasttext_style(train_texts: Sequence[str], train_labels: Sequence, test_texts: Sequence[str],
                   test_labels: Sequence, lang: str | None = None, multi_label: bool = False,
                   labels: list[str] | None = None, dim: int = 50, buckets: int = 1 << 18, word_ngrams: int = 2,
                   epochs: int | None = None, lr: float = 0.25, batch_size: int = 16, seed: int = 0,
                   return_probs: bool = False) -> dict:
    """fastText's supervised model (Joulin et al. 2017): the mean of hashed word and bigram
    embeddings -> one linear layer -> softmax (multi-label: one sigmoid per label), trained with
    SGD whose learning rate decays linearly to zero over ``epochs``; sparse gradients keep an update
    to the touched rows only. The loss is summed over a mini-batch, so ``lr`` is per example as in
    fastText (whose own default of 0.1 assumes one example per update). ``epochs`` defaults to 5
    (fastText's) for 10,000+ examples and more for fewer, up to 25 (what fastText's tutorial
    advises for small sets): at 5 epochs a few hundred examples are not even fitted."""
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    _check(train_texts, train_labels, test_texts, test_labels)
    start = time.perf_counter()
    lang = lang or detect_lang(list(train_texts))
    names = labels or _label_list(train_labels, multi_label)
    y_train = _targets(train_labels, names, multi_label)
    y_test = _targets(test_labels, names, multi_label)
    keep = np.ones(len(y_train), dtype=bool) if multi_label else y_train >= 0
    train_ids = [hashed_ngrams(t, lang, buckets, word_ngrams) for t, k in zip(train_texts, keep) if k]
    y_fit = y_train[keep]
    test_ids = [hashed_ngrams(t, lang, buckets, word_ngrams) for t in test_texts]

    gen = torch.Generator().manual_seed(seed)
    emb = nn.EmbeddingBag(buckets, dim, mode="mean", sparse=True)
    nn.init.uniform_(emb.weight, -1.0 / dim, 1.0 / dim, generator=gen)  # fastText's input init
    out = nn.Linear(dim, len(names))
    nn.init.zeros_(out.weight)  # and its output matrix starts at zero
    nn.init.zeros_(out.bias)
    opt_sparse = torch.optim.SGD(emb.parameters(), lr=lr)
    opt_dense = torch.optim.SGD(out.parameters(), lr=lr)

    def bag(rows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        rows = [r or [0] for r in rows]  # an empty text still needs one bucket (it learns a prior)
        flat = torch.tensor([i for r in rows for i in r], dtype=torch.long)
        offsets = torch.tensor(np.cumsum([0] + [len(r) for r in rows[:-1]]), dtype=torch.long)
        return flat, offsets

    n = len(train_ids)
    epochs = epochs or max(5, min(25, math.ceil(50_000 / max(n, 1))))
    steps = epochs * math.ceil(n / batch_size)
    step = 0
    target = torch.tensor(y_fit, dtype=torch.float32 if multi_label else torch.long)
    for _ in range(epochs):
        order = torch.randperm(n, generator=gen).tolist()
        for b in range(0, n, batch_size):
            idx = order[b:b + batch_size]
            for opt in (opt_sparse, opt_dense):
                for g in opt.param_groups:
                    g["lr"] = lr * (1.0 - step / steps)
            logits = out(emb(*bag([train_ids[i] for i in idx])))
            loss = (F.binary_cross_entropy_with_logits(logits, target[idx], reduction="sum") if multi_label
                    else F.cross_entropy(logits, target[idx], reduction="sum"))
            opt_sparse.zero_grad()
            opt_dense.zero_grad()
            loss.backward()
            opt_sparse.step()
            opt_dense.step()
            step += 1
    with torch.no_grad():
        probs = []
        for b in range(0, len(test_ids), 512):
            logits = out(emb(*bag(test_ids[b:b + 512])))
            probs.append(logits.sigmoid() if multi_label else logits.softmax(-1))
        probs = torch.cat(probs).numpy().astype(float)
    out = {"model": "fasttext", **_scores(y_test, probs, names, multi_label), "dim": dim, "buckets": buckets,
           "word_ngrams": word_ngrams, "epochs": epochs, "lang": lang, "n_train": n, "n_test": len(test_texts),
           "seconds": round(time.perf_counter() - start, 3)}
    if return_probs:
        out["probs"] = probs
    return out


# ----------------------------------------------------------------------------- for the evaluate stage


def classification_baselines(task, train_examples: list[dict], test_examples: list[dict],
                             which: Sequence[str] = ("tfidf+lr", "fasttext"),
                             return_probs: bool = False) -> dict[str, dict]:
    """The baselines of a classification run, on the task's own examples (``text``, ``label``; a
    label list when multi-label) and in the task's label order, keyed by name. ``return_probs`` adds
    each baseline's (n_test, labels) probabilities under ``probs`` (for ``task.decode_probs``)."""
    multi = bool(getattr(task.cfg, "multi_label", False))
    labels = task.state.get("labels") if getattr(task, "state", None) else None
    args = ([e["text"] for e in train_examples], [e["label"] for e in train_examples],
            [e["text"] for e in test_examples], [e["label"] for e in test_examples])
    lang = detect_lang(args[0])
    runners = {"tfidf+lr": tfidf_lr, "fasttext": fasttext_style}
    unknown = [w for w in which if w not in runners]
    if unknown:
        raise InputError(f"unknown baseline(s) {unknown}", f"choose from {sorted(runners)}")
    return {name: runners[name](*args, lang=lang, multi_label=multi, labels=labels, return_probs=return_probs)
            for name in which}


def ngram_perplexity(train_files: Sequence[str | Path], test_file: str | Path, order: int = 5,
                     unit: str = "word", lowercase: bool = False, segmenter: str = "whitespace") -> dict:
    """A Kneser-Ney n-gram LM trained on ``train_files`` and scored on ``test_file`` (one sentence a
    line; jsonl documents split into lines). Perplexities over different tokens are not comparable:
    ``bits_per_byte`` is the number to set beside a neural LM's."""
    from ..models.ngram import NgramConfig, evaluate_file, train

    start = time.perf_counter()
    cfg = NgramConfig(order=order, unit=unit, lowercase=lowercase, segmenter=segmenter)
    lm = train([str(p) for p in train_files], cfg)
    ev = evaluate_file(lm, test_file)
    return {"model": f"{order}-gram {unit} kneser-ney", "perplexity": ev["perplexity"],
            "bits_per_byte": ev["bits_per_byte"], "loss": ev["loss"], "oov_rate": ev["oov_rate"],
            "tokens": ev["tokens"], "order": order, "unit": unit, "seconds": round(time.perf_counter() - start, 3)}
