"""Active learning: which unlabeled examples to label next, and a simulation that measures it.

Strategies score a (n, K) probability matrix from the current model:

- ``entropy``: highest -sum p log p;
- ``margin``: smallest gap between the two most probable classes;
- ``least_confident``: lowest top probability;
- ``random``: uniform, the baseline every strategy must beat;
- ``diversity``: uncertainty and coverage together: the ``pool_factor * k`` most uncertain rows
  (by margin) are the candidates; k-means weighted by uncertainty splits them into k clusters and
  the row nearest each center is taken (Zhdanov 2019), so one batch is not k near-copies of the
  same confusing phrase. ``diversity="kcenter"`` uses k-center greedy instead (farthest-first
  over cosine distances, away from what is already labeled; Sener & Savarese 2018).

For two classes entropy, margin and least-confident order the rows identically (all are monotone
in |p - 0.5|); they differ from three classes on.

``simulate`` replays labeling on a labeled set: a random seed set is "labeled", each round the model
is refit on what is labeled, scored on a fixed test set, and ``step`` more rows are revealed by the
strategy. The default model is the TF-IDF + logistic-regression baseline of ``eval/baselines.py``
(its features, classifier and C search), with the TF-IDF vocabulary fit once on the unlabeled pool
texts (unsupervised, so fair) and the classifier refit on the labeled rows each round.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Callable, Sequence

import numpy as np

from ..errors import InputError

STRATEGIES = ("entropy", "margin", "least_confident", "random", "diversity")

# (train_texts, train_labels, labels) -> predict(texts) -> (n, len(labels)) probabilities
ModelFactory = Callable[[list[str], list[str], list[str]], Callable[[list[str]], np.ndarray]]


# ----------------------------------------------------------------------------- uncertainty scores


def uncertainty(probs, strategy: str) -> np.ndarray:
    """(n,) scores, higher = more worth labeling."""
    p = np.asarray(probs, dtype=float)
    if p.ndim != 2 or p.shape[1] < 2:
        raise InputError(f"probabilities must be (examples, classes>=2), got shape {p.shape}",
                         "pass the model's predict_proba output")
    if strategy == "entropy":
        return -(p * np.log(np.clip(p, 1e-12, 1.0))).sum(1)
    if strategy == "margin":
        top2 = np.sort(p, axis=1)[:, -2:]
        return -(top2[:, 1] - top2[:, 0])
    if strategy == "least_confident":
        return 1.0 - p.max(1)
    raise InputError(f"'{strategy}' is not an uncertainty strategy", "use entropy, margin or least_confident")


def _normalize_rows(X):
    from sklearn.preprocessing import normalize

    return normalize(X, norm="l2", axis=1)


def _sims(X, x):
    """Cosine similarities of the rows of (normalized) X to the normalized row(s) x -> (n,) or (n, r)."""
    s = X @ x.T
    s = s.toarray() if hasattr(s, "toarray") else np.asarray(s)
    return s


def k_center_greedy(X, k: int, centers=None, first: int = 0) -> np.ndarray:
    """k row indices of X picked farthest-first by cosine distance, starting from ``centers``
    (rows of an already labeled set, same features) or, without any, from row ``first``."""
    n = X.shape[0]
    k = min(k, n)
    if k <= 0:
        return np.zeros(0, dtype=int)
    Xn = _normalize_rows(X)
    if centers is not None and centers.shape[0] > 0:
        C = _normalize_rows(centers)
        min_d = np.full(n, np.inf)
        for b in range(0, C.shape[0], 512):  # chunks keep an (n, 512) block in memory at most
            min_d = np.minimum(min_d, 1.0 - _sims(Xn, C[b:b + 512]).max(1))
        picked = []
    else:
        picked = [first]
        min_d = 1.0 - _sims(Xn, Xn[first]).ravel()
        min_d[first] = -np.inf
    while len(picked) < k:
        i = int(np.argmax(min_d))
        picked.append(i)
        min_d = np.minimum(min_d, 1.0 - _sims(Xn, Xn[i]).ravel())
        min_d[picked] = -np.inf
    return np.asarray(picked, dtype=int)


def weighted_kmeans_pick(X, k: int, weights: np.ndarray, seed: int = 0) -> np.ndarray:
    """k row indices of X: k-means (weighted by ``weights``) into k clusters, then the row nearest
    each center (Zhdanov 2019, "Diverse mini-batch active learning")."""
    from sklearn.cluster import KMeans

    n = X.shape[0]
    k = min(k, n)
    if k <= 0:
        return np.zeros(0, dtype=int)
    Xn = _normalize_rows(X)
    km = KMeans(n_clusters=k, n_init=1, random_state=seed, max_iter=100).fit(Xn, sample_weight=weights + 1e-12)
    d = km.transform(Xn)  # (n, k) distances to the centers
    picked: list[int] = []
    taken = np.zeros(n, dtype=bool)
    for c in np.argsort(np.bincount(km.labels_, minlength=k))[::-1]:  # big clusters first
        order = np.argsort(d[:, c])
        i = next(int(j) for j in order if not taken[j])
        picked.append(i)
        taken[i] = True
    return np.asarray(picked, dtype=int)


def select(probs, k: int, strategy: str, embeddings=None, seed: int = 0, labeled_embeddings=None,
           pool_factor: int = 10, diversity: str = "kmeans") -> np.ndarray:
    """Indices (into the rows of ``probs``) of the ``k`` examples to label next, best first.

    ``embeddings``: (n, d) dense or sparse features of the same rows (needed by ``diversity``);
    ``diversity``: ``kmeans`` (uncertainty-weighted k-means over the ``pool_factor * k`` most
    uncertain rows, the row nearest each center) or ``kcenter`` (k-center greedy over them, kept
    away from ``labeled_embeddings``, the features of what is already labeled)."""
    if strategy not in STRATEGIES:
        raise InputError(f"unknown strategy '{strategy}'", f"choose from {', '.join(STRATEGIES)}")
    p = np.asarray(probs, dtype=float)
    n = p.shape[0]
    k = min(int(k), n)
    if k <= 0:
        return np.zeros(0, dtype=int)
    rng = np.random.default_rng(seed)
    if strategy == "random":
        return rng.permutation(n)[:k]
    if strategy != "diversity":
        s = uncertainty(p, strategy)
        # ties (e.g. many identical phrases) broken at random, not by position in the file
        return np.lexsort((rng.random(n), -s))[:k]
    if embeddings is None:
        raise InputError("the diversity strategy needs embeddings of the candidate rows",
                         "pass embeddings= (e.g. TF-IDF vectors or sentence embeddings)")
    if embeddings.shape[0] != n:
        raise InputError(f"{embeddings.shape[0]} embeddings for {n} rows", "pass one embedding per row")
    if diversity not in ("kmeans", "kcenter"):
        raise InputError(f"unknown diversity method '{diversity}'", "use kmeans or kcenter")
    s = uncertainty(p, "margin")  # -(p1 - p2): in (-1, 0], higher = more uncertain
    pool = np.lexsort((rng.random(n), -s))[:min(n, max(k, pool_factor * k))]
    X = embeddings[pool]
    if diversity == "kmeans":
        picked = weighted_kmeans_pick(X, k, 1.0 + s[pool], seed)
    else:
        picked = k_center_greedy(X, k, centers=labeled_embeddings, first=0)  # pool[0] = the most uncertain
    return pool[picked]


# ----------------------------------------------------------------------------- default model


@contextmanager
def _global_numpy_seed(seed: int):
    """Seed numpy's global generator for a block and restore it after (repeatable fits)."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


class TfidfLR:
    """A model factory: the TF-IDF + LR baseline (``eval.baselines``: its features, classifier
    and 3-fold C search), with the vectorizer fit once on ``corpus`` (the unlabeled pool) so each
    round only refits the classifier. ``features(texts)`` gives the TF-IDF rows (for diversity)."""

    def __init__(self, corpus: Sequence[str], lang: str | None = None, seed: int = 0):
        from ..eval.baselines import detect_lang, tfidf_features

        self.lang = lang or detect_lang(list(corpus))
        self.seed = seed
        self.vectorizer = tfidf_features(self.lang)
        X = self.vectorizer.fit_transform(list(corpus))
        self._corpus_X = X
        self._corpus_rows = {t: i for i, t in enumerate(corpus)}

    def features(self, texts: Sequence[str]):
        import scipy.sparse as sp

        rows = [self._corpus_rows.get(t) for t in texts]
        if all(r is not None for r in rows):
            return self._corpus_X[rows]
        missing = [t for t, r in zip(texts, rows) if r is None]
        extra = self.vectorizer.transform(missing)
        it = iter(range(len(missing)))
        return sp.vstack([self._corpus_X[r] if r is not None else extra[next(it)] for r in rows]).tocsr()

    def embeddings(self, texts: Sequence[str], dim: int = 100) -> np.ndarray:
        """Dense (n, dim) LSA vectors: a truncated SVD of the corpus TF-IDF (fit once), for diversity."""
        if getattr(self, "_svd", None) is None:
            from sklearn.decomposition import TruncatedSVD

            self._svd = TruncatedSVD(min(dim, self._corpus_X.shape[1] - 1), random_state=self.seed).fit(self._corpus_X)
        return self._svd.transform(self.features(texts))

    def __call__(self, train_texts: list[str], train_labels: list[str], labels: list[str]):
        from ..eval.baselines import _choose_c, logistic_regression

        index = {y: i for i, y in enumerate(labels)}
        y = np.array([index[str(v)] for v in train_labels])
        if len(np.unique(y)) < 2:
            raise InputError("the labeled set holds one class only", "label a few examples of another class first")
        X = self.features(train_texts)
        with _global_numpy_seed(self.seed):  # liblinear's dual solver shuffles with numpy's global state
            C, _ = _choose_c(X, y, len(labels), False, self.seed)
            clf = logistic_regression(len(labels), False, C).fit(X, y)

        def predict(texts: list[str]) -> np.ndarray:
            p = clf.predict_proba(self.features(texts))
            full = np.zeros((p.shape[0], len(labels)))
            full[:, clf.classes_] = p
            return full

        predict.C = C
        return predict


# ----------------------------------------------------------------------------- simulation


def _seed_set(labels: np.ndarray, size: int, rng) -> list[int]:
    """``size`` random rows; more random rows while they hold a single class (a classifier needs two)."""
    order = rng.permutation(len(labels))
    picked = list(order[:size])
    rest = iter(order[size:])
    while len(set(labels[picked].tolist())) < 2:
        try:
            picked.append(next(rest))
        except StopIteration:
            raise InputError("the labeled set holds one class only", "simulate on data with two or more labels") from None
    return picked


def simulate(texts: Sequence[str], labels: Sequence, test_texts: Sequence[str], test_labels: Sequence,
             strategy: str, seed_size: int = 100, step: int = 100, rounds: int = 10,
             model_factory: ModelFactory | None = None, seed: int = 0, embeddings=None,
             diversity: str = "kmeans") -> list[dict]:
    """Accuracy and macro-F1 on the test set after each round of revealing ``step`` labels.

    Returns ``rounds + 1`` rows ``{"round", "n_labels", "accuracy", "macro_f1", "seconds"}``: the
    seed set's model first, then one per round. ``embeddings`` of ``texts`` (for ``diversity``)
    default to the model factory's ``embeddings`` (LSA vectors of the TF-IDF rows by default) or
    else its ``features``."""
    from ..eval.baselines import _label_list
    from ..eval.metrics import classification_metrics

    texts, y_all = list(texts), np.array([str(v) for v in labels])
    if len(texts) != len(y_all) or len(test_texts) != len(test_labels):
        raise InputError("simulate: texts and labels differ in length", "pass one label per text")
    names = _label_list(list(y_all), False)
    index = {v: i for i, v in enumerate(names)}
    y_test = [index.get(str(v), -1) for v in test_labels]
    factory = model_factory or TfidfLR(texts, seed=seed)
    if strategy == "diversity" and embeddings is None:
        if hasattr(factory, "embeddings"):
            embeddings = factory.embeddings(texts)
        elif hasattr(factory, "features"):
            embeddings = factory.features(texts)
        else:
            raise InputError("diversity needs embeddings", "pass embeddings= or a model factory with .embeddings()")
    rng = np.random.default_rng(seed)
    labeled = _seed_set(y_all, min(seed_size, len(texts)), rng)
    is_labeled = np.zeros(len(texts), dtype=bool)
    is_labeled[labeled] = True
    rows = []
    for r in range(rounds + 1):
        t = time.perf_counter()
        predict = factory([texts[i] for i in labeled], list(y_all[labeled]), names)
        m = classification_metrics(y_test, predict(list(test_texts)), names)
        row = {"round": r, "n_labels": len(labeled), "accuracy": m["accuracy"], "macro_f1": m["macro_f1"]}
        pool = np.nonzero(~is_labeled)[0]
        if r < rounds and len(pool):
            probs = predict([texts[i] for i in pool])
            emb = embeddings[pool] if strategy == "diversity" else None
            lab_emb = embeddings[labeled] if strategy == "diversity" else None
            new = pool[select(probs, step, strategy, embeddings=emb, seed=seed * 1000 + r,
                                labeled_embeddings=lab_emb, diversity=diversity)]
            labeled += new.tolist()
            is_labeled[new] = True
        row["seconds"] = round(time.perf_counter() - t, 3)
        rows.append(row)
    return rows


def area_under_curve(rows: list[dict], key: str = "accuracy") -> float:
    """Mean of ``key`` over the rounds, weighted by label count spacing (trapezoid / width)."""
    x = np.array([r["n_labels"] for r in rows], dtype=float)
    v = np.array([r[key] for r in rows], dtype=float)
    if len(x) < 2:
        return float(v[0])
    return float(np.trapezoid(v, x) / (x[-1] - x[0])) if hasattr(np, "trapezoid") else float(np.trapz(v, x) / (x[-1] - x[0]))
