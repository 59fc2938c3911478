"""The data stage of a recipe: ``run(cfg, out_dir) -> StageResult`` (called by ``lmforge run``)."""

from __future__ import annotations

import time
from pathlib import Path

from ..runs import StageResult, atomic_write_json
from .config import DataStageConfig
from .pipeline import process
from .split import split_files


def run(cfg: DataStageConfig, out_dir: Path) -> StageResult:
    """Process ``cfg.inputs`` into ``out_dir`` (kept/, dropped/, errors.jsonl, stats.json) and split
    the kept documents into ``out_dir/splits/{train,val[,test]}.jsonl``."""
    out_dir = Path(out_dir)
    stats = process(cfg, out_dir)
    t = time.perf_counter()
    kept = sorted((out_dir / "kept").glob("part-*"))
    counts = split_files(kept, out_dir / "splits", cfg.split)
    atomic_write_json(out_dir / "splits" / "split.json", {**counts, "config": cfg.split.model_dump(),
                                                          "seconds": round(time.perf_counter() - t, 3)})
    metrics = {"records_in": stats["records_in"], "created": stats.get("created", 0), "kept": stats["kept"], "dropped": stats["dropped"],
               "errors": stats["errors"], "train_docs": counts.get("train", 0), "val_docs": counts.get("val", 0)}
    if "test" in counts:
        metrics["test_docs"] = counts["test"]
    outputs = [str(out_dir / "kept"), str(out_dir / "stats.json"), *(str(out_dir / "splits" / f"{k}.jsonl")
                                                                    for k in counts)]
    return StageResult(metrics=metrics, outputs=outputs)
