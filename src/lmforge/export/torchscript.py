"""TorchScript export (``model.pt`` via ``torch.jit.trace``): loads with ``torch.jit.load`` alone.

A traced graph keeps sizes symbolic, so batch, sequence and past lengths other than the sample's work
(verified at batch 1 / length 1 / past 0 and on padded batches)."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from ..errors import InputError
from ..runs import atomic_dir
from .graphs import body_limits, cache_info, copy_tokenizer, graphs_for, load_for_export, sample_batches, write_manifest


def export_torchscript(model_dir: str | Path, output: str | Path, options: dict | None = None) -> Path:
    """Write ``model.pt`` + ``export.json`` + tokenizer files into ``output``."""
    with_cache = bool((options or {}).get("with_cache"))
    model, tok, cfg, task = load_for_export(model_dir)
    graphs = graphs_for(model, model_dir, "torchscript", with_cache)
    sample = sample_batches(tok, *body_limits(model))[2]
    with atomic_dir(output) as tmp:
        files = {}
        for g in graphs:
            try:
                with warnings.catch_warnings(), torch.no_grad():
                    warnings.simplefilter("ignore")
                    traced = torch.jit.trace(g.module, g.trace_inputs(sample), check_trace=False)
            except Exception as err:
                raise InputError(f"{model_dir}: TorchScript trace of model_type '{cfg.get('model_type')}' failed: "
                                 f"{str(err).splitlines()[0]}", "try --to onnx or --to hf") from None
            traced.save(str(tmp / f"{g.name}.pt"))
            files[g.name] = f"{g.name}.pt"
        copy_tokenizer(Path(model_dir), tmp)
        write_manifest(tmp, "torchscript", files, graphs, cfg, task, cache_info(model, with_cache), model=model)
    return Path(output)
