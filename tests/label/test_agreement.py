"""Agreement statistics against scikit-learn, the `krippendorff` package and textbook examples."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lmforge.label.agreement import agreement, cohen_kappa, conflicts, fleiss_kappa, krippendorff_alpha
from lmforge.label.project import Project


@pytest.mark.parametrize("seed", range(5))
def test_cohen_matches_sklearn(seed):
    from sklearn.metrics import cohen_kappa_score

    rng = np.random.default_rng(seed)
    a = rng.choice(["x", "y", "z"], size=200, p=[0.6, 0.3, 0.1])
    b = np.where(rng.random(200) < 0.7, a, rng.choice(["x", "y", "z"], size=200))
    assert cohen_kappa(list(a), list(b)) == pytest.approx(cohen_kappa_score(a, b), abs=1e-12)


def test_cohen_edge_cases():
    assert cohen_kappa(["a", "b"], ["a", "b"]) == 1.0
    assert math.isnan(cohen_kappa(["a", "a"], ["a", "a"]))  # chance agreement 1: undefined, as in sklearn
    with pytest.raises(ValueError):
        cohen_kappa(["a"], ["a", "b"])


def test_fleiss_wikipedia_example():
    # Fleiss (1971) as worked on Wikipedia: 10 subjects, 14 raters, 5 categories, kappa = 0.210
    table = [[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
             [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]]
    assert fleiss_kappa(table) == pytest.approx(0.2099, abs=5e-4)
    with pytest.raises(ValueError):
        fleiss_kappa([[1, 1], [2, 1]])


def test_fleiss_two_raters_close_to_scott_pi():
    # with two raters Fleiss' kappa is Scott's pi
    a = ["x", "x", "y", "y", "x", "z", "z", "x"]
    b = ["x", "y", "y", "y", "x", "z", "x", "x"]
    cats = ["x", "y", "z"]
    table = [[(p == c) + (q == c) for c in cats] for p, q in zip(a, b)]
    po = sum(p == q for p, q in zip(a, b)) / len(a)
    pe = sum(((a + b).count(c) / (2 * len(a))) ** 2 for c in cats)
    assert fleiss_kappa(table) == pytest.approx((po - pe) / (1 - pe))


KRIPPENDORFF_2011 = [  # Krippendorff (2011) "Computing Krippendorff's alpha-reliability": 4 observers, 12 units
    [1, 2, 3, 3, 2, 1, 4, 1, 2, None, None, None],
    [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, None, 3],
    [None, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, None],
    [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, None]]


def test_krippendorff_textbook_and_package():
    units = [list(col) for col in zip(*KRIPPENDORFF_2011)]
    assert krippendorff_alpha(units) == pytest.approx(0.743, abs=5e-4)
    kd = pytest.importorskip("krippendorff")
    data = np.array([[np.nan if v is None else v for v in row] for row in KRIPPENDORFF_2011], dtype=float)
    assert krippendorff_alpha(units) == pytest.approx(kd.alpha(reliability_data=data, level_of_measurement="nominal"))
    rng = np.random.default_rng(1)
    for _ in range(5):
        m = rng.integers(0, 4, size=(3, 40)).astype(float)
        m[rng.random(m.shape) < 0.2] = np.nan
        ours = krippendorff_alpha([[None if np.isnan(v) else int(v) for v in col] for col in m.T])
        assert ours == pytest.approx(kd.alpha(reliability_data=m, level_of_measurement="nominal"), abs=1e-9)


def test_project_agreement_and_conflicts(tmp_path):
    from sklearn.metrics import cohen_kappa_score

    p = Project.create(tmp_path / "p.db", "classification", ["pos", "neg", "neu"])
    p.add_examples([{"id": str(i), "text": f"t{i}"} for i in range(8)])
    a = ["pos", "pos", "neg", "neu", "pos", "neg", "neg", "pos"]
    b = ["pos", "neg", "neg", "neu", "pos", "neg", "pos", "pos"]
    c = ["pos", "pos", "neg", "neg", "pos", "neg", "neg", None]
    for i in range(8):
        p.annotate(str(i), a[i], "a")
        p.annotate(str(i), b[i], "b")
        if c[i]:
            p.annotate(str(i), c[i], "c")
    rep = agreement(p)
    assert rep["annotators"] == ["a", "b", "c"] and rep["items"] == 8
    assert rep["pairs"]["a | b"]["kappa"] == pytest.approx(cohen_kappa_score(a, b), abs=1e-6)
    assert rep["pairs"]["a | c"]["items"] == 7
    assert rep["fleiss_items"] == 7
    units = [[x, y] + ([z] if z else []) for x, y, z in zip(a, b, c)]
    assert rep["krippendorff_alpha"] == pytest.approx(krippendorff_alpha(units), abs=1e-6)
    confl = conflicts(p)
    assert [x["id"] for x in confl] == ["1", "3", "6"]
    assert confl[0]["values"] == {"a": "pos", "b": "neg", "c": "pos"}


def test_ner_and_multilabel_agreement(tmp_path):
    n = Project.create(tmp_path / "n.db", "ner", ["LOC", "PER"])
    n.add_examples([{"id": "1", "text": "😀 我爱北京 Bob"}])
    spans = [{"start": 4, "end": 6, "label": "LOC"}, {"start": 7, "end": 10, "label": "PER"}]
    n.annotate("1", spans, "a")
    n.annotate("1", spans, "b")
    rep = agreement(n)
    assert rep["krippendorff_alpha"] == 1.0 and rep["pairs"]["a | b"]["span_f1"] == 1.0 and rep["conflicts"] == 0
    n.annotate("1", spans[:1], "b")
    rep = agreement(n)
    assert rep["pairs"]["a | b"]["span_f1"] == pytest.approx(2 / 3, abs=1e-6)
    assert rep["items"] == 8 and rep["krippendorff_alpha"] < 1 and rep["conflicts"] == 1
    m = Project.create(tmp_path / "m.db", "multilabel", ["x", "y"])
    m.add_examples([{"id": "1", "text": "a"}, {"id": "2", "text": "b"}])
    for i, (va, vb) in enumerate([(["x"], ["x"]), (["x", "y"], ["y"])], 1):
        m.annotate(str(i), va, "a")
        m.annotate(str(i), vb, "b")
    rep = agreement(m)
    assert rep["items"] == 4 and rep["pairs"]["a | b"]["agreement"] == 0.75
