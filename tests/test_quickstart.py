"""End to end: a shortened quickstart, then caching — unchanged stages reused, changed ones rerun."""

import json
from pathlib import Path

import pytest

from lmforge.recipe import load_recipe, run_recipe

REPO = Path(__file__).resolve().parents[1]
SHORT = ["pretrain.train.max_steps=30", "pretrain.train.eval_every=15", "pretrain.train.eval_batches=2",
         "pretrain.model.n_layer=2", "pretrain.model.d_model=64", "tokenizer.vocab_size=1024",
         "finetune.train.max_steps=10", "finetune.train.eval_every=5", "generate.max_new_tokens=8"]


@pytest.fixture(scope="module")
def short_run(tmp_path_factory, monkeypatch_module):
    monkeypatch_module.chdir(REPO)
    run_dir = tmp_path_factory.mktemp("runs") / "qs"
    run = run_recipe(load_recipe("recipes/quickstart.yaml", SHORT), run_dir, progress=False)
    return run_dir, json.loads((run.path / "manifest.json").read_text())


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


def test_every_stage_done_and_accounted(short_run):
    run_dir, manifest = short_run
    stages = manifest["stages"]
    assert list(stages) == ["data", "tokenizer", "pretrain", "finetune", "evaluate", "generate", "report"]
    assert all(s["status"] == "done" for s in stages.values())
    d = stages["data"]["metrics"]
    assert d["records_in"] == d["kept"] + d["dropped"] + d["errors"]
    assert d["dropped"] > 0  # duplicates and scrape noise are in the sample
    assert manifest["git_commit"] is None or len(manifest["git_commit"]) == 40
    assert manifest["config"]["pretrain"]["train"]["max_steps"] == 30
    assert any(k.endswith("reviews.jsonl") for k in stages["data"]["inputs"])


def test_outputs_exist(short_run):
    run_dir, manifest = short_run
    for rel in ("data/splits/train.jsonl", "tokenizer/tokenizer.json", "pretrain/model/model.safetensors",
                "pretrain/model/tokenizer.json", "pretrain/metrics.jsonl", "finetune/pretrained/model/config.json",
                "finetune/random/model/config.json", "evaluate/metrics.json", "generate/samples.jsonl"):
        assert (run_dir / rel).exists(), rel
    page = (run_dir / "report.html").read_text()
    assert page.count("<img") >= 5
    ev = json.loads((run_dir / "evaluate" / "metrics.json").read_text())
    assert set(ev) == {"pretrained", "random"} and ev["pretrained"]["n"] == 600
    # the honest baselines: a linear classifier beside the classifiers, an n-gram beside the LM
    base = json.loads((run_dir / "evaluate" / "baselines.json").read_text())
    assert set(base) == {"tfidf+lr", "fasttext"} and base["tfidf+lr"]["n"] == 600
    assert set(base["tfidf+lr"]["vs"]) == {"pretrained", "random"} and 0.5 < base["tfidf+lr"]["accuracy"] <= 1
    ngram = json.loads((run_dir / "pretrain" / "ngram_baseline.json").read_text())
    assert ngram["model"] == "6-gram char kneser-ney" and 0.5 < ngram["bits_per_byte"] < 8
    assert ngram["oov_rate"] < 0.01 and ngram["train_bytes"] > 10_000
    assert "Baselines (same training split" in page and "Language model vs n-gram baseline" in page


def test_rerun_reuses_everything_then_reruns_downstream_of_a_change(short_run):
    run_dir, before = short_run
    run_recipe(load_recipe("recipes/quickstart.yaml", SHORT), run_dir, progress=False)
    same = json.loads((run_dir / "manifest.json").read_text())
    for name, rec in before["stages"].items():
        assert same["stages"][name]["started"] == rec["started"], f"{name} was rerun"
    run_recipe(load_recipe("recipes/quickstart.yaml", [*SHORT, "finetune.train.max_steps=12"]), run_dir, progress=False)
    after = json.loads((run_dir / "manifest.json").read_text())
    rerun = {n for n, r in after["stages"].items() if r["started"] != before["stages"][n]["started"]}
    assert rerun == {"finetune", "evaluate", "report"}
