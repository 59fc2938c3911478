"""ONNX export: loaded back in onnxruntime and compared with eager PyTorch on tokenizer inputs."""

import json

import numpy as np
import pytest
import torch

from lmforge.errors import ConfigError, InputError
from lmforge.export import EXPORTERS, export
from lmforge.export.verify import verify

ort = pytest.importorskip("onnxruntime")


@pytest.mark.parametrize("kind", ["bert_classifier", "gpt"])
def test_onnx_matches_eager_at_every_shape(make, tmp_path, kind):
    src = make(kind)
    out, rows = export(src, "onnx", tmp_path / "onnx", verify=True)
    assert (out / "model.onnx").exists() and (out / "tokenizer.json").exists()
    assert {(r["batch"], r["length"]) for r in rows} >= {(1, 1), (2, rows[-2]["length"])}
    assert max(r["max_abs_diff"] for r in rows) <= 1e-4
    m = json.loads((out / "export.json").read_text())
    assert m["format"] == "onnx" and m["opset"] == 17 and m["graphs"]["model"]["inputs"]["input_ids"]["shape"] == [
        "batch", "sequence"]
    # a fresh session on a shape never seen while tracing: batch 3, length 7, one row padded
    sess = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    ids = torch.randint(1, 40, (3, 7))
    mask = torch.ones(3, 7, dtype=torch.long)
    mask[1, 4:] = 0
    from lmforge.export.graphs import graphs_for
    from lmforge.models.io import load_model

    g = graphs_for(load_model(src))[0]
    feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)}
    names = [i.name for i in sess.get_inputs()]
    assert names == g.inputs
    got = sess.run(None, {n: feeds[n].numpy() for n in names})[0]
    with torch.no_grad():
        want = g.module(*(feeds[n] for n in names))[0].numpy()
    assert np.abs(got - want).max() <= 1e-4


def test_verify_catches_weights_changed_after_export(make, tmp_path):
    src = make("bert_classifier")
    export(src, "onnx", tmp_path / "onnx", verify=False)
    import safetensors.torch

    from lmforge.models.io import load_model

    model = load_model(src)
    with torch.no_grad():
        model.head.weight.add_(0.01)  # a small, real change after export
    safetensors.torch.save_model(model, str(src / "model.safetensors"))
    with pytest.raises(InputError, match=r"differs from the PyTorch model .* max abs diff"):
        verify(src, tmp_path / "onnx")


def test_unknown_format_lists_formats(make, tmp_path):
    assert set(EXPORTERS) >= {"onnx", "torchscript", "hf"}
    with pytest.raises(ConfigError, match="unknown export format 'tflite'") as e:
        export(make("gpt"), "tflite", tmp_path / "x")
    assert "onnx" in e.value.hint


def test_cli_prints_table_and_fails_cleanly(make, tmp_path, capsys):
    from lmforge.cli import main

    src = make("gpt")
    assert main(["export", "--to", "onnx", str(src), "--output", str(tmp_path / "o")]) == 0
    text = capsys.readouterr().out
    assert "max_abs_diff" in text and "verified" in text and (tmp_path / "o" / "model.onnx").exists()
    assert main(["export", "--to", "nope", str(src), "--output", str(tmp_path / "n")]) == 2
    assert "onnx, torchscript" in capsys.readouterr().err
