"""Model directories -> ``ServedModel``s for ``lmforge serve``: parsing ``[NAME=]MODEL_DIR`` specs,
kind detection, and the engine or batcher each kind runs on.

What each directory becomes (``ServedModel.kind``), from what it holds:

- ``task.json`` (a fine-tune): its task kind. ``chat`` is served like a decoder (continuous batching,
  ``/v1/completions`` and ``/v1/chat/completions``) with the tokenizer's chat template; the others
  (classification incl. multi-label, ner, translation, summarization, qa) get a ``DynamicBatcher``
  running the task's own ``collate`` + ``predict``, so ``/v1/classify`` ... answer exactly what
  ``lmforge predict`` writes for the same input.
- a plain GPT or (unidirectional) RNN language model: ``decoder``, with a ``GenerationEngine``.
- a plain BERT-family encoder (an ``lmforge import-hf`` MiniLM too): ``encoder`` for
  ``/v1/embeddings``: mean pooling over the attention mask, L2-normalised (sentence-transformers).
- ``export.json`` (an ``lmforge export --to onnx`` directory): the same kind as the PyTorch model it
  was exported from, run by onnxruntime (``serve/onnx_backend.py``: encoder task models and encoders).
"""

from __future__ import annotations

import dataclasses
import json
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InputError, LmforgeError
from . import onnx_backend
from .batcher import DynamicBatcher, by_length
from .engine import GenerationEngine
from .metrics import Metrics
from .registry import ServedModel

if TYPE_CHECKING:
    from .app import Settings

TASK_KINDS = ("classification", "ner", "translation", "summarization", "qa")

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]*")


def _parse_spec(spec: str) -> tuple[str, str]:
    """``NAME=DIR`` or ``DIR`` (name = the directory's name; ``package:X`` is named X)."""
    name, sep, where = spec.partition("=")
    if sep and _NAME.fullmatch(name) and where and not Path(spec).is_dir():  # (a directory may have a '=')
        return name, where
    where = spec
    return (where.split(":", 1)[1] if where.startswith("package:") else Path(where).resolve().name), where


def load_models(specs: list[str]) -> dict[str, ServedModel]:
    """The models to serve, by name, from ``[NAME=]MODEL_DIR`` specs (engines are attached by ``create_app``)."""
    from ..models.io import resolve_model_dir

    if not specs:
        raise InputError("no models to serve", "give one or more [NAME=]MODEL_DIR, e.g. lmforge serve tiny=runs/q/model")
    out: dict[str, ServedModel] = {}
    for spec in specs:
        name, where = _parse_spec(spec)
        if name in out:
            raise InputError(f"model spec '{spec}': the name '{name}' is already used by {out[name].path}",
                             f"name them apart: NAME={where}")
        path = resolve_model_dir(where)
        if not path.is_dir():
            raise InputError(f"model spec '{spec}': {path} is not a directory",
                             "give [NAME=]MODEL_DIR, a directory written by lmforge (e.g. runs/NAME/pretrain/model)")
        if not any((path / f).exists() for f in ("config.json", "adapter_config.json", "export.json")):
            raise InputError(f"model spec '{spec}': {path} is not a model directory (no config.json)",
                             "point at a pretrain/finetune output, an `lmforge import-hf` directory or an "
                             "`lmforge export --to onnx` directory")
        try:
            out[name] = load_served(name, path)
        except LmforgeError as err:
            raise InputError(f"model spec '{spec}': {err.message}", _hf_hint(path) or err.hint) from None
        except (OSError, ValueError, KeyError) as err:  # unreadable or damaged files
            raise InputError(f"model spec '{spec}': cannot load {path}: {type(err).__name__}: {err}",
                             _hf_hint(path) or "check the directory is a complete lmforge model") from None
    return out


def _hf_hint(path: Path) -> str | None:
    try:
        cfg = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    if "architectures" in cfg:
        return f"this looks like a Hugging Face directory: lmforge import-hf {path} --output DIR, then serve DIR"
    return None


def load_served(name: str, path: Path) -> ServedModel:
    """One directory as a ``ServedModel`` (kind detection: see the module docstring)."""
    from ..models.gpt import GPT
    from ..models.io import load_model
    from ..tokenizer import Tok

    if onnx_backend.is_export_dir(path):
        return onnx_backend.load_onnx_served(name, path)
    now = int(time.time())
    if (path / "task.json").exists():
        from ..tasks.stage import load_task_model

        task, model, tok = load_task_model(path)
        if task.kind == "chat":
            return ServedModel(name, path, "chat", model, tok, task=task, context=model.config.block_size,
                               chat_template=tok.chat_template, created=now)
        if task.kind not in TASK_KINDS:
            raise InputError(f"{path}: a '{task.kind}' task model has no endpoint", f"served tasks: {TASK_KINDS}")
        return ServedModel(name, path, task.kind, model, tok, task=task, created=now,
                           info={"labels": list(task.state.get("labels", []))})
    model = load_model(path).eval()
    tok = Tok.load(path)
    mtype = model.config.to_dict().get("model_type")
    if isinstance(model, GPT) or (getattr(model, "recurrent", False) and getattr(model, "lm_head", None) is not None):
        context = 0 if getattr(model, "recurrent", False) else model.config.block_size
        return ServedModel(name, path, "decoder", model, tok, context=context,
                           chat_template=tok.own_chat_template, created=now, info={"model_type": mtype})
    if mtype == "bert":
        return ServedModel(name, path, "encoder", model, tok, context=model.config.block_size, created=now,
                           info={"model_type": mtype})
    raise InputError(f"{path}: a plain {type(model).__name__} has nothing to serve",
                     "serve a decoder (GPT, RNN LM), an encoder (BERT) or a fine-tuned task model")


def _device(model) -> torch.device:
    return next(model.parameters()).device


def embed_batch(model, pad_id: int) -> Callable[[list[list[int]]], list[np.ndarray]]:
    """Token-id lists -> unit vectors: mean of the last hidden states over real tokens (padded per batch)."""
    from ..tasks.base import attention_mask, pad_batch

    def run(seqs: list[list[int]]) -> list[np.ndarray]:
        dev = _device(model)
        mask = attention_mask(seqs).to(dev)
        h = model.hidden_states(pad_batch(seqs, pad_id).to(dev), attention_mask=mask).float()
        m = mask[..., None].float()
        emb = F.normalize((h * m).sum(1) / m.sum(1).clamp_min(1.0), dim=-1)
        return list(emb.cpu().numpy())

    return run


def predict_batch(task, model, tok) -> Callable[[list[dict]], list[dict]]:
    """Encoded examples -> the task's predictions (its own collate pads per batch)."""

    def run(features: list[dict]) -> list[dict]:
        dev = _device(model)
        batch = {k: v.to(dev) if torch.is_tensor(v) else v for k, v in task.collate(features, tok).items()}
        return task.predict(model, batch, tok, features)

    return run


def attach(m: ServedModel, settings: Settings, metrics: Metrics) -> ServedModel:
    """A copy of ``m`` with this app's own engine or batcher, so apps can share loaded models (one that
    comes with its own engine or batcher keeps it)."""
    if m.engine is not None or m.batcher is not None:
        worker = m.engine if m.engine is not None else m.batcher
        metrics.watch_active(m.name, lambda: worker.active)
        return m
    if m.kind in ("decoder", "chat"):
        engine = GenerationEngine(m.model, m.tok, context=m.context or None, eos_token_id=m.tok.eos_id,
                                  max_batch=settings.gen_max_batch, max_queue=settings.max_queue,
                                  metrics=metrics, name=m.name)
        metrics.watch_active(m.name, lambda: engine.active)
        return dataclasses.replace(m, engine=engine, context=engine.context)
    if m.kind == "encoder":
        fn = by_length(embed_batch(m.model, m.tok.pad_id or 0), len)
    else:
        fn = by_length(predict_batch(m.task, m.model, m.tok), m.task.length)
    batcher = DynamicBatcher(fn, max_batch=settings.max_batch, wait_ms=settings.batch_wait_ms,
                             incoming=lambda: metrics.requests_in_flight,
                             max_queue=settings.max_queue, metrics=metrics, name=m.name)
    metrics.watch_active(m.name, lambda: batcher.active)
    return dataclasses.replace(m, batcher=batcher)

