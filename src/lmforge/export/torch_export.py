"""torch.export (``model.pt2``): an ExportedProgram with dynamic batch and sequence dims.

Loads with ``torch.export.load(path).module()``; the sequence dims are bounded by the model's
block_size. Every named axis of a graph (batch, sequence, source_sequence, target_sequence) becomes one
``torch.export.Dim`` shared by the inputs that carry it. ``--with-cache`` is not offered here: the
attention mask spans past + new tokens, and torch.export cannot express a dim that is the sum of two
others (use ONNX or TorchScript for a KV-cache graph).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from ..errors import ConfigError, InputError
from ..runs import atomic_dir
from .graphs import body_limits, copy_tokenizer, graphs_for, load_for_export, sample_batches, write_manifest


def export_program(model_dir: str | Path, output: str | Path, options: dict | None = None) -> Path:
    """Write ``model.pt2`` + ``export.json`` + tokenizer files into ``output``."""
    if (options or {}).get("with_cache"):
        raise ConfigError("--with-cache is not supported by the torch.export exporter (its attention mask spans "
                          "past + new tokens, a sum of two dynamic dims torch.export cannot express)",
                          "use --to onnx --with-cache or --to torchscript --with-cache, or export without it")
    model, tok, cfg, task = load_for_export(model_dir)
    graphs = graphs_for(model, model_dir, "torch-export")
    _, block = body_limits(model)
    sample = sample_batches(tok, *body_limits(model))[2]
    dims: dict[str, torch.export.Dim] = {}

    def dim(name: str):
        if name not in dims:
            dims[name] = torch.export.Dim(name, min=1, max=4096 if name == "batch" else block)
        return dims[name]
    with atomic_dir(output) as tmp:
        files = {}
        for g in graphs:
            shapes = {n: {i: dim(a) for i, a in g.axes[n].items() if a != "d_model"} for n in g.inputs}
            try:
                with warnings.catch_warnings(), torch.no_grad():
                    warnings.simplefilter("ignore")
                    prog = torch.export.export(g.module, g.trace_inputs(sample),
                                               dynamic_shapes=shapes, strict=False)
            except Exception as err:
                raise InputError(f"{model_dir}: torch.export of model_type '{cfg.get('model_type')}' failed: "
                                 f"{str(err).splitlines()[0]}", "try --to onnx or --to torchscript") from None
            torch.export.save(prog, str(tmp / f"{g.name}.pt2"))
            files[g.name] = f"{g.name}.pt2"
        copy_tokenizer(Path(model_dir), tmp)
        write_manifest(tmp, "torch-export", files, graphs, cfg, task, {}, model=model)
    return Path(output)
