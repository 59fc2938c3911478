"""The export matrix: every model kind x ONNX / TorchScript / torch.export, verified against eager at
batch 1 / length 1 and on padded batches; seq2seq as encoder + decoder graphs; decoders with a KV cache."""

import json

import numpy as np
import pytest
import torch

from lmforge.errors import ConfigError
from lmforge.export import export

ENCODERS = ["bert", "bert_classifier", "bert_mean_classifier", "bert_tagger", "bert_crf", "bert_qa"]
KINDS = ENCODERS + ["gpt", "gpt_rope", "gpt_classifier", "seq2seq", "seq2seq_rope"]
FORMATS = ["onnx", "torchscript", "torch-export"]


def _check(out, rows, fmt):
    shapes = {(r["batch"], r["length"]) for r in rows}
    assert (1, 1) in shapes and any(b > 1 for b, _ in shapes)
    assert max(r["max_abs_diff"] for r in rows) <= 1e-4
    m = json.loads((out / "export.json").read_text())
    assert m["format"] == fmt and (out / "tokenizer.json").exists()
    assert all((out / f).exists() for f in m["files"].values())
    return m


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("kind", KINDS)
def test_format_matches_eager(make, tmp_path, fmt, kind):
    if fmt == "onnx":
        pytest.importorskip("onnxruntime")
    out, rows = export(make(kind), fmt, tmp_path / fmt, verify=True)
    m = _check(out, rows, fmt)
    if kind.startswith("seq2seq"):
        assert set(m["files"]) == {"encoder", "decoder"} and {r["graph"] for r in rows} == {"encoder", "decoder"}
        assert m["graphs"]["decoder"]["inputs"]["encoder_hidden_states"]["dtype"] == "float32"
    else:
        assert set(m["files"]) == {"model"}


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
@pytest.mark.parametrize("kind", ["gpt", "gpt_rope"])
def test_decoder_with_cache(make, tmp_path, fmt, kind):
    """past keys/values in, present out: verified at past 0, past T-1 with one new token, and half/half."""
    if fmt == "onnx":
        pytest.importorskip("onnxruntime")
    out, rows = export(make(kind), fmt, tmp_path / fmt, verify=True, options={"with_cache": True})
    m = _check(out, rows, fmt)
    assert {0} < {r["past"] for r in rows} and any(r["length"] == 1 and r["past"] > 0 for r in rows)
    c = m["cache"]
    ins = m["graphs"]["model"]["inputs"]
    assert list(ins)[:3] == ["input_ids", "attention_mask", "past_key_0"] and len(ins) == 2 + 2 * c["n_layer"]
    assert m["graphs"]["model"]["outputs"]["present_value_1"]["shape"] == ["batch", c["n_kv_head"], "total_sequence",
                                                                           c["head_dim"]]
    assert ins["past_key_0"]["shape"] == ["batch", c["n_kv_head"], "past_sequence", c["head_dim"]]


def test_onnx_cache_greedy_decoding_matches_the_full_sequence(make, tmp_path):
    """Decode step by step with onnxruntime feeding present back as past: the logits of each new token
    equal the no-cache model's logits at that position."""
    ort = pytest.importorskip("onnxruntime")
    from lmforge.models.io import load_model

    src = make("gpt_rope")
    out, _ = export(src, "onnx", tmp_path / "onnx", verify=False, options={"with_cache": True})
    sess = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    c = json.loads((out / "export.json").read_text())["cache"]
    names = [i.name for i in sess.get_inputs()]
    ids = np.array([[5, 9, 17, 3]], dtype=np.int64)
    past = {f"past_{kv}_{i}": np.zeros((1, c["n_kv_head"], 0, c["head_dim"]), np.float32)
            for i in range(c["n_layer"]) for kv in ("key", "value")}
    feed = {"input_ids": ids, "attention_mask": np.ones_like(ids), **past}
    seq = ids
    for _ in range(4):
        res = sess.run(None, {n: feed[n] for n in names})
        nxt = res[0][:, -1].argmax(-1)[:, None].astype(np.int64)
        seq = np.concatenate([seq, nxt], axis=1)
        present = dict(zip([o.name for o in sess.get_outputs()][1:], res[1:]))
        feed = {"input_ids": nxt, "attention_mask": np.ones_like(seq),
                **{n.replace("present", "past"): v for n, v in present.items()}}
    with torch.no_grad():
        full = load_model(src)(torch.from_numpy(seq[:, :-1]))[0]
    assert seq.shape == (1, 8)
    assert np.abs(full[0, -1].numpy() - res[0][0, -1]).max() <= 1e-4 and full[0, -1].argmax() == int(seq[0, -1])


def test_with_cache_is_refused_where_it_is_not_supported(make, tmp_path):
    with pytest.raises(ConfigError, match="torch.export"):
        export(make("gpt"), "torch-export", tmp_path / "a", options={"with_cache": True})
    with pytest.raises(ConfigError, match="GPT decoder"):
        export(make("bert_classifier"), "torchscript", tmp_path / "b", options={"with_cache": True})
    with pytest.raises(ConfigError, match="seq2seq"):
        export(make("seq2seq"), "onnx", tmp_path / "c", options={"with_cache": True})


def test_hf_through_the_table_matches_the_old_command(make, tmp_path):
    transformers = pytest.importorskip("transformers")
    src = make("gpt")
    out, rows = export(src, "hf", tmp_path / "hf", verify=True)
    assert rows is None
    hf = transformers.AutoModelForCausalLM.from_pretrained(out).eval()
    from lmforge.models.io import load_model

    x = torch.randint(0, 40, (2, 9))
    with torch.no_grad():
        assert (load_model(src)(x)[0] - hf(x).logits).abs().max() <= 1e-4
