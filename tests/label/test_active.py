"""Active learning: each strategy picks the rows it should on hand-made probability matrices,
diversity spreads a batch over clusters, and the simulation learns from revealed labels on real
data (ChnSentiCorp), repeatably."""

import csv

import numpy as np
import pytest

from lmforge.errors import InputError
from lmforge.label.active import TfidfLR, area_under_curve, k_center_greedy, select, simulate, uncertainty

# three classes: each uncertainty measure has a different favourite
P = np.array([
    [0.50, 0.49, 0.01],  # smallest margin (0.01)
    [0.36, 0.33, 0.31],  # highest entropy, lowest top probability
    [0.90, 0.05, 0.05],  # confident
    [0.45, 0.10, 0.45],  # margin 0, top 0.45
    [0.40, 0.35, 0.25],  # entropy 1.08, top 0.40
])


def test_uncertainty_strategies_pick_the_expected_rows():
    assert select(P, 1, "entropy").tolist() == [1]
    assert select(P, 1, "margin").tolist() == [3]
    assert select(P, 2, "margin").tolist() == [3, 0]
    assert select(P, 1, "least_confident").tolist() == [1]
    assert select(P, 3, "least_confident").tolist() == [1, 4, 3]
    assert select(P, 5, "entropy")[-1] == 2  # the confident row comes last
    ent = uncertainty(P, "entropy")
    assert ent[1] == pytest.approx(-(P[1] * np.log(P[1])).sum())


def test_two_classes_make_the_three_uncertainty_orders_equal():
    p1 = np.random.default_rng(0).random(200)
    probs = np.stack([1 - p1, p1], 1)
    orders = [select(probs, 200, s, seed=3).tolist() for s in ("entropy", "margin", "least_confident")]
    assert orders[0] == orders[1] == orders[2]
    assert orders[0][0] == int(np.argmin(np.abs(p1 - 0.5)))


def test_random_is_repeatable_without_duplicates_and_errors_are_clear():
    a, b, c = select(P, 4, "random", seed=1), select(P, 4, "random", seed=1), select(np.ones((100, 2)) / 2, 50, "random", seed=2)
    assert a.tolist() == b.tolist() and len(set(a.tolist())) == 4 and len(set(c.tolist())) == 50
    assert len(select(P, 99, "margin")) == 5
    with pytest.raises(InputError, match="unknown strategy"):
        select(P, 1, "bald")
    with pytest.raises(InputError, match="needs embeddings"):
        select(P, 1, "diversity")


def test_diversity_spreads_a_batch_over_clusters_where_entropy_does_not():
    """Three tight clusters; the 30 most uncertain rows are all in cluster 0. Entropy takes 6 of
    them; diversity takes rows from every cluster among the 10*k most uncertain."""
    rng = np.random.default_rng(0)
    centers = np.eye(3) * 10
    X = np.concatenate([centers[c] + rng.normal(0, 0.1, (40, 3)) for c in range(3)])
    p1 = np.concatenate([0.5 + rng.uniform(0, 0.02, 40), 0.5 + rng.uniform(0.05, 0.3, 80)])
    probs = np.stack([1 - p1, p1], 1)
    cluster = np.repeat([0, 1, 2], 40)
    assert set(cluster[select(probs, 6, "entropy")].tolist()) == {0}
    for method in ("kmeans", "kcenter"):
        picked = select(probs, 6, "diversity", embeddings=X, diversity=method)
        assert len(set(picked.tolist())) == 6 and set(cluster[picked].tolist()) == {0, 1, 2}, method


def test_k_center_greedy_is_farthest_first():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(60, 5))
    picked = k_center_greedy(X, 5)
    Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
    for t in range(1, 5):
        d = 1 - Xn @ Xn[picked[:t]].T  # cosine distance to what was picked before
        min_d = d.min(1)
        min_d[picked[:t]] = -np.inf
        assert picked[t] == int(np.argmax(min_d))


@pytest.fixture(scope="module")
def chnsenticorp(shared_datasets):
    path = shared_datasets / "classification/chnsenticorp/ChnSentiCorp_htl_all.csv"
    if not path.exists():
        pytest.skip(f"{path} missing")
    with open(path, encoding="utf-8", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["review"]]
    rng = np.random.default_rng(0)
    picked = [rows[i] for i in rng.permutation(len(rows))[:2000]]
    return ([r["review"] for r in picked[:1500]], [r["label"] for r in picked[:1500]],
            [r["review"] for r in picked[1500:]], [r["label"] for r in picked[1500:]])


def test_simulation_learns_and_repeats(chnsenticorp):
    texts, labels, test_texts, test_labels = chnsenticorp
    factory = TfidfLR(texts)
    rows = simulate(texts, labels, test_texts, test_labels, "margin", seed_size=40, step=40, rounds=4,
                    model_factory=factory, seed=0)
    assert [r["n_labels"] for r in rows] == [40, 80, 120, 160, 200]
    assert rows[-1]["accuracy"] > 0.8 and rows[-1]["accuracy"] > rows[0]["accuracy"]
    again = simulate(texts, labels, test_texts, test_labels, "margin", seed_size=40, step=40, rounds=4,
                     model_factory=factory, seed=0)
    assert [r["accuracy"] for r in again] == [r["accuracy"] for r in rows]
    div = simulate(texts, labels, test_texts, test_labels, "diversity", seed_size=40, step=40, rounds=2,
                   model_factory=factory, seed=0)
    assert [r["n_labels"] for r in div] == [40, 80, 120] and div[-1]["accuracy"] > 0.7
    assert 0 < area_under_curve(rows) <= 1


def test_margin_asks_for_rows_the_model_is_unsure_of(chnsenticorp):
    """What the strategy picks, under the model of the moment, is far less confident than a random batch."""
    texts, labels, _, _ = chnsenticorp
    factory = TfidfLR(texts)
    predict = factory(texts[:400], labels[:400], ["0", "1"])
    pool = texts[400:]
    probs = predict(pool)
    gap = np.abs(probs[:, 1] - probs[:, 0])
    m, r = gap[select(probs, 50, "margin")].mean(), gap[select(probs, 50, "random", seed=0)].mean()
    assert m < 0.25 * r, (m, r)
