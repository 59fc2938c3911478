"""Accounting: merge per-shard stats into ``stats.json`` and shard errors into ``errors.jsonl``.

Input records + created = kept + dropped + errors, always (``created``: copies that one-in, many-out
steps such as augmentation added); each step's input is the previous step's output.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from .config import DataStageConfig
from .steps.base import StepStats
from .writers import dumps, iter_jsonl

PRE_STEPS = ["precheck", "normalize", "langid", "quality", "pii"]


def _name(i: int) -> str:
    return f"part-{i:05d}"


def collect(shards: list, cfg: DataStageConfig, work: Path, out: Path, seconds: float) -> dict:
    steps: dict[str, StepStats] = {}
    counts: Counter = Counter()
    dedup_seconds = 0.0
    errors_tmp = out / ".errors.jsonl.tmp"
    with open(errors_tmp, "w", encoding="utf-8") as ef:
        for s in shards:
            st = json.loads((work / "p1" / f"{_name(s.index)}.stats.json").read_text(encoding="utf-8"))
            counts.update(st["counts"])
            dedup_seconds += st["dedup_seconds"]
            for name in ["read", *PRE_STEPS]:
                if name in st["steps"]:
                    steps.setdefault(name, StepStats(name)).merge(st["steps"][name])
            for rec in iter_jsonl(work / "p1" / f"{_name(s.index)}.errors.jsonl"):
                ef.write(dumps(rec) + "\n")
            post = json.loads((work / "p1" / f"{_name(s.index)}.post.json").read_text(encoding="utf-8"))
            for name, d in post.items():
                steps.setdefault(name, StepStats(name)).merge(d)
    errors_tmp.replace(out / "errors.jsonl")
    summary = json.loads((work / "p2" / "summary.json").read_text(encoding="utf-8"))
    last = next(steps[n] for n in reversed(PRE_STEPS) if n in steps)
    dd = StepStats("dedup")
    dd.docs_in = last.docs_out
    dd.docs_out = last.docs_out - summary["exact"] - summary["near"]
    dd.seconds = dedup_seconds + summary["seconds"]
    if summary["exact"]:
        dd.dropped["dedup:exact"] = summary["exact"]
    if summary["near"]:
        dd.dropped["dedup:near"] = summary["near"]
    ordered = {n: steps[n].to_dict() for n in ["read", *PRE_STEPS] if n in steps}
    ordered["dedup"] = {**dd.to_dict(), "cluster_sizes": summary["cluster_sizes"]}
    for n in steps:
        if n not in ordered:
            ordered[n] = steps[n].to_dict()
    drops: Counter = Counter()
    for d in ordered.values():
        drops.update(d.get("dropped", {}))
    kept = ordered[list(ordered)[-1]]["out"]
    created = sum(d.get("created", 0) for d in ordered.values())
    langs = Counter()
    if "langid" in steps:
        langs = Counter({k.split(":", 1)[1]: v for k, v in steps["langid"].counters.items()})
    return {
        "records_in": counts["records_in"], "created": created, "kept": kept, "dropped": sum(drops.values()),
        "errors": counts["errors"], "drop_reasons": dict(sorted(drops.items(), key=lambda kv: -kv[1])),
        "languages": dict(langs.most_common()), "steps": ordered, "shards": len(shards),
        "seconds": round(seconds, 3), "executor": cfg.executor,
    }
