"""ONNX export (``model.onnx``) with dynamic batch and sequence axes.

Tries torch.onnx's TorchScript-based exporter first (``dynamo=False``): on these models it exports in
well under a second, where the dynamo exporter takes several seconds. Models with ops it has no
symbolic for (``aten::rms_norm`` in LLaMA-style GPTs) fall back to the dynamo exporter (opset >= 18).
Either way the graph is verified against eager PyTorch.
onnx/onnxruntime are an optional extra, imported only here.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from ..errors import ConfigError, InputError
from ..runs import atomic_dir
from .graphs import (body_limits, cache_info, copy_tokenizer, graphs_for, load_for_export, sample_batches,
                     write_manifest)

DEFAULT_OPSET = 17


def ort_session(path: str | Path, threads: int):
    """An onnxruntime CPU session (verification, serving): ``threads`` intra-op threads, errors-only log."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise ConfigError("running an ONNX export needs onnxruntime", "pip install onnxruntime") from None
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def _export(g, args, path: Path, axes: dict, opset: int, dynamo: bool) -> str:
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(g.module, args, str(path), input_names=g.inputs, output_names=g.outputs,
                          dynamic_axes=axes, opset_version=opset, dynamo=dynamo,
                          **({"optimize": True, "verbose": False} if dynamo else {}))
    return "dynamo" if dynamo else "torchscript"


def _opset(path: Path) -> int:
    import onnx

    m = onnx.load(str(path), load_external_data=False)
    return next(o.version for o in m.opset_import if o.domain in ("", "ai.onnx"))


def export_onnx(model_dir: str | Path, output: str | Path, options: dict | None = None) -> Path:
    """Write ``model.onnx`` + ``export.json`` + tokenizer files into ``output``."""
    options = options or {}
    try:
        import onnx  # noqa: F401
    except ImportError:
        raise ConfigError("ONNX export needs the onnx package", "pip install 'onnx>=1.16' onnxruntime") from None
    opset = int(options.get("opset") or DEFAULT_OPSET)
    model, tok, cfg, task = load_for_export(model_dir)
    with_cache = bool(options.get("with_cache"))
    graphs = graphs_for(model, model_dir, "onnx", with_cache)
    sample = sample_batches(tok, *body_limits(model))[2]
    with atomic_dir(output) as tmp:
        files = {}
        for g in graphs:
            path = tmp / f"{g.name}.onnx"
            args = g.trace_inputs(sample)
            axes = {n: g.axes[n] for n in g.inputs + g.outputs if n in g.axes}
            try:
                exporter = _export(g, args, path, axes, opset, dynamo=False)
            except Exception as first:  # e.g. aten::rms_norm has no TorchScript-exporter symbolic
                try:
                    exporter = _export(g, args, path, axes, max(opset, 18), dynamo=True)
                except Exception as err:  # the exporters raise many types; name the model and format
                    raise InputError(f"{model_dir}: ONNX export of model_type '{cfg.get('model_type')}' failed: "
                                     f"{str(first).splitlines()[0]}; dynamo exporter: {str(err).splitlines()[0]}",
                                     "try --to torchscript or --to torch-export") from None
            files[g.name] = path.name
        copy_tokenizer(Path(model_dir), tmp)
        write_manifest(tmp, "onnx", files, graphs, cfg, task,
                       {"opset": _opset(path), "exporter": exporter, **cache_info(model, with_cache)}, model=model)
    return Path(output)
