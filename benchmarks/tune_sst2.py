"""Hyperparameter search and cross-validation on SST-2 (recipes/classify/sst2-bow-tune.yaml).

1. ``lmforge tune`` with the recipe's space (lr, hidden width, dropout, weight decay), TPE + median
   pruning, 20 trials in this one process: the study's results, and the process's RSS after every
   trial (``gc.collect()`` first) to show that memory does not grow from trial to trial.
2. The recipe as written vs its best values (``tune/best.yaml``), both scored on dev (the test set,
   which the search never saw): what the search bought.
3. ``lmforge cv`` of the recipe as written, 5 stratified folds of the training file: mean ± std.

    python benchmarks/tune_sst2.py --run-dir runs/sst2-bow-tune-bench
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
RECIPE = Path(__file__).parents[1] / "recipes/classify/sst2-bow-tune.yaml"


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run-dir", default="runs/sst2-bow-tune-bench")
    p.add_argument("--trials", type=int, default=20)
    p.add_argument("--folds", type=int, default=5)
    a = p.parse_args(argv)
    from lmforge.recipe import load_recipe, run_recipe
    from lmforge.tune.cv import cross_validate
    from lmforge.tune.search import Search

    load_before = [round(x, 2) for x in os.getloadavg()]
    root = Path(a.run_dir)
    t0 = time.perf_counter()
    search = Search(RECIPE, run_dir=root, trials=a.trials, progress=False)
    result = search.run()
    tune_s = time.perf_counter() - t0
    rss = [t["rss_mb"] for t in result["trials"] if t.get("rss_mb") is not None]

    t1 = time.perf_counter()
    scores = {}
    for name, path in (("as written", RECIPE), ("tune/best.yaml", search.dir / "best.yaml")):
        run = run_recipe(load_recipe(path), root / ("dev-" + name.split("/")[0].replace(" ", "-")), progress=False)
        m = json.loads((run.stage_dir("evaluate") / "pretrained" / "metrics.json").read_text())
        scores[name] = {"accuracy": m["accuracy"], "ci": m["ci"]["accuracy"], "n": m["n"]}
    dev_s = time.perf_counter() - t1

    t2 = time.perf_counter()
    cv = cross_validate(RECIPE, a.folds, run_dir=root, progress=False)
    cv_s = time.perf_counter() - t2
    out = {"command": "python benchmarks/tune_sst2.py " + " ".join(argv if argv is not None else sys.argv[1:]),
           "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "load_average_before": load_before,
           "load_average_after": [round(x, 2) for x in os.getloadavg()],
           "tune": {k: result[k] for k in ("metric", "direction", "sampler", "pruner", "counts", "best", "importance")
                    if k in result},
           "tune_seconds": round(tune_s, 1), "trials": result["trials"],
           "rss_mb": {"per_trial": rss, "first": rss[0] if rss else None, "last": rss[-1] if rss else None,
                      "max": max(rss) if rss else None,
                      "growth_second_half_mb": round(statistics.fmean(rss[len(rss) // 2:]) -
                                                     statistics.fmean(rss[: len(rss) // 2]), 1) if len(rss) > 1 else None},
           "dev": scores, "dev_seconds": round(dev_s, 1),
           "cv": {"folds": a.folds, "summary": cv["summary"]["pretrained"]}, "cv_seconds": round(cv_s, 1)}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "tune_sst2.json").write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps({k: v for k, v in out.items() if k != "trials"}, indent=1))


if __name__ == "__main__":
    main()
