"""The CLI contract: help with examples everywhere, one-line errors, --debug tracebacks."""

import subprocess
import sys
from pathlib import Path

import pytest

from lmforge.cli import main

REPO = Path(__file__).resolve().parents[1]
VERBS = ["run", "data", "tokenizer", "pretrain", "finetune", "evaluate", "generate", "report", "export", "import-hf"]


@pytest.mark.parametrize("verb", VERBS)
def test_help_has_example(verb, capsys):
    assert main([verb, "--help"]) == 0
    out = capsys.readouterr().out
    assert "Example" in out or "example" in out


def test_unknown_key_is_one_line_with_suggestion():
    res = subprocess.run([sys.executable, "-m", "lmforge", "run", "recipes/quickstart.yaml", "nosuch.key=1"],
                         cwd=REPO, capture_output=True, text=True)
    assert res.returncode == 2
    assert "Traceback" not in res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert "unknown config key 'nosuch'" in lines[0]
    assert "valid keys here" in lines[0] and "pretrain" in lines[0]


def test_typo_gets_did_you_mean(capsys):
    assert main(["run", str(REPO / "recipes/quickstart.yaml"), "pretrain.train.max_step=5"]) == 2
    err = capsys.readouterr().err
    assert "did you mean 'pretrain.train.max_steps'" in " ".join(err.split())


def test_debug_shows_traceback():
    res = subprocess.run([sys.executable, "-m", "lmforge", "--debug", "run", "recipes/quickstart.yaml", "nosuch.key=1"],
                         cwd=REPO, capture_output=True, text=True)
    assert res.returncode != 0 and "Traceback" in res.stderr


def test_missing_recipe_and_missing_model(tmp_path, capsys):
    assert main(["run", str(tmp_path / "none.yaml")]) == 2
    assert "recipe not found" in capsys.readouterr().err
    assert main(["generate", "--model", str(tmp_path), "--prompt", "x"]) == 2
    assert "no config.json" in capsys.readouterr().err
    assert main(["report", str(tmp_path)]) == 2


def test_print_config_shows_overrides(capsys):
    assert main(["run", str(REPO / "recipes/quickstart.yaml"), "pretrain.train.max_steps=7", "--print-config"]) == 0
    out = capsys.readouterr().out
    assert "max_steps: 7" in out and "name: quickstart" in out


def test_usage_error_exit_code(capsys):
    assert main(["run"]) == 2


def test_export_import_round_trip_through_cli(tmp_path):
    """A pretrained decoder exported to the HF LLaMA layout and imported back gives the same logits."""
    import torch

    from lmforge.models.gpt import GPT, GPTConfig
    from lmforge.models.io import load_model, save_model

    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=64, block_size=16, n_layer=1, n_head=2, n_kv_head=1, d_model=16,
                          positions="rope", norm="rmsnorm", mlp="swiglu", bias=False, tie_embeddings=False))
    save_model(model, tmp_path / "ours")
    assert main(["export", "--to", "hf", str(tmp_path / "ours"), "--output", str(tmp_path / "hf")]) == 0
    assert main(["import-hf", str(tmp_path / "hf"), "--output", str(tmp_path / "back")]) == 0
    back = load_model(tmp_path / "back")
    x = torch.randint(0, 64, (2, 10))
    assert torch.allclose(model(x)[0], back(x)[0], atol=1e-5)
    assert main(["export", "--to", "onnx", str(tmp_path / "ours"), "--output", str(tmp_path / "x")]) == 0
    assert (tmp_path / "x" / "model.onnx").exists()
    assert main(["export", "--to", "tflite", str(tmp_path / "ours"), "--output", str(tmp_path / "y")]) == 2
