"""The models one server holds, by name: what each is (its kind) and what it needs to answer.

``ServedModel`` is the contract between the app shell (loading, limits, task endpoints) and the
generation engine (``serve/engine.py``): routes look a model up with ``get_model`` and never branch
on how it was loaded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import APIError, not_found_model

# what a model can be asked for, by kind
KINDS = ("decoder", "chat", "encoder", "classification", "ner", "translation", "summarization", "qa")


@dataclass
class ServedModel:
    name: str
    path: Path
    kind: str                       # one of KINDS
    model: Any                      # torch.nn.Module (or an onnxruntime-backed callable)
    tok: Any                        # lmforge.tokenizer.Tok
    task: Any = None                # lmforge.tasks.base.Task for fine-tuned task models, else None
    context: int = 0                # max prompt + completion tokens (the model's block size)
    chat_template: Any = None       # lmforge.tokenizer.ChatTemplate when the directory has one
    engine: Any = None              # serve.engine.GenerationEngine for decoder/chat models
    batcher: Any = None             # serve.batcher.DynamicBatcher for encoder/task models
    created: int = 0                # unix time it was loaded (``/v1/models``)
    info: dict = field(default_factory=dict)


def get_model(models: dict[str, ServedModel], name: Any, kinds: tuple[str, ...] | None = None) -> ServedModel:
    """The served model called ``name``; 404 when unknown, 400 when it cannot do what was asked."""
    if not isinstance(name, str) or not name:
        raise APIError(400, "'model' must be a non-empty string naming a served model", param="model")
    m = models.get(name)
    if m is None:
        raise not_found_model(name, list(models))
    if kinds is not None and m.kind not in kinds:
        raise APIError(400, f"model '{name}' is a {m.kind} model; this endpoint needs one of: {', '.join(kinds)}",
                       param="model", code="model_not_supported")
    return m
