"""Load an export back with its own runtime and compare it with eager PyTorch on real inputs.

Inputs are the tokenizer's (``graphs.sample_batches``: batch 1 at length 1, batch 1, padded batches).
Padded positions are compared too: the graph must compute exactly what eager does, padding included.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..errors import InputError
from .graphs import body_limits, graphs_for, load_for_export, sample_batches

TOLERANCE = 1e-4


def _runner(export_dir: Path, fmt: str, file: str, inputs: list[str]) -> Callable:
    path = str(export_dir / file)
    if fmt == "onnx":
        from .onnx import ort_session

        sess = ort_session(path, threads=1)
        names = [i.name for i in sess.get_inputs()]
        return lambda feeds: [torch.from_numpy(np.asarray(o)) for o in
                              sess.run(None, {n: feeds[n].numpy() for n in names})]
    if fmt == "torchscript":
        mod = torch.jit.load(path)
        return lambda feeds: list(mod(*(feeds[n] for n in inputs)))
    if fmt == "torch-export":
        prog = torch.export.load(path).module()
        return lambda feeds: list(prog(*(feeds[n] for n in inputs)))
    raise InputError(f"cannot verify format '{fmt}'", "verify onnx, torchscript or torch-export exports")


def verify(model_dir: str | Path, export_dir: str | Path, tolerance: float = TOLERANCE) -> list[dict]:
    """Rows ``{graph, output, batch, length, max_abs_diff}``; raises InputError past ``tolerance``."""
    export_dir = Path(export_dir)
    manifest = json.loads((export_dir / "export.json").read_text())
    fmt = manifest["format"]
    model, tok, _, _ = load_for_export(model_dir)
    rows = []
    for g in graphs_for(model, model_dir, fmt, with_cache="cache" in manifest):
        run = _runner(export_dir, fmt, manifest["files"][g.name], g.inputs)
        for batch in sample_batches(tok, *body_limits(model)):
            for feeds in g.feeds_for(batch):
                with torch.no_grad():
                    want = g.module(*(feeds[n] for n in g.inputs))
                with torch.no_grad():
                    got = run(feeds)
                B, T = feeds[g.inputs[0]].shape[:2]
                past = feeds["past_key_0"].shape[2] if "past_key_0" in feeds else None
                for name, w, o in zip(g.outputs, want, got):
                    if tuple(w.shape) != tuple(o.shape):
                        diff = float("inf")
                    else:
                        diff = float((w.float() - o.float()).abs().max()) if w.numel() else 0.0
                    rows.append({"graph": g.name, "output": name, "batch": B, "length": T, "past": past,
                                 "max_abs_diff": diff})
    bad = [r for r in rows if not r["max_abs_diff"] <= tolerance]
    if bad:
        worst = max(bad, key=lambda r: r["max_abs_diff"])
        raise InputError(f"{export_dir}: the {fmt} export differs from the PyTorch model in {model_dir}: "
                         f"'{worst['output']}' max abs diff {worst['max_abs_diff']:.3g} > {tolerance:g} "
                         f"(batch {worst['batch']}, length {worst['length']})\n{table(rows)}",
                         "re-export from this model directory; if it persists, try another --to format")
    return rows


def table(rows: list[dict]) -> str:
    """A plain-text table: one line per output and input shape."""
    def name(r):
        return r["output"] if r.get("graph", "model") == "model" else f"{r['graph']}.{r['output']}"

    has_past = any(r.get("past") is not None for r in rows)
    w = max([16] + [len(name(r)) for r in rows])
    head = f"{'output':<{w}} {'batch':>5} {'length':>6}" + (f" {'past':>5}" if has_past else "")
    lines = [head + f" {'max_abs_diff':>13}"]
    for r in rows:
        past = (f" {r['past'] if r.get('past') is not None else '-':>5}" if has_past else "")
        lines.append(f"{name(r):<{w}} {r['batch']:>5} {r['length']:>6}{past} {r['max_abs_diff']:>13.3g}")
    return "\n".join(lines)
