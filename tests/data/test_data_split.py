"""Splits (random, stratified, grouped) and the leakage report."""

from __future__ import annotations

import json
from collections import Counter

from lmforge.data.config import SplitConfig
from lmforge.data.split import assign_splits, leakage, split_files
from data_helpers import paragraphs, read_jsonl


def sst_records(dataset, n=2000):
    rows = dataset("classification/sst2/train.tsv").read_text(encoding="utf-8").splitlines()[1:n + 1]
    return [{"id": f"sst-{i}", "text": r.split("\t")[0], "meta": {"label": r.split("\t")[1]}}
            for i, r in enumerate(rows)]


def test_random_split_exact_and_deterministic(dataset):
    recs = sst_records(dataset)
    cfg = SplitConfig(val_fraction=0.1, test_fraction=0.05, seed=3)
    a, b = assign_splits(recs, cfg), assign_splits(list(reversed(recs)), cfg)[::-1]
    assert (a == b).all()  # by hash of id and seed, not by position
    assert Counter(a.tolist()) == {0: 1700, 1: 200, 2: 100}
    assert (assign_splits(recs, SplitConfig(val_fraction=0.1, test_fraction=0.05, seed=4)) != a).any()


def test_stratified_keeps_label_ratio(dataset):
    recs = sst_records(dataset)
    assign = assign_splits(recs, SplitConfig(val_fraction=0.2, mode="stratified"))
    labels = [r["meta"]["label"] for r in recs]
    for lab in set(labels):
        idx = [i for i, x in enumerate(labels) if x == lab]
        assert abs(sum(assign[i] == 1 for i in idx) - 0.2 * len(idx)) <= 1


def test_grouped_keeps_near_duplicates_together(dataset):
    base = paragraphs(dataset("pretrain/gutenberg/austen-emma.txt"), 200, 300)
    recs = [{"id": f"p{i}", "text": t, "meta": {}} for i, t in enumerate(base)]
    for i in range(40):  # near copies of 40 paragraphs
        words = base[i].split()
        words[3] = "indeed"
        recs.append({"id": f"copy{i}", "text": " ".join(words), "meta": {}})
    recs.append({"id": "g1", "text": "first of a group about whales and ships", "meta": {"book": "x"}})
    recs.append({"id": "g2", "text": "second text of that group, different words", "meta": {"book": "x"}})
    assign = assign_splits(recs, SplitConfig(val_fraction=0.3, mode="grouped", group_field="book"))
    pos = {r["id"]: assign[i] for i, r in enumerate(recs)}
    assert all(pos[f"p{i}"] == pos[f"copy{i}"] for i in range(40))
    assert pos["g1"] == pos["g2"]
    assert 0.2 < (assign == 1).mean() < 0.4
    random_assign = assign_splits(recs, SplitConfig(val_fraction=0.3, mode="random"))
    straddle = sum(random_assign[i] != random_assign[200 + i] for i in range(40))
    assert straddle > 0  # the grouped mode is what prevents it


def test_split_files_and_leakage(tmp_path, dataset):
    recs = sst_records(dataset, 600)
    src = tmp_path / "kept.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in recs))
    counts = split_files([src], tmp_path / "s", SplitConfig(val_fraction=0.25, test_fraction=0.25))
    assert counts == {"train": 300, "val": 150, "test": 150}
    train = read_jsonl(tmp_path / "s" / "train.jsonl")
    assert {r["id"] for r in train} | {r["id"] for r in read_jsonl(tmp_path / "s" / "val.jsonl")} | \
           {r["id"] for r in read_jsonl(tmp_path / "s" / "test.jsonl")} == {r["id"] for r in recs}
    # plant leaks: 5 exact and 5 near copies of train sentences in a test file
    long_train = [r for r in train if len(r["text"].split()) >= 15][:10]
    leaked = [{"id": f"x{i}", "text": r["text"], "meta": {}} for i, r in enumerate(long_train[:5])]
    for i, r in enumerate(long_train[5:]):
        w = r["text"].split()
        w[-2] = "indeed"
        leaked.append({"id": f"n{i}", "text": " ".join(w), "meta": {}})
    test = tmp_path / "test.jsonl"
    test.write_text("".join(json.dumps(r) + "\n" for r in leaked + recs[:0]))
    rep = leakage([tmp_path / "s" / "train.jsonl"], [test], threshold=0.7)
    assert rep["exact"] == 5 and rep["near"] >= 4 and rep["b_docs"] == 10
    clean = leakage([tmp_path / "s" / "train.jsonl"], [tmp_path / "s" / "val.jsonl"])
    assert clean["exact"] <= 3  # SST-2 itself has a few repeated phrases
