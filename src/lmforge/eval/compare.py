"""Comparing two models on the same examples: a paired bootstrap (Koehn 2004) per headline metric.

Both systems are rescored on the same resampled example sets, so the interval is for the
*difference*, and the p-value is the share of resamples in which the difference changes sign
(two-sided). Inputs are the ``scoring.json`` files that evaluation writes, so no model is needed.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..errors import InputError


def _load(path: Path):
    from ..tasks.base import task_from_config
    from ..tasks.registry import task_config_adapter

    f = path / "scoring.json" if path.is_dir() else path
    if not f.exists():
        raise InputError(f"no scoring.json in {path}", "point at an evaluation output (lmforge evaluate --output DIR)")
    blob = json.loads(f.read_text(encoding="utf-8"))
    task = task_from_config(task_config_adapter().validate_python(blob["task"]["config"]), blob["task"]["state"])
    return task, blob["predictions"], blob["examples"]


def paired_bootstrap(task_a, preds_a, task_b, preds_b, examples, n_resamples: int = 1000, seed: int = 0,
                     confidence: float = 0.95) -> dict:
    from .evaluate import resample_indices

    idx = resample_indices(len(examples), n_resamples, seed)
    full = np.arange(len(examples))[None]
    sa, sb = task_a.subset_scores(preds_a, examples, idx), task_b.subset_scores(preds_b, examples, idx)
    fa, fb = task_a.subset_scores(preds_a, examples, full), task_b.subset_scores(preds_b, examples, full)
    lo = (1 - confidence) / 2
    out = {}
    for k in sa:
        if k not in sb:
            continue
        d = np.asarray(sa[k]) - np.asarray(sb[k])
        delta = fa[k][0] - fb[k][0]
        flips = np.mean(d <= 0) if delta > 0 else np.mean(d >= 0) if delta < 0 else 1.0
        out[k] = {"a": round(fa[k][0], 6), "b": round(fb[k][0], 6), "delta": round(delta, 6),
                  "ci": [round(float(np.quantile(d, lo)), 6), round(float(np.quantile(d, 1 - lo)), 6)],
                  "p_value": round(float(min(1.0, 2 * flips)), 4)}
    return out


def compare_dirs(a: str | Path, b: str | Path, n_resamples: int = 1000, seed: int = 0) -> dict:
    """Paired comparison of two evaluation outputs on the same data."""
    ta, pa, ea = _load(Path(a))
    tb, pb, eb = _load(Path(b))
    if [e["id"] for e in ea] != [e["id"] for e in eb]:
        raise InputError(f"{a} and {b} were evaluated on different examples",
                         "evaluate both models on the same file, then compare")
    if ta.kind != tb.kind:
        raise InputError(f"{a} is a {ta.kind} model, {b} a {tb.kind} model", "compare models of one task")
    return {"a": str(a), "b": str(b), "n": len(ea), "resamples": n_resamples,
            "metrics": paired_bootstrap(ta, pa, tb, pb, ea, n_resamples, seed)}


def evaluation_dirs(path: Path) -> list[Path]:
    """Evaluation outputs under ``path``: itself, or a run's ``evaluate/<variant>`` folders."""
    path = Path(path)
    if (path / "scoring.json").exists():
        return [path]
    found = sorted(p.parent for p in (path / "evaluate").glob("*/scoring.json"))
    if not found:
        raise InputError(f"{path} has no evaluation outputs", "pass a run directory after its evaluate stage, "
                         "or an `lmforge evaluate --output` directory")
    return found


def compare_runs(run_a: str | Path, run_b: str | Path, n_resamples: int = 1000) -> dict:
    """``lmforge compare RUN_A RUN_B``: each run's first evaluated variant (pretrained before random)."""
    da, db = evaluation_dirs(Path(run_a)), evaluation_dirs(Path(run_b))
    return compare_dirs(da[0], db[0], n_resamples)
