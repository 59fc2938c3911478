"""Distillation on SST-2: a bag-of-words student with and without the MiniLM teacher, same budget.

Runs ``recipes/classify/sst2-distill-bow.yaml`` twice (as written, and with ``finetune.distill=null``),
scores both on dev (872 sentences) with a paired bootstrap between them, and times predictions on
dev (encode + batched forward + decode, batch 64, 2 threads, model loaded once, best of 3 passes)
for the teacher and the student.

    python benchmarks/distill_sst2.py      # needs runs/sst2-minilm-lora (the teacher) first
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
RECIPE = Path(__file__).parents[1] / "recipes/classify/sst2-distill-bow.yaml"
DEV = Path(os.environ.get("LMFORGE_DATASETS", "../shared/datasets")) / "classification/sst2/dev.tsv"


def sentences_per_s(model_dir: Path, texts: list[str], passes: int = 3) -> float:
    """Encoding + batched forward + decoding of the dev sentences, model loaded once (best pass)."""
    from lmforge.tasks.stage import encode_all, load_task_model, predict_features

    task, model, tok = load_task_model(model_dir)
    examples = [task.example(x, i) for i, x in enumerate(texts)]
    predict_features(task, model, tok, encode_all(task, examples[:64], tok), 64)  # warm-up
    best = 0.0
    for _ in range(passes):
        t = time.perf_counter()
        predict_features(task, model, tok, encode_all(task, examples, tok), 64)
        best = max(best, len(texts) / (time.perf_counter() - t))
    return best


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run-root", default="runs")
    a = p.parse_args(argv)
    import torch

    from lmforge.eval.compare import compare_dirs
    from lmforge.recipe import load_recipe, run_recipe

    torch.set_num_threads(2)
    load_before = [round(x, 2) for x in os.getloadavg()]
    out: dict = {"command": "python benchmarks/distill_sst2.py " + " ".join(argv if argv is not None else sys.argv[1:]),
                 "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "load_average_before": load_before}
    dirs = {}
    for name, overrides in (("distilled", []), ("no teacher", ["finetune.distill=null"])):
        t = time.perf_counter()
        run = run_recipe(load_recipe(RECIPE, overrides), Path(a.run_root) / f"sst2-distill-bow-{name.replace(' ', '-')}",
                         progress=False)
        m = json.loads((run.stage_dir("evaluate") / "pretrained" / "metrics.json").read_text())
        ft = run.stage("finetune")["metrics"]
        out[name] = {"dev_accuracy": m["accuracy"], "ci": m["ci"]["accuracy"], "n": m["n"],
                     "val_accuracy": ft["pretrained"].get("val_accuracy"), "steps": ft["pretrained"]["steps"],
                     "finetune_seconds": run.stage("finetune")["seconds"], "wall_seconds": round(time.perf_counter() - t, 1),
                     **({"distill": ft["distill"]} if "distill" in ft else {})}
        dirs[name] = run
    cmp = compare_dirs(dirs["distilled"].stage_dir("evaluate") / "pretrained",
                       dirs["no teacher"].stage_dir("evaluate") / "pretrained", n_resamples=1000)
    out["paired_bootstrap"] = cmp["metrics"]["accuracy"]
    teacher = Path(load_recipe(RECIPE).finetune.distill.teacher)
    tm = json.loads((teacher.parent.parent.parent / "evaluate" / "pretrained" / "metrics.json").read_text())
    out["teacher"] = {"dir": str(teacher), "dev_accuracy": tm["accuracy"], "ci": tm["ci"]["accuracy"]}
    with open(DEV, encoding="utf-8") as f:
        texts = [r["sentence"] for r in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)]
    student = dirs["distilled"].stage_dir("finetune") / "pretrained" / "model"
    out["predict_sentences_per_s"] = {"teacher": round(sentences_per_s(teacher, texts), 1),
                                      "student": round(sentences_per_s(student, texts), 1)}
    sp = out["predict_sentences_per_s"]
    out["inference_speedup"] = round(sp["student"] / sp["teacher"], 2)
    params = {}
    from lmforge.models.io import load_model

    for name, d in (("teacher", teacher), ("student", student)):
        params[name] = sum(p.numel() for p in load_model(d).parameters())
    out["parameters"] = params
    out["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "distill_sst2.json").write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
