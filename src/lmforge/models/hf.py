"""Hugging Face interop at the boundary: our models <-> GPT-2, LLaMA and BERT checkpoint layouts.

Internals stay plain PyTorch; this file only renames and reshapes tensors (torchtune's approach).
Nothing here imports ``transformers``: an export is ``config.json`` + ``model.safetensors`` in the
layout ``from_pretrained`` expects, and an import reads those files (safetensors only, never pickle).

Layouts
- ``gpt2``: ``GPT2LMHeadModel``. Conv1D weights are stored (in, out), so linear weights are
  transposed; q/k/v are fused into ``c_attn``. Needs learned positions, LayerNorm, GELU, biases, MHA.
- ``llama``: ``LlamaForCausalLM``. RoPE in the half-split layout (the same as ours, so no
  permutation), RMSNorm, SwiGLU, grouped-query attention, untied or tied head.
- ``bert``: ``BertForPreTraining`` (it also loads as ``BertModel`` and ``BertForMaskedLM``).
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import safetensors.torch
import torch

from ..errors import ConfigError, InputError
from ..runs import atomic_dir, atomic_write_json
from .bert import BERT, BertConfig
from .gpt import GPT, GPTConfig
from .io import load_model

log = logging.getLogger(__name__)
LAYOUTS = ("gpt2", "llama", "bert")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")


# ---------------------------------------------------------------------------------------------
# Export


def _split_kv(attn, prefix: str, sd: dict) -> tuple:
    """(k weight, v weight, k bias, v bias) from our fused kv_proj."""
    w, b = sd[f"{prefix}.kv_proj.weight"], sd.get(f"{prefix}.kv_proj.bias")
    n = attn.n_kv_head * attn.head_dim
    return w[:n], w[n:], (None if b is None else b[:n]), (None if b is None else b[n:])


def _gpt2_export(model: GPT) -> tuple[dict, dict]:
    c = model.config
    problems = [msg for bad, msg in [
        (c.positions != "learned", "positions=learned"), (c.norm != "layernorm", "norm=layernorm"),
        (c.mlp != "gelu", "mlp=gelu"), (not c.bias, "bias=true"),
        (c.n_kv_head not in (None, c.n_head), "n_kv_head=n_head")] if bad]
    if problems:
        raise ConfigError(f"this GPT cannot be written in the GPT-2 layout (needs {', '.join(problems)})",
                          "use --layout llama for RoPE/RMSNorm/SwiGLU/GQA models")
    sd = model.state_dict()
    t = {"transformer.wte.weight": sd["wte.weight"], "transformer.wpe.weight": sd["wpe.weight"]}
    for i, block in enumerate(model.blocks):
        p, h = f"blocks.{i}", f"transformer.h.{i}"
        kw, vw, kb, vb = _split_kv(block.attn, f"{p}.attn", sd)
        t[f"{h}.attn.c_attn.weight"] = torch.cat([sd[f"{p}.attn.q_proj.weight"], kw, vw]).T
        t[f"{h}.attn.c_attn.bias"] = torch.cat([sd[f"{p}.attn.q_proj.bias"], kb, vb])
        t[f"{h}.attn.c_proj.weight"] = sd[f"{p}.attn.o_proj.weight"].T
        t[f"{h}.attn.c_proj.bias"] = sd[f"{p}.attn.o_proj.bias"]
        t[f"{h}.mlp.c_fc.weight"] = sd[f"{p}.mlp.up.weight"].T
        t[f"{h}.mlp.c_fc.bias"] = sd[f"{p}.mlp.up.bias"]
        t[f"{h}.mlp.c_proj.weight"] = sd[f"{p}.mlp.down.weight"].T
        t[f"{h}.mlp.c_proj.bias"] = sd[f"{p}.mlp.down.bias"]
        for ln in ("ln_1", "ln_2"):
            t[f"{h}.{ln}.weight"], t[f"{h}.{ln}.bias"] = sd[f"{p}.{ln}.weight"], sd[f"{p}.{ln}.bias"]
    t["transformer.ln_f.weight"], t["transformer.ln_f.bias"] = sd["ln_f.weight"], sd["ln_f.bias"]
    if not c.tie_embeddings:
        t["lm_head.weight"] = sd["lm_head.weight"]
    cfg = {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "vocab_size": c.vocab_size,
           "n_positions": c.block_size, "n_embd": c.d_model, "n_layer": c.n_layer, "n_head": c.n_head,
           "n_inner": c.hidden(), "activation_function": "gelu_new", "layer_norm_epsilon": c.norm_eps,
           "resid_pdrop": c.dropout, "embd_pdrop": c.dropout, "attn_pdrop": c.dropout,
           "tie_word_embeddings": c.tie_embeddings, "bos_token_id": None, "eos_token_id": None}
    return t, cfg


def _llama_export(model: GPT) -> tuple[dict, dict]:
    c = model.config
    problems = [msg for bad, msg in [(c.positions != "rope", "positions=rope"), (c.norm != "rmsnorm", "norm=rmsnorm"),
                                     (c.mlp != "swiglu", "mlp=swiglu")] if bad]
    if problems:
        raise ConfigError(f"this GPT cannot be written in the LLaMA layout (needs {', '.join(problems)})",
                          "use --layout gpt2 for learned-position/LayerNorm/GELU models")
    sd = model.state_dict()
    t = {"model.embed_tokens.weight": sd["wte.weight"]}
    for i, block in enumerate(model.blocks):
        p, h = f"blocks.{i}", f"model.layers.{i}"
        kw, vw, kb, vb = _split_kv(block.attn, f"{p}.attn", sd)
        t[f"{h}.self_attn.q_proj.weight"], t[f"{h}.self_attn.k_proj.weight"] = sd[f"{p}.attn.q_proj.weight"], kw
        t[f"{h}.self_attn.v_proj.weight"] = vw
        t[f"{h}.self_attn.o_proj.weight"] = sd[f"{p}.attn.o_proj.weight"]
        for ours, theirs in (("gate", "gate_proj"), ("up", "up_proj"), ("down", "down_proj")):
            t[f"{h}.mlp.{theirs}.weight"] = sd[f"{p}.mlp.{ours}.weight"]
            if c.bias:
                t[f"{h}.mlp.{theirs}.bias"] = sd[f"{p}.mlp.{ours}.bias"]
        if c.bias:
            t[f"{h}.self_attn.q_proj.bias"], t[f"{h}.self_attn.k_proj.bias"] = sd[f"{p}.attn.q_proj.bias"], kb
            t[f"{h}.self_attn.v_proj.bias"], t[f"{h}.self_attn.o_proj.bias"] = vb, sd[f"{p}.attn.o_proj.bias"]
        t[f"{h}.input_layernorm.weight"] = sd[f"{p}.ln_1.weight"]
        t[f"{h}.post_attention_layernorm.weight"] = sd[f"{p}.ln_2.weight"]
    t["model.norm.weight"] = sd["ln_f.weight"]
    if not c.tie_embeddings:
        t["lm_head.weight"] = sd["lm_head.weight"]
    cfg = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": c.vocab_size,
           "hidden_size": c.d_model, "intermediate_size": c.hidden(), "num_hidden_layers": c.n_layer,
           "num_attention_heads": c.n_head, "num_key_value_heads": c.n_kv_head or c.n_head,
           "head_dim": c.d_model // c.n_head, "max_position_embeddings": c.block_size, "hidden_act": "silu",
           "rms_norm_eps": c.norm_eps, "rope_theta": c.rope_base,
           "rope_parameters": {"rope_type": "default", "rope_theta": c.rope_base},
           "attention_bias": c.bias, "mlp_bias": c.bias, "attention_dropout": c.dropout,
           "tie_word_embeddings": c.tie_embeddings, "bos_token_id": None, "eos_token_id": None}
    return t, cfg


_BERT_LAYER = [  # (ours, theirs) under blocks.i / encoder.layer.i
    ("attn.q_proj", "attention.self.query"), ("attn.o_proj", "attention.output.dense"),
    ("ln_1", "attention.output.LayerNorm"), ("mlp.up", "intermediate.dense"),
    ("mlp.down", "output.dense"), ("ln_2", "output.LayerNorm")]
_BERT_TOP = [("wte", "bert.embeddings.word_embeddings"), ("wpe", "bert.embeddings.position_embeddings"),
             ("wtt", "bert.embeddings.token_type_embeddings"), ("ln_emb", "bert.embeddings.LayerNorm"),
             ("pooler", "bert.pooler.dense"), ("mlm_dense", "cls.predictions.transform.dense"),
             ("mlm_ln", "cls.predictions.transform.LayerNorm"), ("nsp_head", "cls.seq_relationship")]


def _bert_export(model: BERT) -> tuple[dict, dict]:
    c = model.config
    sd = model.state_dict()
    t = {}
    for ours, theirs in _BERT_TOP:
        for k in ("weight", "bias"):
            if f"{ours}.{k}" in sd:
                t[f"{theirs}.{k}"] = sd[f"{ours}.{k}"]
    for i, block in enumerate(model.blocks):
        p, h = f"blocks.{i}", f"bert.encoder.layer.{i}"
        for ours, theirs in _BERT_LAYER:
            t[f"{h}.{theirs}.weight"], t[f"{h}.{theirs}.bias"] = sd[f"{p}.{ours}.weight"], sd[f"{p}.{ours}.bias"]
        kw, vw, kb, vb = _split_kv(block.attn, f"{p}.attn", sd)
        t[f"{h}.attention.self.key.weight"], t[f"{h}.attention.self.key.bias"] = kw, kb
        t[f"{h}.attention.self.value.weight"], t[f"{h}.attention.self.value.bias"] = vw, vb
    t["cls.predictions.bias"] = sd["mlm_head.bias"]
    if not c.tie_embeddings:
        t["cls.predictions.decoder.weight"] = sd["mlm_head.weight"]
    cfg = {"architectures": ["BertForPreTraining"], "model_type": "bert", "vocab_size": c.vocab_size,
           "hidden_size": c.d_model, "num_hidden_layers": c.n_layer, "num_attention_heads": c.n_head,
           "intermediate_size": c.hidden(), "hidden_act": "gelu", "hidden_dropout_prob": c.dropout,
           "attention_probs_dropout_prob": c.dropout, "max_position_embeddings": c.block_size,
           "type_vocab_size": c.type_vocab_size, "layer_norm_eps": c.norm_eps, "pad_token_id": c.pad_token_id,
           "position_embedding_type": "absolute", "tie_word_embeddings": c.tie_embeddings}
    return t, cfg


def default_layout(model) -> str:
    if isinstance(model, BERT):
        return "bert"
    if isinstance(model, GPT):
        return "llama" if model.config.positions == "rope" else "gpt2"
    raise ConfigError(f"no Hugging Face layout for a {type(model).__name__} model",
                      "HF export covers GPT (gpt2/llama layouts) and BERT; save seq2seq models with save_model")


def export_hf(model_dir: str | Path, out_dir: str | Path, layout: str | None = None) -> Path:
    """Write ``model_dir`` (an lmforge model) as a Hugging Face model directory in ``layout``.

    ``layout`` is "gpt2", "llama" or "bert" (default: chosen from the model). Tokenizer files next to
    the model are copied; the result loads with ``AutoModel*.from_pretrained(out_dir)``.
    """
    model = load_model(model_dir)
    layout = layout or default_layout(model)
    if layout not in LAYOUTS:
        raise ConfigError(f"unknown layout '{layout}'", f"use one of {', '.join(LAYOUTS)}")
    wants = BERT if layout == "bert" else GPT
    if not isinstance(model, wants):
        raise ConfigError(f"a {type(model).__name__} model cannot be exported in the {layout} layout",
                          f"use --layout {default_layout(model)}")
    tensors, hf_cfg = {"gpt2": _gpt2_export, "llama": _llama_export, "bert": _bert_export}[layout](model)
    tensors = {k: v.detach().contiguous().clone() for k, v in tensors.items()}
    with atomic_dir(out_dir) as tmp:
        safetensors.torch.save_file(tensors, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        atomic_write_json(tmp / "config.json", {**hf_cfg, "torch_dtype": "float32"})
        copied = [f for f in TOKENIZER_FILES if (Path(model_dir) / f).exists()]
        for f in copied:
            shutil.copy2(Path(model_dir) / f, tmp / f)
        if "tokenizer.json" in copied and "tokenizer_config.json" not in copied:
            atomic_write_json(tmp / "tokenizer_config.json", {"tokenizer_class": "PreTrainedTokenizerFast"})
    return Path(out_dir)


# ---------------------------------------------------------------------------------------------
# Import


def read_hf_weights(hf_dir: Path) -> dict[str, torch.Tensor]:
    """All tensors of a HF checkpoint: ``model.safetensors`` or a sharded safetensors index."""
    single, index = hf_dir / "model.safetensors", hf_dir / "model.safetensors.index.json"
    if single.exists():
        return safetensors.torch.load_file(str(single))
    if index.exists():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        return {k: v for s in shards for k, v in safetensors.torch.load_file(str(hf_dir / s)).items()}
    if any(hf_dir.glob("*.bin")):
        raise InputError(f"{hf_dir} has only pickle (.bin) weights, which lmforge never loads",
                         "convert them to safetensors first (transformers: save_pretrained(..., safe_serialization=True))")
    raise InputError(f"no model.safetensors in {hf_dir}", "point at a Hugging Face model directory")


def _strip(tensors: dict, prefix: str) -> dict:
    """Drop a base-model prefix ("transformer.", "model.", "bert.") where the checkpoint has it."""
    return {k[len(prefix):] if k.startswith(prefix) else k: v for k, v in tensors.items()}


def _load(model, sd: dict, optional: tuple[str, ...] = ()) -> None:
    result = model.load_state_dict(sd, strict=False)
    tied = {"lm_head.weight", "mlm_head.weight"} if getattr(model.config, "tie_embeddings", False) else set()
    missing = [k for k in result.missing_keys if k not in tied]
    required = [k for k in missing if not k.startswith(optional)]
    if required or result.unexpected_keys:
        raise InputError("Hugging Face weights do not match the converted model",
                         f"missing={required[:5]} unexpected={result.unexpected_keys[:5]}")
    if missing:
        log.info("not in the checkpoint, left at their initial values: %s", missing)


def _gpt2_import(hc: dict, t: dict) -> GPT:
    act = hc.get("activation_function", "gelu_new")
    if act not in ("gelu_new", "gelu_pytorch_tanh") or hc.get("scale_attn_by_inverse_layer_idx") \
            or hc.get("reorder_and_upcast_attn"):
        raise InputError(f"unsupported GPT-2 variant (activation {act}, or scaled/reordered attention)")
    d, n_head = hc["n_embd"], hc["n_head"]
    cfg = GPTConfig(vocab_size=hc["vocab_size"], block_size=hc["n_positions"], n_layer=hc["n_layer"],
                    n_head=n_head, d_model=d, mlp_hidden=hc.get("n_inner") or 4 * d, positions="learned",
                    norm="layernorm", mlp="gelu", tie_embeddings=hc.get("tie_word_embeddings", True), bias=True,
                    norm_eps=hc.get("layer_norm_epsilon", 1e-5))
    t = _strip(t, "transformer.")
    sd = {"wte.weight": t["wte.weight"], "wpe.weight": t["wpe.weight"],
          "ln_f.weight": t["ln_f.weight"], "ln_f.bias": t["ln_f.bias"]}
    for i in range(cfg.n_layer):
        p, h = f"blocks.{i}", f"h.{i}"
        w, b = t[f"{h}.attn.c_attn.weight"].T, t[f"{h}.attn.c_attn.bias"]
        sd[f"{p}.attn.q_proj.weight"], sd[f"{p}.attn.kv_proj.weight"] = w[:d], w[d:]
        sd[f"{p}.attn.q_proj.bias"], sd[f"{p}.attn.kv_proj.bias"] = b[:d], b[d:]
        sd[f"{p}.attn.o_proj.weight"], sd[f"{p}.attn.o_proj.bias"] = t[f"{h}.attn.c_proj.weight"].T, t[f"{h}.attn.c_proj.bias"]
        sd[f"{p}.mlp.up.weight"], sd[f"{p}.mlp.up.bias"] = t[f"{h}.mlp.c_fc.weight"].T, t[f"{h}.mlp.c_fc.bias"]
        sd[f"{p}.mlp.down.weight"], sd[f"{p}.mlp.down.bias"] = t[f"{h}.mlp.c_proj.weight"].T, t[f"{h}.mlp.c_proj.bias"]
        for ln in ("ln_1", "ln_2"):
            sd[f"{p}.{ln}.weight"], sd[f"{p}.{ln}.bias"] = t[f"{h}.{ln}.weight"], t[f"{h}.{ln}.bias"]
    if not cfg.tie_embeddings:
        sd["lm_head.weight"] = t["lm_head.weight"]
    model = GPT(cfg)
    _load(model, {k: v.contiguous() for k, v in sd.items()})
    return model


def _llama_import(hc: dict, t: dict) -> GPT:
    rope = hc.get("rope_parameters") or hc.get("rope_scaling") or {}
    if hc.get("hidden_act", "silu") != "silu" or rope.get("rope_type", rope.get("type", "default")) != "default":
        raise InputError("unsupported LLaMA variant (activation other than silu, or scaled RoPE)")
    d, n_head = hc["hidden_size"], hc["num_attention_heads"]
    if hc.get("head_dim") not in (None, d // n_head):
        raise InputError(f"head_dim={hc['head_dim']} differs from hidden_size/num_attention_heads")
    bias = bool(hc.get("attention_bias") or hc.get("mlp_bias"))
    cfg = GPTConfig(vocab_size=hc["vocab_size"], block_size=hc.get("max_position_embeddings", 2048),
                    n_layer=hc["num_hidden_layers"], n_head=n_head,
                    n_kv_head=hc.get("num_key_value_heads") or n_head, d_model=d,
                    mlp_hidden=hc["intermediate_size"], positions="rope", norm="rmsnorm", mlp="swiglu",
                    tie_embeddings=hc.get("tie_word_embeddings", False), bias=bias,
                    norm_eps=hc.get("rms_norm_eps", 1e-6), rope_base=rope.get("rope_theta", hc.get("rope_theta", 10000.0)))
    t = _strip(t, "model.")
    model = GPT(cfg)
    zeros = {k: torch.zeros_like(v) for k, v in model.state_dict().items() if k.endswith(".bias")}
    sd = {"wte.weight": t["embed_tokens.weight"], "ln_f.weight": t["norm.weight"]}
    for i in range(cfg.n_layer):
        p, h = f"blocks.{i}", f"layers.{i}.self_attn"
        sd[f"{p}.attn.q_proj.weight"] = t[f"{h}.q_proj.weight"]
        sd[f"{p}.attn.kv_proj.weight"] = torch.cat([t[f"{h}.k_proj.weight"], t[f"{h}.v_proj.weight"]])
        sd[f"{p}.attn.o_proj.weight"] = t[f"{h}.o_proj.weight"]
        for ours, theirs in (("gate", "gate_proj"), ("up", "up_proj"), ("down", "down_proj")):
            sd[f"{p}.mlp.{ours}.weight"] = t[f"layers.{i}.mlp.{theirs}.weight"]
            if bias:  # a missing bias (attention_bias without mlp_bias, or the reverse) is a zero bias
                sd[f"{p}.mlp.{ours}.bias"] = t.get(f"layers.{i}.mlp.{theirs}.bias", zeros[f"{p}.mlp.{ours}.bias"])
        if bias:
            get = lambda name, ours: t.get(f"{h}.{name}.bias", zeros[ours])  # noqa: E731
            sd[f"{p}.attn.q_proj.bias"] = get("q_proj", f"{p}.attn.q_proj.bias")
            n = model.blocks[i].attn.n_kv_head * model.blocks[i].attn.head_dim
            kb = t.get(f"{h}.k_proj.bias", torch.zeros(n))
            vb = t.get(f"{h}.v_proj.bias", torch.zeros(n))
            sd[f"{p}.attn.kv_proj.bias"] = torch.cat([kb, vb])
            sd[f"{p}.attn.o_proj.bias"] = get("o_proj", f"{p}.attn.o_proj.bias")
        sd[f"{p}.ln_1.weight"] = t[f"layers.{i}.input_layernorm.weight"]
        sd[f"{p}.ln_2.weight"] = t[f"layers.{i}.post_attention_layernorm.weight"]
    if not cfg.tie_embeddings:
        sd["lm_head.weight"] = t["lm_head.weight"]
    _load(model, sd)
    return model


def _bert_import(hc: dict, t: dict) -> BERT:
    if hc.get("hidden_act", "gelu") != "gelu" or hc.get("position_embedding_type", "absolute") != "absolute":
        raise InputError("unsupported BERT variant (activation other than gelu, or relative positions)")
    cfg = BertConfig(vocab_size=hc["vocab_size"], block_size=hc.get("max_position_embeddings", 512),
                     n_layer=hc["num_hidden_layers"], n_head=hc["num_attention_heads"], d_model=hc["hidden_size"],
                     mlp_hidden=hc["intermediate_size"], type_vocab_size=hc.get("type_vocab_size", 2),
                     norm_eps=hc.get("layer_norm_eps", 1e-12), dropout=hc.get("hidden_dropout_prob", 0.1),
                     pad_token_id=hc.get("pad_token_id") or 0, tie_embeddings=hc.get("tie_word_embeddings", True))
    t = {k if k.startswith(("bert.", "cls.")) else f"bert.{k}": v for k, v in t.items()}
    # old checkpoints name LayerNorm parameters gamma/beta
    t = {k.replace("LayerNorm.gamma", "LayerNorm.weight").replace("LayerNorm.beta", "LayerNorm.bias"): v
         for k, v in t.items()}
    sd = {}
    for ours, theirs in _BERT_TOP:
        for k in ("weight", "bias"):
            if f"{theirs}.{k}" in t:
                sd[f"{ours}.{k}"] = t[f"{theirs}.{k}"]
    for i in range(cfg.n_layer):
        p, h = f"blocks.{i}", f"bert.encoder.layer.{i}"
        for ours, theirs in _BERT_LAYER:
            sd[f"{p}.{ours}.weight"], sd[f"{p}.{ours}.bias"] = t[f"{h}.{theirs}.weight"], t[f"{h}.{theirs}.bias"]
        s = f"{h}.attention.self"
        sd[f"{p}.attn.kv_proj.weight"] = torch.cat([t[f"{s}.key.weight"], t[f"{s}.value.weight"]])
        sd[f"{p}.attn.kv_proj.bias"] = torch.cat([t[f"{s}.key.bias"], t[f"{s}.value.bias"]])
    bias = t.get("cls.predictions.bias", t.get("cls.predictions.decoder.bias"))
    if bias is not None:
        sd["mlm_head.bias"] = bias
    if not cfg.tie_embeddings and "cls.predictions.decoder.weight" in t:
        sd["mlm_head.weight"] = t["cls.predictions.decoder.weight"]
    model = BERT(cfg)
    # BertModel has no heads and BertForMaskedLM no pooler/NSP head: those stay freshly initialised
    _load(model, sd, optional=("pooler.", "mlm_", "nsp_head."))
    return model


def import_hf(hf_dir: str | Path) -> tuple[torch.nn.Module, object]:
    """Read a Hugging Face GPT-2, LLaMA or BERT directory; returns ``(model, config)``."""
    hf_dir = Path(hf_dir)
    cfg_path = hf_dir / "config.json"
    if not cfg_path.exists():
        raise InputError(f"no config.json in {hf_dir}", "point at a Hugging Face model directory")
    hc = json.loads(cfg_path.read_text())
    kind = hc.get("model_type")
    readers = {"gpt2": _gpt2_import, "llama": _llama_import, "bert": _bert_import}
    if kind not in readers:
        raise InputError(f"model_type '{kind}' is not supported for import", f"supported: {', '.join(readers)}")
    model = readers[kind](hc, read_hf_weights(hf_dir))
    return model, model.config
