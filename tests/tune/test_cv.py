"""lmforge cv: folds partition the training file, the held-out fold is what evaluate scores, and the
summary is the folds' mean and standard deviation."""

import json
import statistics

import pytest

from lmforge.cli import main
from lmforge.data.split import assign_folds
from lmforge.errors import ConfigError
from lmforge.tune.cv import cross_validate


def test_stratified_folds_partition_and_keep_the_label_mix():
    records = [{"id": str(i), "text": f"t{i}", "meta": {"label": "a" if i % 4 else "b"}} for i in range(40)]
    folds = assign_folds(records, 5, "stratified", seed=1)
    assert sorted(set(folds.tolist())) == [0, 1, 2, 3, 4]
    for f in range(5):
        held = [r for r, x in zip(records, folds) if x == f]
        assert len(held) == 8 and sum(r["meta"]["label"] == "b" for r in held) == 2
    assert (assign_folds(records, 5, "stratified", seed=1) == folds).all()  # deterministic


def test_grouped_folds_never_split_near_duplicates():
    base = [f"alpha beta gamma delta epsilon zeta eta theta number {i} of the set" for i in range(12)]
    records = [{"id": str(i), "text": t, "meta": {"label": "x"}} for i, t in enumerate(base + [t + " !" for t in base])]
    folds = assign_folds(records, 3, "grouped")
    for i in range(12):
        assert folds[i] == folds[i + 12]


def test_fold_count_larger_than_the_smallest_class_is_one_clear_error():
    records = [{"id": str(i), "text": str(i), "meta": {"label": "rare" if i < 3 else "common"}} for i in range(30)]
    with pytest.raises(ConfigError, match="larger than the smallest class: label 'rare' has 3"):
        assign_folds(records, 5, "stratified")


def test_cv_runs_every_fold_on_its_held_out_part(tiny_recipe, tmp_path):
    recipe = tiny_recipe()
    result = cross_validate(recipe, 3, progress=False)
    summary = result["summary"]["pretrained"]
    assert summary["n"] == [80, 80, 80]  # 240 examples, each scored exactly once
    acc = summary["accuracy"]
    assert len(acc["folds"]) == 3 and abs(acc["mean"] - statistics.fmean(acc["folds"])) < 1e-12
    assert abs(acc["std"] - statistics.stdev(acc["folds"])) < 1e-12
    assert acc["mean"] > 0.8  # the sentiment word decides the label: the model learns it
    ids = []
    for d in result["fold_dirs"]:
        preds = [json.loads(x) for x in open(f"{d}/evaluate/pretrained/predictions.jsonl")]
        ids += [p["id"] for p in preds]
    assert len(ids) == len(set(ids)) == 240  # the held-out folds partition the file
    cv_dir = tmp_path / "runs" / "tiny" / "cv"
    assert (cv_dir / "folds.png").stat().st_size > 1000
    # rerun: every fold is reused, not retrained
    again = cross_validate(recipe, 3, progress=False)
    assert again["summary"] == result["summary"]


def test_cv_cli_reports_and_bad_fold_count(tiny_recipe, tmp_path):
    recipe = tiny_recipe()
    assert main(["cv", recipe, "--folds", "2", "finetune.train.max_steps=10"]) == 0
    report = (tmp_path / "runs" / "tiny" / "report.html").read_text()
    assert "Cross-validation (2 folds" in report and "mean ± std" in report
    assert main(["cv", recipe, "--folds", "500"]) == 2  # larger than the smallest class: clear message
