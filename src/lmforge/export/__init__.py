"""Export a model directory to other runtimes: ONNX, TorchScript, torch.export, Hugging Face.

``EXPORTERS`` maps each format to a function ``(model_dir, output, options) -> written directory``;
each imports its heavy dependencies (onnx, onnxruntime) only when called, so importing this package
stays cheap. ``export`` picks one from the table and, for runnable graphs, verifies it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from ..errors import ConfigError


def _onnx(model_dir, output, options):
    from .onnx import export_onnx

    return export_onnx(model_dir, output, options)


def _torchscript(model_dir, output, options):
    from .torchscript import export_torchscript

    return export_torchscript(model_dir, output, options)


def _torch_export(model_dir, output, options):
    from .torch_export import export_program

    return export_program(model_dir, output, options)


def _hf(model_dir, output, options):
    from .hf import export_hf_dir

    return export_hf_dir(model_dir, output, options)


EXPORTERS: dict[str, Callable] = {"onnx": _onnx, "torchscript": _torchscript, "torch-export": _torch_export,
                                 "hf": _hf}
VERIFIABLE = ("onnx", "torchscript", "torch-export")  # hf is checked against transformers in tests


def export(model_dir: str | Path, to: str, output: str | Path, verify: bool = True,
           options: dict | None = None) -> tuple[Path, list[dict] | None]:
    """Export ``model_dir`` as ``to`` into ``output``; with ``verify``, also the diff rows."""
    if to not in EXPORTERS:
        raise ConfigError(f"unknown export format '{to}'", f"use --to one of: {', '.join(EXPORTERS)}")
    out = Path(EXPORTERS[to](model_dir, output, options or {}))
    rows = None
    if verify and to in VERIFIABLE:
        from .verify import verify as check

        rows = check(model_dir, out)
    return out, rows
