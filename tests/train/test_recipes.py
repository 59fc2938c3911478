"""The pretraining recipes: each loads, its dataset paths exist, and a few steps run end to end
(tokenizer -> pretrain -> report curves) through the same code as ``lmforge pretrain``.
The full runs (each <= 15 minutes on 2 CPU cores) are marked slow."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lmforge.recipe import load_recipe, run_recipe

REPO = Path(__file__).resolve().parents[2]
RECIPES = REPO / "recipes" / "pretrain"
CPU_RECIPES = ["shakespeare-char", "tinystories-gpt", "bert-mlm", "zh-gpt"]
QUICK = ["pretrain.train.max_steps=3", "pretrain.train.eval_every=3", "pretrain.train.eval_batches=1",
         "pretrain.train.save_every=3", "pretrain.train.threads=1"]


def _paths(recipe) -> list[str]:
    files = list(recipe.tokenizer.files or []) if recipe.tokenizer else []
    if recipe.pretrain and recipe.pretrain.data:
        files += [*recipe.pretrain.data.train, *(recipe.pretrain.data.val or [])]
    return files


def _rebase(paths: list[str], datasets: Path) -> list[str]:
    """Recipe paths are ``../shared/datasets/...`` from the repo root; point them at the fixture's copy."""
    return [str(datasets / p.split("datasets/", 1)[1]) if "datasets/" in p else p for p in paths]


def _overrides(recipe, datasets: Path, extra=()) -> list[str]:
    out = []
    if recipe.tokenizer and recipe.tokenizer.files:
        out.append(f"tokenizer.files={json.dumps(_rebase(recipe.tokenizer.files, datasets))}")
    data = recipe.pretrain.data
    out.append(f"pretrain.data.train={json.dumps(_rebase(data.train, datasets))}")
    if data.val:
        out.append(f"pretrain.data.val={json.dumps(_rebase(data.val, datasets))}")
    return out + QUICK + list(extra)


def test_gpu_recipe_loads():
    recipe = load_recipe(RECIPES / "gpt2-124m-gpu.yaml")
    p = recipe.pretrain
    assert (p.model.n_layer, p.model.n_head, p.model.d_model, p.model.block_size) == (12, 12, 768, 1024)
    assert p.train.precision == "bf16" and p.train.compile and p.train.distributed == "ddp"


@pytest.mark.parametrize("name", CPU_RECIPES)
def test_recipe_loads_and_paths_exist(name, shared_datasets):
    recipe = load_recipe(RECIPES / f"{name}.yaml")
    assert recipe.pretrain is not None and recipe.name == name
    for p in _paths(recipe):
        assert p.startswith("../shared/datasets/"), p  # relative to the repo root, as documented
        assert (shared_datasets / p.split("datasets/", 1)[1]).exists(), p


# smaller tokenizers for the quick runs (the full vocabularies are the slow tests' business)
SMALL = {"shakespeare-char": [], "tinystories-gpt": ["tokenizer.vocab_size=512"],
         "bert-mlm": ["tokenizer.vocab_size=1000", "tokenizer.max_train_docs=3000",
                      'pretrain.data.train=["../shared/datasets/pretrain/gutenberg/austen-sense.txt"]'],
         "zh-gpt": ["tokenizer.vocab_size=600", "tokenizer.max_train_docs=2000",
                    'pretrain.data.train=["../shared/datasets/pretrain/zh_novels/三国演义.txt"]']}


@pytest.mark.parametrize("name", CPU_RECIPES)
def test_recipe_runs_a_few_steps(name, tmp_path, shared_datasets):
    from lmforge.eval.report import build_report

    recipe = load_recipe(RECIPES / f"{name}.yaml")
    small = [o if "datasets/" not in o else f"pretrain.data.train={json.dumps(_rebase(json.loads(o.split('=', 1)[1]), shared_datasets))}"
             for o in SMALL[name]]
    recipe = load_recipe(RECIPES / f"{name}.yaml", _overrides(recipe, shared_datasets, small))
    run = run_recipe(recipe, tmp_path / "run", until="pretrain", progress=False)
    rows = [json.loads(x) for x in (run.path / "pretrain" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [3]
    for key in ("step", "tokens", "elapsed_s", "val_loss"):
        assert key in rows[0]
    if recipe.pretrain.objective == "clm":
        assert 0 < rows[0]["val_bpb"] < 20
        ngram = json.loads((run.path / "pretrain" / "ngram_baseline.json").read_text())
        assert 0 < ngram["bits_per_byte"] < 20 and ngram["tokens"] > 0
    else:
        assert "val_accuracy" in rows[0]
    assert (run.path / "pretrain" / "model" / "model.safetensors").exists()
    build_report(run.path)
    assert (run.path / "report" / "curve_pretrain.png").stat().st_size > 1000


@pytest.mark.slow  # ~20 s idle: tokenizer stage, then two fresh interpreters under torchrun
def test_cli_nproc_launches_torchrun(tmp_path, shared_datasets):
    """``lmforge pretrain RECIPE --nproc 2``: two DDP ranks on gloo; rank 0 writes metrics and the model."""
    recipe = load_recipe(RECIPES / "shakespeare-char.yaml")
    args = _overrides(recipe, shared_datasets, ["pretrain.model.n_layer=1", "pretrain.train.batch_size=4"])
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        env.pop(k, None)
    r = subprocess.run([sys.executable, "-m", "lmforge", "pretrain", str(RECIPES / "shakespeare-char.yaml"),
                        "--nproc", "2", "--run-dir", str(tmp_path / "run"), *args],
                       env=env, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    summary = json.loads((tmp_path / "run" / "pretrain" / "train_summary.json").read_text())
    assert summary["distributed"] == "ddp" and summary["world_size"] == 2
    rows = [json.loads(x) for x in (tmp_path / "run" / "pretrain" / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["tokens"] == 3 * 2 * 4 * recipe.pretrain.model.block_size
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["stages"]["pretrain"]["status"] == "done"


# -- full runs ----------------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("name,check", [
    ("shakespeare-char", lambda r: r["val_bpb"] <= 2.72),
    ("tinystories-gpt", lambda r: r["val_loss"] < 3.3),
    ("bert-mlm", lambda r: r["val_accuracy"] > 0.11),
    ("zh-gpt", lambda r: r["val_loss"] < 6.45),
])
def test_recipe_full_run(name, check, tmp_path, shared_datasets):
    recipe = load_recipe(RECIPES / f"{name}.yaml")
    ov = [o for o in _overrides(recipe, shared_datasets) if o not in QUICK]
    run = run_recipe(load_recipe(RECIPES / f"{name}.yaml", ov), tmp_path / "run", until="pretrain", progress=False)
    rows = [json.loads(x) for x in (run.path / "pretrain" / "metrics.jsonl").read_text().splitlines()]
    assert check(rows[-1]), rows[-1]
    assert rows[-1]["elapsed_s"] < 15 * 60
