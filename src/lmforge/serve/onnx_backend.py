"""``lmforge serve`` for a directory written by ``lmforge export --to onnx``: the graph runs in onnxruntime.

``OnnxModel`` quacks like the torch module a task's ``predict(model, batch, tok, features)`` and
``loading.embed_batch`` call: ``model(input_ids, attention_mask[, token_type_ids])`` answers what the
PyTorch head answers (``(logits, None)`` for a sequence classifier, emissions for a token classifier,
``(start, end)`` for a span extractor) and ``hidden_states(...)`` what a BERT body does, as CPU torch
tensors, so every endpoint runs the same task code on the same numbers as the PyTorch model.

What the export directory gives: ``export.json`` (format, graph files and their inputs, model_type,
task kind, labels), ``model.onnx``, the tokenizer files and ``task.json`` (copied by the export), so
the task is rebuilt exactly as ``lmforge predict`` rebuilds it. Served: classification (incl.
multi-label), NER without a CRF, extractive QA, and plain BERT encoders (``/v1/embeddings``).
Not served (a clear error at load, pointing at the PyTorch directory): decoders and chat models (the
generation engine needs a model that fills its KV cache), seq2seq (translation, summarization) and
NER with a CRF (the export holds the emissions graph, not the CRF's transition scores).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from ..errors import ConfigError, InputError
from .registry import ServedModel

MANIFEST = "export.json"
# model_type -> task kinds it serves (None: no task.json, a plain encoder)
SERVED = {"sequence_classifier": ("classification",), "token_classifier": ("ner",), "span_extractor": ("qa",),
          "bert": (None,)}
PYTORCH_HINT = "serve the PyTorch model directory the export was made from (lmforge serve NAME=MODEL_DIR)"


def is_export_dir(path: Path) -> bool:
    return (Path(path) / MANIFEST).is_file()


class _Config:
    """The few config fields the server reads (``vocab_size``, ``block_size``, ``d_model``)."""

    def __init__(self, d: dict):
        self._d = dict(d)
        for k, v in self._d.items():
            setattr(self, k, v)

    def to_dict(self) -> dict:
        return dict(self._d)


class OnnxModel:
    """An onnxruntime session that answers like the PyTorch model it was exported from (eval mode, CPU)."""

    recurrent = False
    crf = None  # NER with a CRF: set from the manifest's transition scores at load
    training = False

    def __init__(self, path: Path, model_type: str, outputs: list[str], config: dict | None = None):
        from ..export.onnx import ort_session

        try:
            self.session = ort_session(path, threads=torch.get_num_threads())
        except ConfigError:
            raise
        except Exception as err:  # onnxruntime raises its own exception types for unreadable graphs
            raise InputError(f"onnxruntime cannot load {path}: {str(err).splitlines()[0]}",
                             "re-export the model (lmforge export MODEL_DIR --to onnx)") from None
        self.model_type = model_type
        self.input_names = [i.name for i in self.session.get_inputs()]
        missing = [n for n in ("input_ids", "attention_mask") if n not in self.input_names]
        if missing:
            raise InputError(f"{path}: the graph has no input(s) {missing} (it has {self.input_names})",
                             "re-export the model (lmforge export MODEL_DIR --to onnx)")
        self.output_names = outputs or [o.name for o in self.session.get_outputs()]
        self.config = _Config({"model_type": model_type, **(config or {})})
        self._device_tensor = torch.empty(0)

    # -- what torch-module callers touch --------------------------------------------------------
    def parameters(self):
        yield self._device_tensor  # CPU: callers move batches to next(model.parameters()).device

    def eval(self):
        return self

    def train(self, mode: bool = True):
        return self

    def run(self, input_ids, attention_mask=None, token_type_ids=None) -> list[torch.Tensor]:
        """The graph's outputs, in the manifest's order, as float32 CPU tensors."""
        ids = _numpy(input_ids)
        feeds = {"input_ids": ids,
                 "attention_mask": np.ones_like(ids) if attention_mask is None else _numpy(attention_mask)}
        if "token_type_ids" in self.input_names:  # None means segment 0 everywhere, as BERT does
            feeds["token_type_ids"] = np.zeros_like(ids) if token_type_ids is None else _numpy(token_type_ids)
        outs = self.session.run(self.output_names, {n: feeds[n] for n in self.input_names})
        return [torch.from_numpy(np.ascontiguousarray(o)) for o in outs]

    def __call__(self, input_ids, attention_mask=None, *args, token_type_ids=None, **_):
        if args and self.model_type in ("token_classifier", "span_extractor"):  # (ids, mask, token types)
            token_type_ids = args[0]
        outs = self.run(input_ids, attention_mask, token_type_ids)
        if self.model_type == "sequence_classifier":
            return outs[0], None  # (logits, loss)
        if self.model_type == "token_classifier":
            return outs[0]  # emissions
        if self.model_type == "span_extractor":
            return outs[0], outs[1]  # start, end logits
        return outs[0]  # bert: hidden states

    def hidden_states(self, input_ids, token_type_ids=None, attention_mask=None) -> torch.Tensor:
        if self.model_type != "bert":
            raise TypeError(f"a '{self.model_type}' export has no hidden_states graph")
        return self.run(input_ids, attention_mask, token_type_ids)[0]


def _numpy(x) -> np.ndarray:
    a = x.cpu().numpy() if torch.is_tensor(x) else np.asarray(x)
    return a.astype(np.int64, copy=False)


def read_manifest(path: Path) -> dict:
    try:
        manifest = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise InputError(f"{path / MANIFEST} is not readable JSON: {err}",
                         "re-export the model (lmforge export MODEL_DIR --to onnx)") from None
    if not isinstance(manifest, dict):
        raise InputError(f"{path / MANIFEST} is not an export manifest", "re-export the model")
    return manifest


def _crf(scores: dict, path: Path):
    """The CRF whose Viterbi decode runs after the graph, from the manifest's transition scores."""
    from ..models.crf import CRF

    try:
        trans = torch.tensor(scores["transitions"], dtype=torch.float32)
        crf = CRF(trans.shape[0])
        with torch.no_grad():
            crf.transitions.copy_(trans)
            crf.start.copy_(torch.tensor(scores["start"], dtype=torch.float32))
            crf.end.copy_(torch.tensor(scores["end"], dtype=torch.float32))
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        raise InputError(f"{path / MANIFEST}: its 'crf' scores are unreadable ({err})", "re-export the model") from None
    return crf.eval()


def _model_config(path: Path, manifest: dict) -> dict:
    """vocab_size / block_size / d_model of the model's body: the manifest's ``config`` (or a copied
    config.json) when the export has one; an empty dict otherwise (filled in by ``_fill_config``)."""
    cfg = manifest.get("config")
    if not isinstance(cfg, dict) and (path / "config.json").is_file():
        cfg = json.loads((path / "config.json").read_text(encoding="utf-8"))
    cfg = cfg if isinstance(cfg, dict) else {}
    body = cfg.get("body") if isinstance(cfg.get("body"), dict) else cfg  # head models nest the body's config
    return {k: body[k] for k in ("vocab_size", "block_size", "d_model") if k in body}


def _fill_config(model: OnnxModel, graph_file: Path, tok, cfg: dict) -> None:
    """Fields the manifest lacks, from the graph itself: d_model from one probe run (which also proves
    the graph runs), block_size from the position-embedding table, vocab_size from the tokenizer."""
    try:
        probe = model.run(torch.tensor([[tok.pad_id or 0]]), torch.tensor([[1]]))
    except Exception as err:  # onnxruntime's own error types
        raise InputError(f"{graph_file}: the graph fails on a one-token input: {str(err).splitlines()[0]}",
                         "re-export the model (lmforge export MODEL_DIR --to onnx)") from None
    if "d_model" not in cfg and model.model_type == "bert":
        cfg["d_model"] = int(probe[0].shape[-1])
    if "block_size" not in cfg:
        cfg["block_size"] = _position_table_size(graph_file)
    cfg.setdefault("vocab_size", tok.vocab_size)
    model.config = _Config({"model_type": model.model_type, **cfg})


def _position_table_size(graph_file: Path) -> int:
    """Rows of the learned position-embedding table (``...wpe.weight``); 0 (no limit known) if none."""
    try:
        import onnx

        graph = onnx.load(str(graph_file), load_external_data=False).graph
    except Exception:  # onnx missing or unreadable: the session loaded, so only the limit is unknown
        return 0
    for init in graph.initializer:
        if init.name.endswith("wpe.weight") and len(init.dims) == 2:
            return int(init.dims[0])
    return 0


def load_onnx_served(name: str, path: Path) -> ServedModel:
    """An ``lmforge export --to onnx`` directory as a ``ServedModel`` of the same kind as its PyTorch model."""
    from ..tokenizer import Tok

    manifest = read_manifest(path)
    fmt = manifest.get("format")
    if fmt != "onnx":
        raise InputError(f"{path} is a '{fmt}' export; lmforge serve runs ONNX exports (and PyTorch model "
                         "directories)", f"export with --to onnx, or {PYTORCH_HINT}")
    mtype, kind = manifest.get("model_type"), manifest.get("task")
    files = manifest.get("files") or {}
    if mtype == "gpt" or kind == "chat" or "cache" in manifest:
        raise InputError(f"{path}: decoder ONNX exports ('{mtype}') are not served: /v1/completions needs a model "
                         "that fills the generation engine's KV cache", PYTORCH_HINT)
    if mtype == "seq2seq" or "decoder" in files:
        raise InputError(f"{path}: seq2seq ONNX exports (translation, summarization) are not served yet",
                         PYTORCH_HINT)
    if mtype not in SERVED:
        raise InputError(f"{path}: an ONNX export of model_type '{mtype}' has nothing to serve",
                         f"served: {', '.join(sorted(SERVED))}; or {PYTORCH_HINT}")
    if kind is None and mtype != "bert":
        raise InputError(f"{path}: a '{mtype}' export without its task (export.json names none, task.json is "
                         f"{'there' if (path / 'task.json').is_file() else 'missing'})",
                         "re-export from the fine-tuned model directory (it holds task.json)")
    if kind not in SERVED[mtype]:
        raise InputError(f"{path}: export.json says task '{kind}' for a '{mtype}' model", "re-export the model")
    if "model" not in files:
        raise InputError(f"{path / MANIFEST} names no 'model' graph file (files: {files})", "re-export the model")
    graph_file = path / files["model"]
    if not graph_file.is_file():
        raise InputError(f"{path}: export.json names {files['model']}, which is not there",
                         "copy the whole export directory, or re-export the model")
    if not (path / "tokenizer.json").is_file():
        raise InputError(f"{path}: the export has no tokenizer.json", "re-export from a model directory with a tokenizer")
    task = None
    if kind is not None:
        from ..tasks.base import load_task

        task = load_task(path)  # task.json, copied by the export
        if task.kind != kind:
            raise InputError(f"{path}: task.json is a '{task.kind}' task but export.json says '{kind}'",
                             "re-export the model")
        if getattr(task.cfg, "crf", False) and not isinstance(manifest.get("crf"), dict):
            raise InputError(f"{path}: an NER model with a CRF, but export.json has no 'crf' transition scores "
                             "(an export from before they were written), so its Viterbi decode cannot run",
                             "re-export the model (lmforge export MODEL_DIR --to onnx), or " + PYTORCH_HINT)
    graph = (manifest.get("graphs") or {}).get("model") or {}
    model = OnnxModel(graph_file, mtype, list(graph.get("outputs") or []))
    tok = Tok.load(path)
    _fill_config(model, graph_file, tok, _model_config(path, manifest))
    if isinstance(manifest.get("crf"), dict):
        model.crf = _crf(manifest["crf"], path)
    now = int(time.time())
    info = {"format": "onnx", "model_type": mtype}
    if task is None:
        return ServedModel(name, path, "encoder", model, tok, context=model.config.block_size, created=now, info=info)
    return ServedModel(name, path, task.kind, model, tok, task=task, created=now,
                       info={**info, "labels": list(task.state.get("labels", []))})
