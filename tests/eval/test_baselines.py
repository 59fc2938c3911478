"""Baselines: TF-IDF + LR against a direct scikit-learn pipeline on real SST-2, the fastText-style
model on keyword tasks (English, Chinese, multi-label), the task adapter and n-gram perplexity."""

from __future__ import annotations

import csv
import json
import random

import numpy as np
import pytest

from lmforge.errors import InputError
from lmforge.eval import baselines as bl


def _tsv(path, n=None, min_words=0):
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))[1:]
    rows = [(r[0], r[1].strip()) for r in rows if len(r[0].split()) >= min_words]
    return rows[:n] if n else rows


def _keyword_task(n: int, seed: int, pos="good", neg="bad", filler=None):
    """Label decided by one keyword hidden among random filler words."""
    rng = random.Random(seed)
    filler = filler or "the a movie film plot actor scene story was is it this and of".split()
    texts, labels = [], []
    for _ in range(n):
        y = rng.random() < 0.5
        words = [rng.choice(filler) for _ in range(rng.randint(3, 10))]
        words.insert(rng.randint(0, len(words)), pos if y else neg)
        texts.append(" ".join(words))
        labels.append("1" if y else "0")
    return texts, labels


@pytest.mark.slow
def test_tfidf_lr_on_sst2_slice_beats_chance_and_equals_sklearn_pipeline(shared_datasets):
    from sklearn.metrics import accuracy_score
    from sklearn.pipeline import make_pipeline

    sst = shared_datasets / "classification" / "sst2"
    if not (sst / "train.tsv").exists():
        pytest.skip("SST-2 missing")
    train = _tsv(sst / "train.tsv", 1200, min_words=8)  # whole-sentence-like phrases, not 1-word ones
    dev = _tsv(sst / "dev.tsv")
    X, y = [t for t, _ in train], [lab for _, lab in train]
    Xd, yd = [t for t, _ in dev], [lab for _, lab in dev]
    out = bl.tfidf_lr(X, y, Xd, yd)
    assert out["model"] == "tfidf+lr" and out["lang"] == "en" and out["n_test"] == 872
    assert out["accuracy"] > 0.68, out  # chance is 0.51 on SST-2 dev
    assert 0 < out["macro_f1"] <= 1 and out["C"] in bl.C_GRID
    # the same features and C fitted directly with scikit-learn give the same predictions
    pipe = make_pipeline(bl.tfidf_features("en"), bl.logistic_regression(2, False, out["C"])).fit(X, y)
    assert out["accuracy"] == pytest.approx(accuracy_score(yd, pipe.predict(Xd)), abs=1e-12)
    json.dumps(out)  # small, JSON-able


def test_tfidf_lr_keyword_task_and_unseen_test_label():
    X, y = _keyword_task(200, 0)
    Xt, yt = _keyword_task(100, 1)
    out = bl.tfidf_lr(X, y, Xt, yt)
    assert out["accuracy"] == 1.0 and out["macro_f1"] == 1.0
    # a test label never seen in training counts as an error, as in the task's metrics
    out2 = bl.tfidf_lr(X, y, Xt[:10], ["9"] + yt[1:10])
    assert out2["accuracy"] == pytest.approx(0.9)


def test_fasttext_style_learns_a_keyword_task():
    X, y = _keyword_task(400, 0)
    Xt, yt = _keyword_task(200, 1)
    out = bl.fasttext_style(X, y, Xt, yt, epochs=5)
    assert out["model"] == "fasttext" and out["accuracy"] >= 0.97, out  # balanced labels: no constant does that


def test_chinese_text_uses_characters():
    filler = list("这个酒店房间的服务位置早餐前台")
    X, y = _keyword_task(300, 0, pos="很好", neg="太差", filler=filler)
    X = [t.replace(" ", "") for t in X]  # Chinese has no spaces between words
    Xt, yt = _keyword_task(100, 1, pos="很好", neg="太差", filler=filler)
    Xt = [t.replace(" ", "") for t in Xt]
    assert bl.detect_lang(X) == "zh" and bl.ngram_tokens("房间很好ok!", "zh") == ["房", "间", "很", "好", "ok", "!"]
    a = bl.tfidf_lr(X, y, Xt, yt)
    b = bl.fasttext_style(X, y, Xt, yt)
    assert a["lang"] == "zh" and a["features"] == "char 1-3-grams"
    assert a["accuracy"] >= 0.97 and b["accuracy"] >= 0.95, (a, b)


def test_multilabel_baselines_report_micro_f1():
    rng = random.Random(0)

    def make(n):
        texts, labels = [], []
        for _ in range(n):
            has_a, has_b = rng.random() < 0.5, rng.random() < 0.5
            words = ["x"] * rng.randint(1, 4) + (["alpha"] if has_a else []) + (["beta"] if has_b else [])
            rng.shuffle(words)
            texts.append(" ".join(words))
            labels.append([lab for lab, on in (("A", has_a), ("B", has_b)) if on])
        return texts, labels

    X, y = make(300)
    Xt, yt = make(100)
    for fn in (bl.tfidf_lr, bl.fasttext_style):
        out = fn(X, y, Xt, yt, multi_label=True)
        assert {"micro_f1", "macro_f1", "accuracy"} <= set(out)
        assert out["micro_f1"] > 0.9, out


def test_classification_baselines_take_the_task_and_its_label_order():
    from lmforge.tasks.classification import Classification, ClassificationConfig

    X, y = _keyword_task(200, 0)
    Xt, yt = _keyword_task(60, 1)
    names = {"1": "pos", "0": "neg"}
    train = [{"id": str(i), "text": t, "label": names[lab]} for i, (t, lab) in enumerate(zip(X, y))]
    test = [{"id": str(i), "text": t, "label": names[lab]} for i, (t, lab) in enumerate(zip(Xt, yt))]
    task = Classification(ClassificationConfig())
    task.fit(train)
    out = bl.classification_baselines(task, train, test)
    assert set(out) == {"tfidf+lr", "fasttext"}
    assert out["tfidf+lr"]["accuracy"] == 1.0 and out["fasttext"]["accuracy"] > 0.9
    json.dumps(out)
    with pytest.raises(InputError, match="unknown baseline"):
        bl.classification_baselines(task, train, test, which=["svm"])


def test_bad_input_is_an_input_error():
    with pytest.raises(InputError, match="labels"):
        bl.tfidf_lr(["a", "b"], ["1"], ["c"], ["1"])
    with pytest.raises(InputError, match="fewer than two"):
        bl.tfidf_lr(["a b", "b c", "c d"], ["1", "1", "1"], ["c"], ["1"])


def test_ngram_perplexity_prefers_in_domain_text(tmp_path):
    rng = random.Random(0)
    lines = [" ".join(rng.choice(["the cat sat on the mat", "a dog ran in the park"]).split()) for _ in range(200)]
    train = tmp_path / "train.txt"
    train.write_text("\n".join(lines) + "\n")
    same, other = tmp_path / "same.txt", tmp_path / "other.txt"
    same.write_text("the cat sat on the mat\na dog ran in the park\n")
    other.write_text("mat the on sat cat the\npark the in ran dog a\n")
    a = bl.ngram_perplexity([train], same, order=3)
    b = bl.ngram_perplexity([train], other, order=3)
    assert a["model"] == "3-gram word kneser-ney" and a["oov_rate"] == 0
    assert 1 < a["perplexity"] < 2 < b["perplexity"], (a, b)
    assert np.isfinite(a["bits_per_byte"]) and a["bits_per_byte"] < b["bits_per_byte"]
