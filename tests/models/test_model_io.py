"""save_model / load_model: every family round-trips; tied weights stay tied; writes are atomic."""

import json

import pytest
import torch

from lmforge.errors import InputError
from lmforge.models import io
from lmforge.models.bert import BERT, BertConfig
from lmforge.models.gpt import GPT, GPTConfig
from lmforge.models.seq2seq import Seq2Seq, Seq2SeqConfig

MODELS = {
    "gpt-tied": lambda: GPT(GPTConfig(vocab_size=50, block_size=16, n_layer=2, n_head=2, d_model=16)),
    "gpt-llama": lambda: GPT(GPTConfig(vocab_size=50, block_size=16, n_layer=2, n_head=4, n_kv_head=2, d_model=16,
                                       positions="rope", norm="rmsnorm", mlp="swiglu", tie_embeddings=False)),
    "bert": lambda: BERT(BertConfig(vocab_size=50, block_size=16, n_layer=2, n_head=2, d_model=16)),
    "seq2seq": lambda: Seq2Seq(Seq2SeqConfig(vocab_size=50, block_size=16, n_head=2, d_model=16)),
}


@pytest.mark.parametrize("name", MODELS)
def test_round_trip(tmp_path, name):
    torch.manual_seed(0)
    model = MODELS[name]().eval()
    tok = tmp_path / "tokenizer.json"
    tok.write_text("{}")
    io.save_model(model, tmp_path / "m", extra_files=[tok])
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["config.json", "model.safetensors", "tokenizer.json"]
    assert json.loads((tmp_path / "m" / "config.json").read_text())["model_type"] == name.split("-")[0]
    loaded = io.load_model(tmp_path / "m").eval()
    assert type(loaded) is type(model) and loaded.config == model.config
    a, b = model.state_dict(), loaded.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    x = torch.randint(3, 50, (2, 8))
    args = (x, x) if name == "seq2seq" else (x,)
    assert torch.equal(model(*args)[0], loaded(*args)[0])


def test_tied_weights_survive_save_and_load(tmp_path):
    model = MODELS["gpt-tied"]()
    io.save_model(model, tmp_path / "m")
    loaded = io.load_model(tmp_path / "m")
    assert loaded.lm_head.weight is loaded.wte.weight
    with torch.no_grad():
        loaded.wte.weight[3] += 1.0
    assert torch.equal(loaded.lm_head.weight[3], loaded.wte.weight[3])
    bert = io.load_model(io.save_model(MODELS["bert"](), tmp_path / "b"))
    assert bert.mlm_head.weight is bert.wte.weight


def test_failed_save_leaves_the_old_model(tmp_path, monkeypatch):
    io.save_model(MODELS["gpt-tied"](), tmp_path / "m")
    before = (tmp_path / "m" / "model.safetensors").read_bytes()

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(io, "atomic_write_json", boom)
    with pytest.raises(OSError):
        io.save_model(MODELS["gpt-llama"](), tmp_path / "m")
    assert (tmp_path / "m" / "model.safetensors").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m"]  # no temp dir left behind


def test_load_errors_are_user_errors(tmp_path):
    with pytest.raises(InputError, match="config.json"):
        io.load_model(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "mamba"}))
    with pytest.raises(InputError, match="unknown model_type"):
        io.load_model(tmp_path)
    io.save_model(MODELS["gpt-tied"](), tmp_path / "m")
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    (tmp_path / "m" / "config.json").write_text(json.dumps({**cfg, "d_model": 32}))
    with pytest.raises(InputError, match="does not match"):
        io.load_model(tmp_path / "m")
    (tmp_path / "m" / "model.safetensors").unlink()
    with pytest.raises(InputError, match="model.safetensors"):
        io.load_model(tmp_path / "m")
