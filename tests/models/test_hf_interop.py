"""Hugging Face round trips: export, load in transformers, compare logits; import back; CLI functions."""

import json

import pytest
import torch

from lmforge.errors import ConfigError, InputError
from lmforge.models.bert import BERT, BertConfig
from lmforge.export.cli import export
from lmforge.models.cli import import_
from lmforge.models.generate import SamplingConfig, generate
from lmforge.models.gpt import GPT, GPTConfig
from lmforge.models.hf import export_hf, import_hf
from lmforge.models.io import load_model, save_model

transformers = pytest.importorskip("transformers")
TOL = 1e-4
BASE = dict(vocab_size=97, block_size=32, n_layer=2, n_head=4, d_model=64)
GPTS = {
    "gpt2-tied": (dict(), "GPT2LMHeadModel"),
    "gpt2-untied": (dict(tie_embeddings=False, norm_eps=1e-6), "GPT2LMHeadModel"),
    "llama-gqa": (dict(positions="rope", norm="rmsnorm", mlp="swiglu", n_kv_head=2, bias=False,
                       tie_embeddings=False, rope_base=500.0, norm_eps=1e-6), "LlamaForCausalLM"),
    "llama-mqa-bias-tied": (dict(positions="rope", norm="rmsnorm", mlp="swiglu", n_kv_head=1, mlp_hidden=96),
                            "LlamaForCausalLM"),
}


def perturbed(model):
    """Non-trivial weights everywhere (norm gains, biases), so a wrong mapping cannot hide."""
    torch.manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model.eval()


@pytest.mark.parametrize("name", GPTS)
def test_gpt_export_matches_transformers_logits(tmp_path, name):
    kw, arch = GPTS[name]
    torch.manual_seed(0)
    model = perturbed(GPT(GPTConfig(**BASE, **kw)))
    save_model(model, tmp_path / "ours")
    export_hf(tmp_path / "ours", tmp_path / "hf")
    hf, info = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf", output_loading_info=True)
    hf.eval()
    assert type(hf).__name__ == arch
    assert not info["missing_keys"] and not info["unexpected_keys"]
    x = torch.randint(0, 97, (2, 24))
    with torch.no_grad():
        ours, theirs = model(x)[0], hf(x).logits
    assert (ours - theirs).abs().max() <= TOL
    # and back: import gives our model again, bit for bit in its outputs
    back, cfg = import_hf(tmp_path / "hf")
    same = lambda c: {**c.to_dict(), "mlp_hidden": c.hidden()}  # noqa: E731  (None = the default width)
    assert same(cfg) == same(model.config)
    with torch.no_grad():
        assert (back.eval()(x)[0] - ours).abs().max() <= 1e-6
    if name == "llama-gqa":  # greedy decoding agrees with transformers.generate (their cache, ours)
        prompt = [5, 17, 42]
        mine = generate(model, prompt, SamplingConfig(max_new_tokens=12, temperature=0.0, top_k=None))
        out = hf.generate(torch.tensor([prompt]), max_new_tokens=12, do_sample=False, min_new_tokens=12,
                          pad_token_id=0)
        assert out[0, 3:].tolist() == mine


def test_bert_export_matches_all_three_transformers_classes(tmp_path):
    torch.manual_seed(0)
    model = perturbed(BERT(BertConfig(**BASE, dropout=0.0)))
    save_model(model, tmp_path / "ours")
    export_hf(tmp_path / "ours", tmp_path / "hf")
    x = torch.randint(1, 97, (2, 20))
    am = torch.ones_like(x)
    am[1, 14:] = 0
    tt = torch.zeros_like(x)
    tt[:, 9:] = 1
    with torch.no_grad():
        h = model.hidden_states(x, tt, am)
        real = am.bool()
        pre = transformers.BertForPreTraining.from_pretrained(tmp_path / "hf").eval()(
            input_ids=x, token_type_ids=tt, attention_mask=am)
        assert (pre.prediction_logits - model.mlm_logits(h))[real].abs().max() <= TOL
        assert (pre.seq_relationship_logits - model.nsp_logits(h)).abs().max() <= TOL
        mlm = transformers.BertForMaskedLM.from_pretrained(tmp_path / "hf").eval()(
            input_ids=x, token_type_ids=tt, attention_mask=am)
        assert (mlm.logits - model.mlm_logits(h))[real].abs().max() <= TOL
        base = transformers.BertModel.from_pretrained(tmp_path / "hf").eval()(
            input_ids=x, token_type_ids=tt, attention_mask=am)
        assert (base.last_hidden_state - h)[real].abs().max() <= TOL
        assert (base.pooler_output - model.pooled(h)).abs().max() <= TOL
    back, _ = import_hf(tmp_path / "hf")
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), back.state_dict().values()))


def test_import_of_a_transformers_saved_gpt2_and_bertmodel(tmp_path):
    """Checkpoints written by transformers itself (prefixes, tied keys) import and match."""
    torch.manual_seed(0)
    hf = transformers.GPT2LMHeadModel(transformers.GPT2Config(vocab_size=97, n_positions=32, n_embd=64, n_layer=2,
                                                              n_head=4, bos_token_id=0, eos_token_id=0)).eval()
    hf.save_pretrained(tmp_path / "gpt2")
    ours, _ = import_hf(tmp_path / "gpt2")
    x = torch.randint(0, 97, (1, 16))
    with torch.no_grad():
        assert (ours.eval()(x)[0] - hf(x).logits).abs().max() <= TOL
    bert = transformers.BertModel(transformers.BertConfig(vocab_size=97, hidden_size=64, num_hidden_layers=2,
                                                          num_attention_heads=4, intermediate_size=128,
                                                          max_position_embeddings=32)).eval()
    bert.save_pretrained(tmp_path / "bert")
    ours, cfg = import_hf(tmp_path / "bert")
    assert cfg.mlp_hidden == 128 and cfg.n_layer == 2
    with torch.no_grad():
        assert (ours.eval().hidden_states(x) - bert(x).last_hidden_state).abs().max() <= TOL
        assert (ours.pooled(ours.hidden_states(x)) - bert(x).pooler_output).abs().max() <= TOL


def test_cli_functions_and_layout_errors(tmp_path, capsys):
    model = GPT(GPTConfig(**BASE, positions="rope", norm="rmsnorm", mlp="swiglu"))
    (tmp_path / "tok").mkdir()
    (tmp_path / "tok" / "tokenizer.json").write_text("{}")
    save_model(model, tmp_path / "ours", extra_files=[tmp_path / "tok" / "tokenizer.json"])
    export(tmp_path / "ours", to="hf", output=tmp_path / "hf", verify=True, opset=None, with_cache=False, layout=None)
    assert json.loads((tmp_path / "hf" / "config.json").read_text())["architectures"] == ["LlamaForCausalLM"]
    assert (tmp_path / "hf" / "tokenizer.json").exists() and (tmp_path / "hf" / "tokenizer_config.json").exists()
    import_(tmp_path / "hf", output=tmp_path / "back")
    assert "GPT" in capsys.readouterr().out
    assert (tmp_path / "back" / "tokenizer.json").exists()
    assert load_model(tmp_path / "back").config.hidden() == model.config.hidden()
    with pytest.raises(ConfigError, match="GPT-2 layout"):
        export_hf(tmp_path / "ours", tmp_path / "x", layout="gpt2")
    with pytest.raises(ConfigError, match="cannot be exported"):
        export_hf(tmp_path / "ours", tmp_path / "x", layout="bert")
    with pytest.raises(ConfigError, match="unknown export format"):
        export(tmp_path / "ours", to="tflite", output=tmp_path / "x", verify=True, opset=None, with_cache=False,
               layout=None)
    (tmp_path / "pickled").mkdir()
    (tmp_path / "pickled" / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    (tmp_path / "pickled" / "pytorch_model.bin").write_bytes(b"not loaded")
    with pytest.raises(InputError, match="never loads"):
        import_hf(tmp_path / "pickled")
    (tmp_path / "t5").mkdir()
    (tmp_path / "t5" / "config.json").write_text(json.dumps({"model_type": "t5"}))
    with pytest.raises(InputError, match="not supported"):
        import_hf(tmp_path / "t5")


def test_cli_functions_mount_in_typer(tmp_path):
    """The lead mounts these as `lmforge export` / `lmforge import-hf`; check the annotations parse."""
    import typer
    from typer.testing import CliRunner

    app = typer.Typer()
    app.command("export")(export)
    app.command("import-hf")(import_)
    save_model(GPT(GPTConfig(**BASE)), tmp_path / "ours")
    runner = CliRunner()
    r = runner.invoke(app, ["export", "--to", "hf", str(tmp_path / "ours"), "--output", str(tmp_path / "hf")])
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "hf" / "config.json").read_text())["model_type"] == "gpt2"
    r = runner.invoke(app, ["import-hf", str(tmp_path / "hf"), "--output", str(tmp_path / "back")])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "back" / "model.safetensors").exists()
    assert "Example" in runner.invoke(app, ["export", "--help"]).output
