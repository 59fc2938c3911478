"""Labeling functions, their analysis table and the Dawid-Skene label model: keyword/regex/python/
model functions from YAML, the table checked against snorkel's LFAnalysis, Dawid-Skene recovering
known confusion matrices and beating majority vote where a function is adversarial, and the whole
path on SST-2 dev."""

import csv
import json

import numpy as np
import pytest

from lmforge.errors import ConfigError, InputError
from lmforge.label.label_model import DawidSkene, majority_vote
from lmforge.label.weak import (analyze, apply_lfs, compare_on_dev, keyword_lf, label_rows, load_lfs, model_lf,
                                regex_lf, totals)


def synthetic(n=4000, seed=0):
    """Three classes, five functions with known confusion matrices (abstain = last column); the
    last function is adversarial: it votes often and is right only 15% of the time."""
    rng = np.random.default_rng(seed)
    K, prior = 3, np.array([0.5, 0.3, 0.2])
    y = rng.choice(K, n, p=prior)
    confs = []
    for cov, acc in [(0.8, 0.85), (0.6, 0.75), (0.7, 0.7), (0.5, 0.8), (0.9, 0.15)]:
        C = np.zeros((K, K + 1))
        for k in range(K):
            others = [c for c in range(K) if c != k]
            C[k, K] = 1 - cov
            C[k, k] = cov * acc
            C[k, others[0]], C[k, others[1]] = cov * (1 - acc) * 0.7, cov * (1 - acc) * 0.3
        confs.append(C)
    confs = np.array(confs)
    L = np.empty((n, len(confs)), dtype=int)
    for j, C in enumerate(confs):
        u = rng.random(n)[:, None]
        o = (u > np.cumsum(C[y], axis=1)).sum(1)  # inverse-CDF draw of each outcome
        L[:, j] = np.where(o == K, -1, o)
    return L, y, confs, prior


# ----------------------------------------------------------------------------- functions


def test_keyword_matches_whole_latin_words_and_cjk_substrings():
    lf = keyword_lf("pos", "1", ["good", "不错", "well done"])
    assert lf(["A GOOD film", "goodness gracious", "房间不错。", "it was well done!", "done well"]) == \
        ["1", None, "1", "1", None]
    assert keyword_lf("cs", "1", ["Good"], case_sensitive=True)(["good", "Good"]) == [None, "1"]


def test_regex_and_label_matrix():
    lfs = [regex_lf("neg", "0", [r"\bnot (good|funny)\b", r"\bwaste\b"]), keyword_lf("pos", "1", ["good", "funny"])]
    L = apply_lfs(lfs, ["not good at all", "very funny", "a waste of good actors", "plain"], ["0", "1"])
    assert L.tolist() == [[0, 1], [-1, 1], [0, 1], [-1, -1]]
    bad = regex_lf("odd", "2", ["x"])
    with pytest.raises(InputError, match="returned '2'"):
        apply_lfs([bad], ["x"], ["0", "1"])


def test_yaml_with_python_and_model_functions(tmp_path):
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    (tmp_path / "my_lfs.py").write_text("def exclaim(text):\n    return 'pos' if text.endswith('!') else None\n")
    (tmp_path / "lfs.yaml").write_text("""labels: [neg, pos]
functions:
  - {name: good, kind: keyword, label: pos, keywords: [good, great]}
  - {name: bad, kind: regex, label: neg, patterns: ['\\bbad\\b', 'awful']}
  - {name: bang, kind: python, function: "my_lfs:exclaim"}
  - {name: clf, kind: model, model: some/dir, threshold: 0.7}
""")
    clf = make_pipeline(CountVectorizer(), LogisticRegression(C=10)).fit(
        ["good", "great", "nice", "bad", "awful", "poor"] * 5, ["pos", "pos", "pos", "neg", "neg", "neg"] * 5)
    asked = []

    def factory(model_dir):  # what the CLI builds from predict_texts; here a real (tiny) sklearn model
        asked.append(model_dir)
        return lambda texts: [{"label": clf.classes_[p.argmax()], "score": float(p.max())}
                              for p in clf.predict_proba(texts)]

    labels, lfs = load_lfs(tmp_path / "lfs.yaml", factory)
    assert labels == ["neg", "pos"] and [f.name for f in lfs] == ["good", "bad", "bang", "clf"] and asked == ["some/dir"]
    L = apply_lfs(lfs, ["a good day!", "awful", "nice", "zzz"], labels)
    assert L[:, :3].tolist() == [[1, -1, 1], [-1, 0, -1], [-1, -1, -1], [-1, -1, -1]]
    assert L[1, 3] == 0 and L[2, 3] == 1 and L[3, 3] == -1  # unknown word: low confidence -> abstain
    with pytest.raises(ConfigError, match="needs a model"):
        load_lfs(tmp_path / "lfs.yaml")


def test_a_function_that_raises_is_reported_by_name_and_the_others_vote(tmp_path):
    from lmforge.label.weak import failure_lines, python_lf

    def fragile(text):  # a user's bug: fails on texts without a digit
        return "pos" if int("".join(c for c in text if c.isdigit())) > 3 else "neg"

    def broken_batch(texts):
        raise RuntimeError("model server down")

    lfs = [keyword_lf("good", "pos", ["good"]), python_lf("fragile", fragile),
           python_lf("batchy", broken_batch, batch=True)]
    L = apply_lfs(lfs, ["good 5", "good", "bad 1"], ["neg", "pos"])
    assert L.tolist() == [[1, 1, -1], [1, -1, -1], [-1, 0, -1]]
    lines = failure_lines(lfs)
    assert len(lines) == 2
    assert lines[0].startswith("labeling function 'fragile' raised on 1 text(s)") and "ValueError" in lines[0]
    assert "text 2 ('good')" in lines[0]
    assert "'batchy' raised on 3 text(s)" in lines[1] and "model server down" in lines[1]


def test_yaml_errors_name_the_problem(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("labels: [a, b]\nfunctions:\n  - {name: x, kind: keyword, label: a, keywordz: [y]}\n")
    with pytest.raises(ConfigError):
        load_lfs(p)
    p.write_text("labels: [a, b]\nfunctions:\n  - {name: x, kind: keyword, label: c, keywords: [y]}\n")
    with pytest.raises(ConfigError, match="emits 'c'"):
        load_lfs(p)
    p.write_text("labels: [a, b]\nfunctions:\n  - {name: x, kind: python, function: no_such_mod_zz:f}\n")
    with pytest.raises(ConfigError, match="cannot import"):
        load_lfs(p)


def test_model_lf_threshold_and_label_map():
    pred = lambda texts: [{"label": "positive" if "+" in t else "negative", "score": 0.6 + 0.1 * len(t)} for t in texts]
    lf = model_lf("m", pred, threshold=0.8, label_map={"positive": "1", "negative": "0"})
    assert lf(["+", "++", "--", "-"]) == [None, "1", "0", None]


# ----------------------------------------------------------------------------- analysis


def test_analysis_matches_snorkel_lf_analysis():
    snorkel_analysis = pytest.importorskip("snorkel.labeling").LFAnalysis
    rng = np.random.default_rng(3)
    L = np.where(rng.random((300, 4)) < 0.4, rng.integers(0, 3, (300, 4)), -1)
    gold = rng.integers(0, 3, 300)
    ours = analyze(L, list("abcd"), ["x", "y", "z"], gold)
    ref = snorkel_analysis(L).lf_summary(Y=gold)
    for j, row in enumerate(ours):
        assert row["coverage"] == pytest.approx(ref["Coverage"].iloc[j])
        assert row["overlaps"] == pytest.approx(ref["Overlaps"].iloc[j])
        assert row["conflicts"] == pytest.approx(ref["Conflicts"].iloc[j])
        assert row["correct"] == ref["Correct"].iloc[j] and row["incorrect"] == ref["Incorrect"].iloc[j]
        assert row["emp_acc"] == pytest.approx(ref["Emp. Acc."].iloc[j])
    t = totals(L)
    assert t["coverage"] == pytest.approx(((L >= 0).any(1)).mean())


def test_analysis_by_hand():
    L = np.array([[0, 0, -1], [0, 1, -1], [-1, -1, 1], [-1, -1, -1]])
    rows = analyze(L, ["a", "b", "c"], ["n", "p"], gold=[0, 1, 1, -1])
    assert [r["coverage"] for r in rows] == [0.5, 0.5, 0.25]
    assert [r["overlaps"] for r in rows] == [0.5, 0.5, 0.0]
    assert [r["conflicts"] for r in rows] == [0.25, 0.25, 0.0]
    assert [(r["correct"], r["incorrect"]) for r in rows] == [(1, 1), (2, 0), (1, 0)]
    assert rows[1]["polarity"] == ["n", "p"]


# ----------------------------------------------------------------------------- label models


def test_majority_vote_ties_and_uncovered():
    L = np.array([[0, 0, 1], [0, 1, -1], [-1, -1, -1], [2, -1, -1]])
    assert majority_vote(L, 3).tolist() == [0, -1, -1, 2]
    r = majority_vote(L, 3, tie_break="random", seed=1)
    assert r[0] == 0 and r[1] in (0, 1) and r[2] == -1


def test_dawid_skene_recovers_confusion_matrices_and_beats_majority_vote():
    L, y, confs, prior = synthetic()
    ds = DawidSkene(3).fit(L)
    assert np.abs(ds.prior_ - prior).max() < 0.03
    assert np.abs(ds.confusion_ - confs).max() < 0.06  # every cell of five 3x4 matrices
    assert ds.accuracies()[-1] < 0.25 and ds.accuracies()[0] > 0.8  # it found the adversary
    assert all(b >= a - 1e-9 for a, b in zip(ds.history_, ds.history_[1:]))  # EM never decreases the likelihood
    covered = (L >= 0).any(1)
    acc_ds = (ds.predict(L)[covered] == y[covered]).mean()
    acc_mv = (majority_vote(L, 3, "random")[covered] == y[covered]).mean()
    assert acc_ds > acc_mv + 0.08, (acc_ds, acc_mv)
    assert np.allclose(ds.predict_proba(L).sum(1), 1)


def test_dawid_skene_against_snorkel_label_model():
    LabelModel = pytest.importorskip("snorkel.labeling.model").LabelModel
    L, y, _, _ = synthetic(seed=5)
    covered = (L >= 0).any(1)
    ours = (DawidSkene(3).fit(L).predict(L)[covered] == y[covered]).mean()
    lm = LabelModel(cardinality=3, verbose=False)
    lm.fit(L, n_epochs=500, seed=0, log_freq=1000, progress_bar=False)
    theirs = (lm.predict(L, tie_break_policy="random")[covered] == y[covered]).mean()
    mv = (majority_vote(L, 3, "random")[covered] == y[covered]).mean()
    assert ours >= theirs - 0.01 and theirs > mv - 0.02, (ours, theirs, mv)


def test_abstain_as_evidence_makes_one_sided_functions_useful():
    """Two keyword lists voting for one class each, and two noisy two-sided functions. Treated as
    missing data, the lists' abstains say nothing; as an outcome they say 'probably not my class',
    which is what decides the rows where nothing fired."""
    rng = np.random.default_rng(0)
    n = 10000
    y = rng.integers(0, 2, n)
    u = rng.random((n, 4))
    a = np.where(u[:, 0] < np.where(y == 1, 0.6, 0.05), 1, -1)  # 'positive' list: 60% of class 1, 5% of 0
    b = np.where(u[:, 1] < np.where(y == 0, 0.3, 0.05), 0, -1)  # 'negative' list: 30% of class 0, 5% of 1
    c = np.where(u[:, 2] < 0.6, np.where(rng.random(n) < 0.8, y, 1 - y), -1)
    d = np.where(u[:, 3] < 0.5, np.where(rng.random(n) < 0.75, y, 1 - y), -1)
    L = np.stack([a, b, c, d], 1)
    outcome, missing = DawidSkene(2).fit(L), DawidSkene(2, abstain="missing").fit(L)
    p0_true = 0.95 * 0.7 / (0.95 * 0.7 + 0.4 * 0.95)  # P(class 0 | nothing fired), from the generator
    assert outcome.predict_proba(np.array([[-1, -1, -1, -1]]))[0, 0] == pytest.approx(p0_true, abs=0.08)
    assert missing.predict_proba(np.array([[-1, -1, -1, -1]]))[0, 0] == pytest.approx(missing.prior_[0])
    acc_out = (outcome.predict(L, cover_all=True) == y).mean()
    acc_mis = (missing.predict(L, cover_all=True) == y).mean()
    assert acc_out > acc_mis + 0.05, (acc_out, acc_mis)


def test_label_rows_drop_uncovered_and_give_probabilities():
    L = np.array([[1, -1], [-1, -1]])
    probs = np.array([[0.2, 0.8], [0.5, 0.5]])
    rows = label_rows(["a", "b"], ["t1", "t2"], L, probs, ["neg", "pos"], "probs")
    assert rows == [{"id": "a", "text": "t1", "label": "pos", "probs": {"neg": 0.2, "pos": 0.8}}]
    assert len(label_rows(["a", "b"], ["t1", "t2"], L, probs, ["neg", "pos"], keep_uncovered=True)) == 2


# ----------------------------------------------------------------------------- on SST-2


SST2_LFS = """labels: ["0", "1"]
functions:
  - {name: pos_words, kind: keyword, label: "1", keywords: [good, great, best, fun, funny, beautiful, wonderful,
      charming, enjoyable, delightful, moving, excellent, love, entertaining, brilliant, perfect]}
  - {name: neg_words, kind: keyword, label: "0", keywords: [bad, worst, dull, boring, mess, stupid, awful, waste,
      lacks, tedious, flat, fails, unfunny, pointless, lame, mediocre]}
  - {name: negated_pos, kind: regex, label: "0", patterns: ["\\\\b(not|n't|never|no)\\\\s+(\\\\w+\\\\s+)?(good|funny|great|fun|interesting)\\\\b"]}
  - {name: too_much, kind: regex, label: "0", patterns: ["\\\\btoo (long|slow|much|little)\\\\b"]}
"""


def read_sst2(path):
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    return [r["sentence"] for r in rows], [r["label"].strip() for r in rows]


def test_sst2_dev_functions_and_label_models(shared_datasets, tmp_path):
    dev = shared_datasets / "classification/sst2/dev.tsv"
    if not dev.exists():
        pytest.skip(f"{dev} missing")
    (tmp_path / "lfs.yaml").write_text(SST2_LFS)
    labels, lfs = load_lfs(tmp_path / "lfs.yaml")
    texts, gold = read_sst2(dev)
    g = np.array([labels.index(x) for x in gold])
    L = apply_lfs(lfs, texts, labels)
    table = {r["name"]: r for r in analyze(L, [f.name for f in lfs], labels, g)}
    assert table["pos_words"]["emp_acc"] > 0.7 and table["neg_words"]["emp_acc"] > 0.7
    assert 0.1 < table["pos_words"]["coverage"] < 0.6
    res = compare_on_dev(L, L, g, 2)
    assert res["coverage"] > 0.2
    assert res["dawid_skene"]["accuracy_covered"] > 0.7 and res["majority_vote"]["accuracy_covered"] > 0.7


def test_cli_weak_writes_labels_and_table(shared_datasets, tmp_path):
    import typer
    from typer.testing import CliRunner

    from lmforge.label.cli_extra import weak

    dev = shared_datasets / "classification/sst2/dev.tsv"
    if not dev.exists():
        pytest.skip(f"{dev} missing")
    (tmp_path / "lfs.yaml").write_text(SST2_LFS)
    texts, _ = read_sst2(dev)
    data = tmp_path / "unlabeled.jsonl"
    data.write_text("".join(json.dumps({"id": f"u{i}", "sentence": t}) + "\n" for i, t in enumerate(texts[:400])))
    app = typer.Typer()
    app.command()(weak)
    app.command("noop")(lambda: None)  # two commands: typer keeps the subcommand name
    out = tmp_path / "weak.jsonl"
    r = CliRunner().invoke(app, ["weak", "--lfs", str(tmp_path / "lfs.yaml"), "--data", str(data), "--dev", str(dev),
                                 "--text-field", "sentence", "-o", str(out), "--labels", "probs",
                                 "--table", str(tmp_path / "t.json")], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert "| pos_words |" in r.output and "emp. acc." in r.output
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert 60 < len(rows) < 400 and set(rows[0]) == {"id", "text", "label", "probs"}
    assert json.loads((tmp_path / "t.json").read_text())["dev"]["label_models"]["n"] == 872
