"""What an export holds: one traceable module per graph, with named inputs and outputs.

Every format (ONNX, TorchScript, torch.export) exports the same ``Graph`` objects, so what an input
means, its dynamic axes and the sample inputs used to trace and verify are decided here once.
Sample inputs come from the model's own tokenizer (real token ids), padded on the right with
``attention_mask`` 0, at several batch sizes and lengths including batch 1 and length 1.

Which graphs a model gets:
* encoders and their task heads, decoders: one graph ``model`` (ids, mask[, token types]) -> outputs;
* decoders with ``with_cache``: one graph ``model`` that also takes the past keys/values of every
  layer (``past_key_i``/``past_value_i``, past length 0 for the prompt) and returns ``present_*``;
* seq2seq: ``encoder`` (ids, mask) -> encoder_hidden_states and ``decoder`` (decoder_input_ids,
  encoder_hidden_states, mask) -> logits; run the encoder once, the decoder once per step.
A graph whose inputs come from another graph (encoder states) or from an earlier call (past keys)
has a ``feeds`` function that builds them with the eager model, so verification runs every graph
on the inputs it would really see.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn

from ..errors import ConfigError, InputError

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_meta.json", "tokenizer_config.json", "special_tokens_map.json",
                   "vocab.txt", "chat_template.json", "task.json")
SAMPLE_TEXTS = ["the cat sat on the mat", "a", "paris is the capital of france and rome of italy",
                "good film", "I loved every minute of it, truly a wonderful story"]
INPUTS = {"input_ids": "token ids from tokenizer.json (B, T), right-padded",
          "attention_mask": "1 = real token, 0 = padding (B, T)",
          "token_type_ids": "segment ids (B, T): 0 = first text, 1 = second (pairs, QA); zeros otherwise"}
INPUTS.update({
    "decoder_input_ids": "decoder token ids (B, T): decoder_start_token_id, then the target so far",
    "encoder_hidden_states": "the encoder graph's output (B, S, d_model) for the same sources",
    "past_attention_mask": "1 = real token, 0 = padding (B, past + T): cached tokens then new ones",
})
AXES = {n: {0: "batch", 1: "sequence"} for n in ("input_ids", "attention_mask", "token_type_ids")}
FLOAT_INPUTS = ("encoder_hidden_states", "past_key_", "past_value_")


class _Forward(nn.Module):
    """``model`` with a fixed positional signature (input_ids, attention_mask) and tuple outputs."""

    def __init__(self, model: nn.Module, fn: Callable):
        super().__init__()
        self.model, self._fn = model, fn

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor | None = None):
        return self._fn(self.model, input_ids, attention_mask, token_type_ids)


@dataclass
class Graph:
    """One exported graph: the module, its input/output names and what each output means."""

    name: str
    module: nn.Module
    inputs: list[str]
    outputs: list[str]
    meaning: dict[str, str]
    axes: dict[str, dict[int, str]] = field(default_factory=dict)
    # batch of tokenizer inputs -> the feeds this graph sees (default: the batch itself)
    feeds: Callable[[dict], list[dict]] | None = None
    input_meaning: dict[str, str] = field(default_factory=dict)
    static: dict[str, dict[int, int]] = field(default_factory=dict)  # fixed sizes between dynamic axes

    def describe(self) -> dict:
        def shape(n):
            return _shape({**self.static.get(n, {}), **self.axes.get(n, {})})

        return {"inputs": {n: {"shape": shape(n), "dtype": _dtype(n),
                               "meaning": self.input_meaning.get(n) or INPUTS[n]} for n in self.inputs},
                "outputs": {n: {"shape": shape(n), "meaning": self.meaning[n]} for n in self.outputs}}

    def feeds_for(self, batch: dict) -> list[dict]:
        return self.feeds(batch) if self.feeds is not None else [batch]

    def trace_inputs(self, batch: dict) -> tuple:
        """Positional sample inputs to trace with: the last (richest: past length > 0) feed of ``batch``."""
        feed = self.feeds_for(batch)[-1]
        return tuple(feed[n] for n in self.inputs)


def _dtype(name: str) -> str:
    return "float32" if name.startswith(FLOAT_INPUTS) else "int64"


def _shape(axes: dict[int, str | int]) -> list:
    return [axes[i] for i in sorted(axes)] if axes else []


def model_kind(model: nn.Module) -> str:
    """The config's model_type: sequence_classifier, token_classifier, span_extractor, bert, gpt, ..."""
    return model.config.to_dict().get("model_type", "gpt")


def _gpt_logits(m, ids, mask, tt):
    return (m(ids, attention_mask=mask)[0],)


def _bert_hidden(m, ids, mask, tt):
    return (m.hidden_states(ids, token_type_ids=tt, attention_mask=mask),)


def _classifier(m, ids, mask, tt):
    return (m(ids, attention_mask=mask, token_type_ids=tt)[0],)


def _tagger(m, ids, mask, tt):
    return (m(ids, attention_mask=mask, token_type_ids=tt),)


def _spans(m, ids, mask, tt):
    return tuple(m(ids, attention_mask=mask, token_type_ids=tt))


BT, BTV = {0: "batch", 1: "sequence"}, {0: "batch", 1: "sequence", 2: "vocab"}
# model_type -> (forward, output names, meanings, output axes)
KINDS: dict[str, tuple] = {
    "gpt": (_gpt_logits, ["logits"], {"logits": "next-token logits at every position (B, T, vocab)"},
            {"logits": BTV}),
    "bert": (_bert_hidden, ["hidden_states"], {"hidden_states": "last-layer hidden states (B, T, d_model)"},
             {"hidden_states": {0: "batch", 1: "sequence", 2: "d_model"}}),
    "sequence_classifier": (_classifier, ["logits"],
                            {"logits": "class logits (B, n_labels); softmax (single-label) or sigmoid "
                                       "(multi-label), labels in manifest order"},
                            {"logits": {0: "batch", 1: "labels"}}),
    "token_classifier": (_tagger, ["emissions"],
                         {"emissions": "per-token tag scores (B, T, n_labels); argmax, or with a CRF run "
                                       "its Viterbi decode (in Python, after the graph) on these"},
                         {"emissions": {0: "batch", 1: "sequence", 2: "labels"}}),
    "span_extractor": (_spans, ["start_logits", "end_logits"],
                       {"start_logits": "answer-start logits per token (B, T)",
                        "end_logits": "answer-end logits per token (B, T)"},
                       {"start_logits": BT, "end_logits": BT}),
}


def graphs_for(model: nn.Module, model_dir: Path | str = "", fmt: str = "", with_cache: bool = False) -> list[Graph]:
    """The graphs that represent ``model`` (eval mode, no dropout)."""
    kind = model_kind(model)
    model.eval()
    if kind == "seq2seq":
        if with_cache:
            raise ConfigError("--with-cache is supported for GPT decoders, not seq2seq models yet",
                              "export without it: the decoder graph takes the whole target so far")
        return _seq2seq_graphs(model)
    if with_cache:
        if kind != "gpt":
            raise ConfigError(f"--with-cache needs a GPT decoder; this is a '{kind}' model",
                              "export without --with-cache")
        return [_gpt_with_past(model)]
    if kind not in KINDS:
        raise InputError(f"{model_dir}: {fmt or 'this'} export does not support model_type '{kind}' yet",
                         f"supported: {', '.join(sorted(KINDS) + ['seq2seq'])}; "
                         "try `--to hf` for a Hugging Face layout")
    fn, outs, meaning, axes = KINDS[kind]
    body = getattr(model, "body", model)
    inputs = ["input_ids", "attention_mask"] + (["token_type_ids"] if model_kind(body) == "bert" else [])
    return [Graph("model", _Forward(model, fn).eval(), inputs, outs, meaning, {**AXES, **axes})]


# ---------------------------------------------------------------------------------------------
# seq2seq: an encoder graph and a decoder graph
# ---------------------------------------------------------------------------------------------


class _Encoder(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor):
        return (self.model.encode(input_ids, self.model.source_mask(input_ids, attention_mask)),)


class _Decoder(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, decoder_input_ids: torch.Tensor, encoder_hidden_states: torch.Tensor,
                attention_mask: torch.Tensor):
        mask = attention_mask.bool()[:, None, None, :]  # (B, 1, 1, S): which source tokens are real
        return (self.model.lm_head(self.model.decode(decoder_input_ids, encoder_hidden_states, mask)),)


def _seq2seq_graphs(model: nn.Module) -> list[Graph]:
    enc, dec = _Encoder(model).eval(), _Decoder(model).eval()
    start = model.config.decoder_start_token_id
    S = {0: "batch", 1: "source_sequence"}

    def dec_feeds(batch: dict) -> list[dict]:
        ids, mask = batch["input_ids"], batch["attention_mask"]
        with torch.no_grad():
            memory = enc(ids, mask)[0]
        # a real target: the source tokens themselves after the start token, one shorter than the
        # source (different lengths, so no exporter can mistake one axis for the other)
        tgt = torch.cat([torch.full_like(ids[:, :1], start), ids[:, : max(ids.shape[1] - 2, 0)]], dim=1)
        return [{"decoder_input_ids": tgt, "encoder_hidden_states": memory, "attention_mask": mask}]

    return [
        Graph("encoder", enc, ["input_ids", "attention_mask"], ["encoder_hidden_states"],
              {"encoder_hidden_states": "encoder output (B, S, d_model); feed it to the decoder graph"},
              {"input_ids": S, "attention_mask": S, "encoder_hidden_states": {**S, 2: "d_model"}},
              input_meaning={"input_ids": "source token ids (B, S), right-padded",
                             "attention_mask": "1 = real source token, 0 = padding (B, S)"}),
        Graph("decoder", dec, ["decoder_input_ids", "encoder_hidden_states", "attention_mask"], ["logits"],
              {"logits": "next-token logits at every target position (B, T, vocab); greedy: argmax of the last"},
              {"decoder_input_ids": {0: "batch", 1: "target_sequence"}, "encoder_hidden_states": {**S, 2: "d_model"},
               "attention_mask": S, "logits": {0: "batch", 1: "target_sequence", 2: "vocab"}},
              feeds=dec_feeds,
              input_meaning={"attention_mask": "the encoder's attention_mask (B, S): 1 = real source token"}),
    ]


# ---------------------------------------------------------------------------------------------
# GPT with past keys/values in and present keys/values out
# ---------------------------------------------------------------------------------------------


class _GPTWithPast(nn.Module):
    """(input_ids, attention_mask, past_key_0, past_value_0, ...) -> (logits, present_key_0, ...).

    Past tensors are (B, n_kv_head, P, head_dim), keys after RoPE, exactly the eager ``KVCache``
    contents; P = 0 for the prompt. ``attention_mask`` covers past and new tokens (B, P + T).
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.n_layer = model.config.n_layer

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, *past: torch.Tensor):
        from ..models.layers import KVCache

        cache = KVCache(self.n_layer)
        cache.k, cache.v = list(past[0::2]), list(past[1::2])
        logits = self.model(input_ids, attention_mask=attention_mask, cache=cache)[0]
        return (logits, *[t for i in range(self.n_layer) for t in (cache.k[i], cache.v[i])])


def cache_shape(model: nn.Module) -> dict:
    """n_layer, n_kv_head, head_dim of a GPT's cache (heads may have been pruned)."""
    a = model.blocks[0].attn
    return {"n_layer": model.config.n_layer, "n_kv_head": a.n_kv_head, "head_dim": a.head_dim}


def empty_past(model: nn.Module, batch: int) -> list[torch.Tensor]:
    c = cache_shape(model)
    return [torch.zeros(batch, c["n_kv_head"], 0, c["head_dim"]) for _ in range(2 * c["n_layer"])]


def _gpt_with_past(model: nn.Module) -> Graph:
    wrapper = _GPTWithPast(model).eval()
    L = model.config.n_layer
    past_names = [f"past_{kv}_{i}" for i in range(L) for kv in ("key", "value")]
    present_names = [f"present_{kv}_{i}" for i in range(L) for kv in ("key", "value")]
    shape_note = "(B, n_kv_head, {}, head_dim){}"
    axes = {"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "total_sequence"},
            "logits": BTV}
    axes.update({n: {0: "batch", 2: "past_sequence"} for n in past_names})
    axes.update({n: {0: "batch", 2: "total_sequence"} for n in present_names})
    meaning = {"logits": "next-token logits for the new tokens (B, T, vocab)"}
    meaning.update({n: f"layer {n.rsplit('_', 1)[1]} {n.split('_')[1]}s of past + new tokens "
                       + shape_note.format("P + T", "; pass back as past_* next step") for n in present_names})
    in_meaning = {n: f"layer {n.rsplit('_', 1)[1]} cached {n.split('_')[1]}s "
                     + shape_note.format("P", ", keys after RoPE; P = 0 (empty) for the prompt") for n in past_names}
    in_meaning["attention_mask"] = INPUTS["past_attention_mask"]

    def step(ids, mask, past):
        with torch.no_grad():
            out = wrapper(ids, mask, *past)
        return {"input_ids": ids, "attention_mask": mask, **dict(zip(past_names, past))}, list(out[1:])

    def feeds(batch: dict) -> list[dict]:
        ids, mask = batch["input_ids"], batch["attention_mask"]
        B, T = ids.shape
        full, _ = step(ids, mask, empty_past(model, B))  # the prompt in one go: past length 0
        out = [full]
        if T >= 2:  # prompt of T - 1 tokens, then one new token (sequence length 1) on a cache
            _, present = step(ids[:, :-1], mask[:, :-1], empty_past(model, B))
            out.append(step(ids[:, -1:], mask, present)[0])
        if T >= 4:  # half, then the other half: several new tokens on a cache
            h = T // 2
            _, present = step(ids[:, :h], mask[:, :h], empty_past(model, B))
            out.append(step(ids[:, h:], mask, present)[0])
        return out

    c = cache_shape(model)
    static = {n: {1: c["n_kv_head"], 3: c["head_dim"]} for n in past_names + present_names}
    return Graph("model", wrapper, ["input_ids", "attention_mask", *past_names], ["logits", *present_names],
                 meaning, axes, feeds=feeds, input_meaning=in_meaning, static=static)


def sample_batches(tok, vocab_size: int, block_size: int) -> list[dict[str, torch.Tensor]]:
    """Real tokenizer inputs: batch 1 length 1, batch 1, and padded batches of 2 and 5."""
    rows = [ids[: block_size] or [1] for ids in (tok.encode_batch(SAMPLE_TEXTS) if tok is not None else
            [[(7 * i + j) % vocab_size for j in range(3 + 2 * i)] for i in range(len(SAMPLE_TEXTS))])]
    out = [_pad([rows[0][:1]]), _pad([rows[0]]), _pad([rows[0], rows[2]]), _pad(rows)]
    return out


def _pad(rows: list[list[int]]) -> dict[str, torch.Tensor]:
    T = max(len(r) for r in rows)
    ids = torch.tensor([r + [0] * (T - len(r)) for r in rows], dtype=torch.long)
    mask = torch.tensor([[1] * len(r) + [0] * (T - len(r)) for r in rows], dtype=torch.long)
    # segment 1 on the second half of each row's tokens (a sentence pair, as QA and NSP use it)
    types = torch.tensor([[int(j >= len(r) // 2 and j < len(r) and len(r) > 1) for j in range(T)] for r in rows])
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}


def load_for_export(model_dir: str | Path):
    """(model in eval mode, tokenizer or None, config dict, task.json dict or None)."""
    from ..models.io import load_model, read_config_dict

    model_dir = Path(model_dir)
    cfg = read_config_dict(model_dir)
    model = load_model(model_dir).eval()
    tok = None
    if (model_dir / "tokenizer.json").exists():
        from ..tokenizer.tok import Tok

        tok = Tok.load(model_dir)
    task = json.loads((model_dir / "task.json").read_text()) if (model_dir / "task.json").exists() else None
    return model, tok, cfg, task


def body_limits(model: nn.Module) -> tuple[int, int]:
    """(vocab_size, block_size) of the model's body."""
    body = getattr(model, "body", model)
    return body.config.vocab_size, body.config.block_size


def write_manifest(out: Path, fmt: str, files: dict[str, str], graphs: list[Graph], cfg: dict,
                   task: dict | None, extra: dict, model: nn.Module | None = None) -> None:
    """``export.json``: enough to run the graphs without lmforge's model code: the model's config
    (sizes, block_size), labels, each graph's inputs/outputs, and a CRF's transition scores (its
    Viterbi decode runs after the graph, so a runtime needs them)."""
    labels = cfg.get("labels")
    crf = getattr(model, "crf", None) if model is not None else None
    if crf is not None:
        extra = {**extra, "crf": {"transitions": crf.transitions.detach().tolist(), "start": crf.start.detach().tolist(),
                                  "end": crf.end.detach().tolist(),
                                  "layout": "transitions[from][to]; score = start[y0] + sum emissions + transitions + end[yT]"}}
    manifest = {"format": fmt, "files": files, "model_type": cfg.get("model_type"), "config": cfg,
                "task": (task or {}).get("config", {}).get("kind"), "labels": labels,
                "multi_label": bool((task or {}).get("config", {}).get("multi_label", False)),
                "graphs": {g.name: g.describe() for g in graphs}, "torch": torch.__version__,
                "padding": "right; attention_mask 1 = token, 0 = padding", **extra}
    (out / "export.json").write_text(json.dumps(manifest, indent=2) + "\n")


def copy_tokenizer(model_dir: Path, out: Path) -> None:
    import shutil

    for name in TOKENIZER_FILES:
        if (Path(model_dir) / name).exists():
            shutil.copy2(Path(model_dir) / name, out / name)


def cache_info(model: nn.Module, with_cache: bool) -> dict:
    """The manifest's ``cache`` record (only for --with-cache exports)."""
    if not with_cache:
        return {}
    return {"cache": {**cache_shape(model), "layout": "past_key_i / past_value_i: (batch, n_kv_head, past_sequence, "
                      "head_dim), keys after RoPE; start with past_sequence 0; attention_mask covers past + new "
                      "tokens; feed present_* back as past_* on the next call"}}
