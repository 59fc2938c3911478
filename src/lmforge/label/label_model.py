"""Label models: majority vote, and Dawid-Skene EM over a label matrix of labeling functions.

A label matrix ``L`` is (n examples, m functions) of class indices, ``-1`` where a function
abstains. Dawid & Skene (1979) treat the true class as latent: a class prior ``pi[k]`` and, per
function, a confusion matrix ``theta[j, k, o] = P(function j outputs o | true class k)``; EM
alternates the posterior of each example's class (E) with the counts that re-estimate ``pi`` and
``theta`` (M), started from majority vote.

Abstaining is one more outcome (column ``K`` of ``theta``), not missing data: a keyword list that
only ever says "positive" carries information only through *when* it abstains, and treating its
abstains as missing would make it uninformative (every vote it casts is the same label). This is
also how snorkel's LabelModel sees abstains. ``abstain="missing"`` gives the classic missing-at-random
treatment.

    from lmforge.label.label_model import DawidSkene, majority_vote
    ds = DawidSkene(n_classes=2).fit(L)
    probs = ds.predict_proba(L)        # (n, K)
    hard = ds.predict(L)               # (n,), -1 where no function voted (unless cover_all=True)
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from ..errors import InputError

ABSTAIN = -1


def check_matrix(L, n_classes: int) -> np.ndarray:
    L = np.asarray(L)
    if L.ndim != 2:
        raise InputError(f"a label matrix must be 2-D (examples x functions), got shape {L.shape}",
                         "stack one column per labeling function")
    if L.size and (L.min() < ABSTAIN or L.max() >= n_classes):
        raise InputError(f"label matrix values must be -1 (abstain) or 0..{n_classes - 1}, got "
                         f"{int(L.min())}..{int(L.max())}", "map each function's labels to class indices")
    return L.astype(np.int64, copy=False)


def vote_counts(L: np.ndarray, n_classes: int) -> np.ndarray:
    """(n, K): how many functions voted for each class."""
    counts = np.zeros((L.shape[0], n_classes))
    for j in range(L.shape[1]):
        voted = L[:, j] >= 0
        np.add.at(counts, (np.nonzero(voted)[0], L[voted, j]), 1)
    return counts


def majority_vote(L, n_classes: int, tie_break: Literal["abstain", "random"] = "abstain",
                  seed: int = 0) -> np.ndarray:
    """The most voted class per row; rows without a vote get -1, and so do ties under
    ``tie_break="abstain"`` (snorkel's MajorityLabelVoter default); ``random`` breaks ties at random."""
    L = check_matrix(L, n_classes)
    counts = vote_counts(L, n_classes)
    top = counts.max(1, keepdims=True)
    best = (counts == top) & (top > 0)
    n_best = best.sum(1)
    out = np.where(n_best == 1, best.argmax(1), ABSTAIN)
    if tie_break == "random":
        rng = np.random.default_rng(seed)
        for i in np.nonzero(n_best > 1)[0]:
            out[i] = rng.choice(np.nonzero(best[i])[0])
    return out


def majority_proba(L, n_classes: int) -> np.ndarray:
    """Soft majority vote: vote shares per row (uniform where no function voted)."""
    counts = vote_counts(check_matrix(L, n_classes), n_classes)
    total = counts.sum(1, keepdims=True)
    return np.where(total > 0, counts / np.maximum(total, 1), 1.0 / n_classes)


class DawidSkene:
    """Dawid-Skene EM label model with class priors and one confusion matrix per function.

    ``smoothing``: Dirichlet pseudo-count added to every confusion cell (and to the prior), which
    keeps a function that never emitted some label on some class from vetoing it forever.
    ``class_prior``: fix the class balance instead of learning it (as snorkel's ``class_balance``).
    """

    def __init__(self, n_classes: int, abstain: Literal["outcome", "missing"] = "outcome", max_iter: int = 200,
                 tol: float = 1e-7, smoothing: float = 0.01, class_prior=None):
        if n_classes < 2:
            raise InputError(f"a label model needs at least 2 classes, got {n_classes}", "declare the label set")
        self.n_classes = n_classes
        self.abstain = abstain
        self.max_iter = max_iter
        self.tol = tol
        self.smoothing = smoothing
        self.fixed_prior = None if class_prior is None else np.asarray(class_prior, dtype=float)
        if self.fixed_prior is not None and (self.fixed_prior.shape != (n_classes,) or
                                             abs(self.fixed_prior.sum() - 1) > 1e-6):
            raise InputError("class_prior must be one probability per class summing to 1", "e.g. [0.5, 0.5]")

    # (n, m) label matrix -> (n, m) outcome index: a class, or K for an abstain
    def _outcomes(self, L: np.ndarray) -> np.ndarray:
        return np.where(L < 0, self.n_classes, L)

    def _log_joint(self, O: np.ndarray) -> np.ndarray:
        """(n, K): log pi_k + sum_j log theta_j[k, o_ij] (abstains skipped when they are missing data)."""
        log_theta = np.log(self.confusion_)
        out = np.tile(np.log(self.prior_), (O.shape[0], 1))
        for j in range(O.shape[1]):
            contrib = log_theta[j][:, O[:, j]].T  # (n, K)
            if self.abstain == "missing":
                contrib = np.where((O[:, j] == self.n_classes)[:, None], 0.0, contrib)
            out += contrib
        return out

    def _m_step(self, O: np.ndarray, T: np.ndarray) -> None:
        K, n_out = self.n_classes, self.n_classes + 1
        conf = np.empty((O.shape[1], K, n_out))
        for j in range(O.shape[1]):
            onehot = np.zeros((O.shape[0], n_out))
            onehot[np.arange(O.shape[0]), O[:, j]] = 1.0
            counts = T.T @ onehot + self.smoothing  # (K, K+1)
            if self.abstain == "missing":
                counts[:, K] = 0.0
            conf[j] = counts / counts.sum(1, keepdims=True)
        if self.abstain == "missing":
            conf[:, :, K] = 1.0  # unused: abstains contribute nothing; 1 keeps log() finite
        self.confusion_ = conf
        if self.fixed_prior is not None:
            self.prior_ = self.fixed_prior.copy()
        else:
            p = T.sum(0) + self.smoothing
            self.prior_ = p / p.sum()

    def fit(self, L, init_proba=None) -> "DawidSkene":
        """EM from majority vote (or ``init_proba``, (n, K)); stops when the mean log-likelihood
        per example improves by less than ``tol``."""
        L = check_matrix(L, self.n_classes)
        if L.shape[0] == 0:
            raise InputError("no examples to fit the label model on", "apply the functions to some data first")
        O = self._outcomes(L)
        T = majority_proba(L, self.n_classes) if init_proba is None else np.asarray(init_proba, dtype=float)
        prev = -np.inf
        self.history_ = []
        for it in range(1, self.max_iter + 1):
            self._m_step(O, T)
            lj = self._log_joint(O)
            top = lj.max(1, keepdims=True)
            ll = float(np.mean(top[:, 0] + np.log(np.exp(lj - top).sum(1))))
            T = np.exp(lj - top)
            T /= T.sum(1, keepdims=True)
            self.history_.append(ll)
            self.n_iter_ = it
            if ll - prev < self.tol:
                break
            prev = ll
        self.log_likelihood_ = self.history_[-1]
        return self

    def predict_proba(self, L) -> np.ndarray:
        """(n, K) posterior class probabilities."""
        if not hasattr(self, "confusion_"):
            raise RuntimeError("DawidSkene.predict_proba before fit")
        L = check_matrix(L, self.n_classes)
        if L.shape[1] != self.confusion_.shape[0]:
            raise InputError(f"label matrix has {L.shape[1]} functions, the model was fit on "
                             f"{self.confusion_.shape[0]}", "apply the same labeling functions")
        lj = self._log_joint(self._outcomes(L))
        lj -= lj.max(1, keepdims=True)
        p = np.exp(lj)
        return p / p.sum(1, keepdims=True)

    def predict(self, L, cover_all: bool = False) -> np.ndarray:
        """Hard labels: the most probable class; -1 where no function voted unless ``cover_all``."""
        L = check_matrix(L, self.n_classes)
        out = self.predict_proba(L).argmax(1)
        if not cover_all:
            out = np.where((L >= 0).any(1), out, ABSTAIN)
        return out

    def accuracies(self) -> np.ndarray:
        """(m,) each function's estimated accuracy when it votes: sum_k pi_k theta[k, k] / P(votes)."""
        diag = np.einsum("k,jkk->j", self.prior_, self.confusion_[:, :, :self.n_classes])
        votes = np.einsum("k,jko->j", self.prior_, self.confusion_[:, :, :self.n_classes])
        return diag / np.maximum(votes, 1e-12)
