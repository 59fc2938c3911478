"""Shared by the labeling benchmarks (active_learning.py, label_issues.py, weak_labels.py): the
SST-2 and ChnSentiCorp splits they use, and the machine/version record each result file keeps.
Not a benchmark itself (run_all.py does not list it)."""

from __future__ import annotations

import csv
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results"
DATASETS = Path(os.environ.get("LMFORGE_DATASETS", REPO.parent / "shared" / "datasets"))


def _tsv(path: Path) -> list[dict]:
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))


def sst2_train_sample(n: int, seed: int = 0) -> tuple[list[str], list[str]]:
    """``n`` random phrases of GLUE SST-2 train (67,349 phrases and sentences)."""
    rows = _tsv(DATASETS / "classification/sst2/train.tsv")
    idx = np.random.default_rng(seed).choice(len(rows), n, replace=False)
    return [rows[i]["sentence"].strip() for i in idx], [rows[i]["label"].strip() for i in idx]


def sst2_dev() -> tuple[list[str], list[str]]:
    rows = _tsv(DATASETS / "classification/sst2/dev.tsv")
    return [r["sentence"].strip() for r in rows], [r["label"].strip() for r in rows]


def chnsenticorp(test_size: int = 1500, seed: int = 0) -> tuple[list[str], list[str], list[str], list[str]]:
    """ChnSentiCorp hotel reviews (empty reviews dropped) split at random: (pool texts, labels,
    test texts, labels); ``test_size=0`` gives every review as the pool."""
    with open(DATASETS / "classification/chnsenticorp/ChnSentiCorp_htl_all.csv", encoding="utf-8", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["review"].strip()]
    perm = np.random.default_rng(seed).permutation(len(rows))
    test, pool = [rows[i] for i in perm[:test_size]], [rows[i] for i in perm[test_size:]]
    return ([r["review"] for r in pool], [r["label"] for r in pool], [r["review"] for r in test],
            [r["label"] for r in test])


def environment(argv: list[str]) -> dict:
    from importlib import metadata

    versions = {}
    for pkg in ("lmforge", "numpy", "scikit-learn", "scipy", "cleanlab", "snorkel", "torch"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    script = Path(sys.argv[0])
    script = script.resolve().relative_to(REPO) if script.resolve().is_relative_to(REPO) else script
    return {"command": " ".join(["python", str(script), *argv]),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
                        "load_average_before": [round(x, 2) for x in os.getloadavg()]},
            "versions": versions}


def finish(env: dict) -> dict:
    env["machine"]["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    return env


def header(env: dict, seconds: float) -> str:
    m = env["machine"]
    return (f"```bash\n{env['command']}\n```\n\nRun of {env['date']} on {m['cpus']} CPUs ({m['platform']}, Python "
            f"{m['python']}), {seconds:.0f} s wall; load average {m['load_average_before']} before, "
            f"{m['load_average_after']} after (other work shares the machine: times are upper bounds, the "
            f"accuracies do not depend on load). Versions: "
            + ", ".join(f"{k} {v}" for k, v in env["versions"].items()) + ".\n")
