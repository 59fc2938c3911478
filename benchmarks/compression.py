"""Export and compression on CPU: MiniLM fine-tuned on SST-2, and a small character-level GPT.

For each variant: eager fp32 PyTorch, ONNX fp32 (onnxruntime), torch int8 dynamic (``lmforge
quantize``), ONNX int8 (``lmforge quantize --backend onnx``: onnxruntime's quantize_dynamic), pruned
(``lmforge prune``: heads + MLP channels removed, gradient importance, recovery fine-tuning) and
pruned + int8, it measures

* size on disk of the weights (model.safetensors or model.onnx),
* latency at batch 1 and batch 32 at sequence length 128 (real token ids, no padding): median of
  several timed runs after warm-up, the variants interleaved round by round (so load from other
  processes hits each alike), torch.set_num_threads(2) / onnxruntime intra_op_num_threads=2,
* quality: SST-2 dev accuracy (872 sentences) for MiniLM, validation perplexity (per character, the
  last 10% of tiny Shakespeare) for the GPT.

MiniLM is fine-tuned briefly (``--train-rows`` rows of SST-2 train, one epoch, recipe
``recipes/classify/sst2-minilm.yaml``); the GPT is ``recipes/pretrain/shakespeare-char.yaml`` made wider
(``--gpt-width``). Results go to benchmarks/results/compression.{json,md} with the command and the
CPU's instruction-set flags (AVX2 / AVX-512 / VNNI / AMX) from /proc/cpuinfo.

    nice -n 10 python benchmarks/compression.py                 # ~10 minutes on 2 cores
    python benchmarks/compression.py --train-rows 500 --gpt-steps 30 --quick   # a smoke run
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import platform
import random
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results"
DATASETS = Path(os.environ.get("LMFORGE_DATASETS", REPO.parent / "shared" / "datasets"))
SST2 = DATASETS / "classification/sst2"
SHAKESPEARE = DATASETS / "pretrain/tinyshakespeare/input.txt"
THREADS = 2
SEQ = 128
CPU_FLAGS = ("avx2", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile", "amx_int8")


def cpu_info() -> dict:
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    model = next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")), "")
    return {"model": model, "cores": os.cpu_count(), "flags": {f: f in flags for f in CPU_FLAGS},
            "machine": platform.machine()}


def read_tsv(path: Path) -> list[dict]:
    with open(path, encoding="utf-8", newline="") as f:
        return [{k.strip(): (v or "").strip() for k, v in r.items()}
                for r in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)]


# ---------------------------------------------------------------------------------------------
# runners: one callable per variant, (input_ids, attention_mask, token_type_ids) -> logits (numpy)
# ---------------------------------------------------------------------------------------------


def torch_runner(model_dir: Path):
    import torch

    from lmforge.models.io import load_model

    model = load_model(model_dir).eval()
    kind = model.config.to_dict().get("model_type")

    def run(ids, mask, tt):
        with torch.inference_mode():
            ids, mask = torch.from_numpy(ids), torch.from_numpy(mask)
            if kind == "gpt":  # eager's fastest path: no padding, the mask-free causal kernel
                return model(ids)[0].numpy()
            return model(ids, attention_mask=mask)[0].numpy()  # an all-ones mask takes the mask-free path too

    return run


def onnx_runner(export_dir: Path):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = THREADS, 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(str(export_dir / "model.onnx"), so, providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]

    def run(ids, mask, tt):
        feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": tt}
        return sess.run(None, {n: feeds[n] for n in names})[0]

    return run


def weights_bytes(d: Path) -> int:
    return sum(p.stat().st_size for p in list(d.glob("*.safetensors")) + list(d.glob("*.onnx")))


def token_rows(tok, texts: list[str], n: int, length: int = SEQ) -> list[list[int]]:
    """``n`` rows of exactly ``length`` real token ids (texts concatenated), no padding."""
    stream = [t for ids in tok.encode_batch(texts) for t in ids]
    return [stream[i * length:(i + 1) * length] for i in range(n) if len(stream) >= (i + 1) * length]


# ---------------------------------------------------------------------------------------------
# MiniLM on SST-2
# ---------------------------------------------------------------------------------------------


def finetune_minilm(work: Path, train_rows: int, seed: int = 0) -> tuple[Path, dict]:
    from lmforge.recipe import load_recipe, run_recipe

    rows = read_tsv(SST2 / "train.tsv")
    random.Random(seed).shuffle(rows)
    sub = work / "sst2-train-subset.tsv"
    with open(sub, "w", encoding="utf-8") as f:
        f.write("sentence\tlabel\n" + "".join(f"{r['sentence']}\t{r['label']}\n" for r in rows[:train_rows]))
    over = [f"finetune.data.train={sub}", "finetune.data.val_fraction=0.05", "finetune.train.warmup_steps=20",
            "finetune.train.eval_every=100000", f"finetune.train.threads={THREADS}"]
    t = time.perf_counter()
    run = run_recipe(load_recipe(REPO / "recipes/classify/sst2-minilm.yaml", over), work / "sst2-minilm",
                     until="finetune", progress=False)
    ft = run.stage("finetune")["metrics"]["pretrained"]
    return run.stage_dir("finetune") / "pretrained" / "model", {
        "train_rows": train_rows, "steps": ft["steps"], "val_accuracy": ft.get("val_accuracy"),
        "seconds": round(time.perf_counter() - t, 1), "subset": str(sub)}


def sst2_accuracy(model_dir: Path, run, batch: int = 32) -> float:
    import numpy as np

    from lmforge.tasks.base import load_task
    from lmforge.tokenizer import Tok

    task, tok = load_task(model_dir), Tok.load(model_dir)
    examples = task.read(SST2 / "dev.tsv")
    feats = [task.encode(e, tok) for e in examples]
    right = 0
    for i in range(0, len(feats), batch):
        b = task.collate(feats[i:i + batch], tok)
        ids, mask = b["input_ids"].numpy(), b["attention_mask"].numpy()
        pred = run(ids, mask, np.zeros_like(ids)).argmax(-1)
        right += int((pred == b["labels"].numpy()).sum())
    return round(right / len(feats), 4)


# ---------------------------------------------------------------------------------------------
# GPT on tiny Shakespeare
# ---------------------------------------------------------------------------------------------


def train_gpt(work: Path, width: int, steps: int) -> tuple[Path, dict]:
    from lmforge.recipe import load_recipe, run_recipe

    heads = max(4, width // 32)
    over = [f"pretrain.model.d_model={width}", f"pretrain.model.n_head={heads}", f"pretrain.model.block_size={SEQ}",
            f"pretrain.train.max_steps={steps}", "pretrain.train.batch_size=16", "pretrain.train.eval_every=100000",
            f"pretrain.train.warmup_steps={max(1, steps // 10)}", f"pretrain.train.threads={THREADS}"]
    t = time.perf_counter()
    run = run_recipe(load_recipe(REPO / "recipes/pretrain/shakespeare-char.yaml", over), work / "gpt",
                     until="pretrain", progress=False)
    m = run.stage("pretrain")["metrics"]
    return run.stage_dir("pretrain") / "model", {"width": width, "n_head": heads, "steps": steps,
                                                 "seconds": round(time.perf_counter() - t, 1),
                                                 "val_loss": m.get("val_loss") or m.get("final_val_loss")}


def gpt_perplexity(run, val_rows: list[list[int]], batch: int = 16) -> float:
    import numpy as np

    total, n = 0.0, 0
    for i in range(0, len(val_rows), batch):
        ids = np.array(val_rows[i:i + batch], dtype=np.int64)
        logits = run(ids[:, :-1], np.ones_like(ids[:, :-1]), np.zeros_like(ids[:, :-1])).astype(np.float64)
        logits -= logits.max(-1, keepdims=True)
        logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
        total -= float(np.take_along_axis(logp, ids[:, 1:, None], -1).sum())
        n += ids[:, 1:].size
    return round(math.exp(total / n), 4)


# ---------------------------------------------------------------------------------------------


def variants(src: Path, work: Path, prune_data: Path, heads: float, mlp: float, recover_steps: int,
             recover_lr: float | None, prune_batches: int) -> tuple[dict, dict]:
    """name -> (kind, directory), and what each compression step reported."""
    from lmforge.export import export
    from lmforge.export.prune import prune_dir
    from lmforge.export.quantize import quantize_dir, quantize_onnx_dir

    info: dict = {}
    t = time.perf_counter()
    _, rows = export(src, "onnx", work / "onnx", verify=True)
    info["onnx_export"] = {"max_abs_diff": max(r["max_abs_diff"] for r in rows), "checks": len(rows),
                           "seconds": round(time.perf_counter() - t, 1)}
    info["int8"] = quantize_dir(src, work / "int8")
    info["onnx_int8"] = quantize_onnx_dir(src, work / "onnx-int8")
    t = time.perf_counter()
    p = prune_dir(src, work / "pruned", heads=heads, mlp=mlp, data=prune_data, n_batches=prune_batches,
                  recover_steps=recover_steps, recover_lr=recover_lr)
    info["prune"] = {k: p[k] for k in ("params_before", "params_after", "params_ratio", "heads_per_layer",
                                       "mlp_per_layer", "importance", "heads_removed", "channels_removed")}
    info["prune"].update(recovery=p.get("recovery"), heads=heads, mlp=mlp, seconds=round(time.perf_counter() - t, 1))
    info["pruned_int8"] = quantize_dir(work / "pruned", work / "pruned-int8")
    for k in ("int8", "onnx_int8", "pruned_int8"):
        info[k] = {x: info[k][x] for x in ("fp32_bytes", "int8_bytes", "size_ratio") if x in info[k]}
    table = {"eager fp32": ("torch", src), "onnx fp32": ("onnx", work / "onnx"), "torch int8": ("torch", work / "int8"),
             "onnx int8": ("onnx", work / "onnx-int8"), "pruned fp32": ("torch", work / "pruned"),
             "pruned int8": ("torch", work / "pruned-int8")}
    return table, info


def measure(table: dict, rows: list[list[int]], quality, repeats: dict) -> dict:
    """Quality per variant, then latency with the variants interleaved (one run of each per round),
    so load from other processes on a shared machine lands on every variant alike."""
    import numpy as np

    out, runs = {}, {}
    for name, (kind, d) in table.items():
        runs[name] = torch_runner(d) if kind == "torch" else onnx_runner(d)
        out[name] = {"bytes": weights_bytes(d), **quality(d, runs[name])}
        print(name, json.dumps(out[name]), flush=True)
    for batch in (1, 32):
        ids = np.array([rows[i % len(rows)] for i in range(batch)], dtype=np.int64)
        mask, tt = np.ones_like(ids), np.zeros_like(ids)
        times: dict[str, list[float]] = {n: [] for n in runs}
        for run in runs.values():
            for _ in range(2):  # warm-up
                run(ids, mask, tt)
        for _ in range(repeats[batch]):
            for name, run in runs.items():
                t = time.perf_counter()
                run(ids, mask, tt)
                times[name].append((time.perf_counter() - t) * 1000)
        for name, ts in times.items():
            out[name][f"latency_ms_b{batch}"] = round(statistics.median(ts), 2)
            out[name][f"min_ms_b{batch}"] = round(min(ts), 2)
    base = out["eager fp32"]
    for r in out.values():
        r["size_vs_fp32"] = round(r["bytes"] / base["bytes"], 3)
        r["speedup_b1"] = round(base["latency_ms_b1"] / r["latency_ms_b1"], 2)
        r["speedup_b32"] = round(base["latency_ms_b32"] / r["latency_ms_b32"], 2)
    return out


def markdown(res: dict) -> str:
    flags = ", ".join(f for f, on in res["cpu"]["flags"].items() if on) or "none of " + ", ".join(CPU_FLAGS)
    lines = ["# Export and compression on CPU: MiniLM / SST-2 and a character-level GPT", "",
             f"Command: `{res['command']}`  ", f"Date: {res['date']}  ",
             f"Machine: {res['cpu']['model']} ({res['cpu']['cores']} cores), {THREADS} threads; "
             f"torch {res['versions']['torch']}, onnxruntime {res['versions']['onnxruntime']}  ",
             f"Instruction set: {flags}  ",
             f"Load average before / after: {res['load_average_before']} / {res['load_average_after']}", ""]
    for key, title, q, qname in (("minilm", "MiniLM (all-MiniLM-L6-v2) fine-tuned on SST-2", "dev_accuracy",
                                  "SST-2 dev accuracy"),
                                 ("gpt", "GPT (character-level, tiny Shakespeare)", "val_ppl",
                                  "val perplexity / char")):
        r = res[key]
        lines += [f"## {title}", "", f"Setup: `{json.dumps(r['setup'])}`", "",
                  "Latency: median (and min) in ms over the timed rounds, variants interleaved; speed-ups are "
                  "of the medians.", "",
                  f"| variant | weights MB | size vs fp32 | ms, batch 1 x {SEQ} | speed-up | ms, batch 32 x {SEQ} "
                  f"| speed-up | {qname} |", "|---|---|---|---|---|---|---|---|"]
        for name, v in r["variants"].items():
            lines.append(f"| {name} | {v['bytes'] / 1e6:.1f} | {v['size_vs_fp32']:.3f} | {v['latency_ms_b1']} "
                         f"(min {v['min_ms_b1']}) | {v['speedup_b1']}x | {v['latency_ms_b32']} (min {v['min_ms_b32']}) "
                         f"| {v['speedup_b32']}x | {v[q]} |")
        lines += ["", f"Compression steps: `{json.dumps(r['steps'])}`", ""]
    lines += ["## Targets", ""] + [f"- {t['target']}: **{'met' if t['met'] else 'missed'}** ({t['value']})"
                                   for t in res["targets"]]
    return "\n".join(lines) + "\n"


def targets(m: dict) -> list[dict]:
    v = m["variants"]
    fp, ox, q8 = v["eager fp32"], v["onnx fp32"], v["torch int8"]
    best8 = max(("torch int8", "onnx int8"), key=lambda k: v[k]["speedup_b32"])
    lost = round((fp["dev_accuracy"] - v[best8]["dev_accuracy"]) * 100, 2)
    return [
        {"target": "onnxruntime >= 1.5x eager PyTorch, MiniLM, seq 128, 2 threads (batch 1 / batch 32)",
         "met": ox["speedup_b1"] >= 1.5 and ox["speedup_b32"] >= 1.5,
         "value": f"{ox['speedup_b1']}x / {ox['speedup_b32']}x"},
        {"target": "torch int8 >= 1.3x torch fp32 (batch 1 / batch 32)",
         "met": q8["speedup_b1"] >= 1.3 and q8["speedup_b32"] >= 1.3,
         "value": f"{q8['speedup_b1']}x / {q8['speedup_b32']}x"},
        {"target": "onnx int8 >= 1.3x onnx fp32 (batch 1 / batch 32)",
         "met": ox["latency_ms_b1"] / v["onnx int8"]["latency_ms_b1"] >= 1.3
         and ox["latency_ms_b32"] / v["onnx int8"]["latency_ms_b32"] >= 1.3,
         "value": f"{ox['latency_ms_b1'] / v['onnx int8']['latency_ms_b1']:.2f}x / "
                  f"{ox['latency_ms_b32'] / v['onnx int8']['latency_ms_b32']:.2f}x"},
        {"target": "int8 loses <= 1 accuracy point (torch int8 / onnx int8)",
         "met": all((fp["dev_accuracy"] - v[k]["dev_accuracy"]) * 100 <= 1.0 for k in ("torch int8", "onnx int8")),
         "value": f"{round((fp['dev_accuracy'] - q8['dev_accuracy']) * 100, 2)} / "
                  f"{round((fp['dev_accuracy'] - v['onnx int8']['dev_accuracy']) * 100, 2)} points (fastest int8: "
                  f"{best8}, {lost})"},
        {"target": "int8 <= 0.3x the fp32 size (torch int8 / onnx int8)",
         "met": q8["size_vs_fp32"] <= 0.3 and v["onnx int8"]["size_vs_fp32"] <= 0.3,
         "value": f"{q8['size_vs_fp32']} / {v['onnx int8']['size_vs_fp32']}"},
    ]


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work-dir", default="runs/bench-compression", help="fine-tuned models and exports go here")
    p.add_argument("--train-rows", type=int, default=6000, help="SST-2 training rows for the brief fine-tune")
    p.add_argument("--heads", type=float, default=0.25, help="share of attention heads pruned")
    p.add_argument("--mlp", type=float, default=0.5, help="share of MLP channels pruned")
    p.add_argument("--recover-steps", type=int, default=150, help="recovery fine-tuning steps after pruning")
    p.add_argument("--gpt-width", type=int, default=256)
    p.add_argument("--gpt-steps", type=int, default=300)
    p.add_argument("--quick", action="store_true", help="fewer timing repeats (smoke runs)")
    a = p.parse_args(argv)
    import onnxruntime
    import torch

    torch.set_num_threads(THREADS)
    torch.manual_seed(0)
    work = Path(a.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    repeats = {1: 5, 32: 2} if a.quick else {1: 30, 32: 7}
    res: dict = {"command": "python benchmarks/compression.py " + " ".join(argv if argv is not None else sys.argv[1:]),
                 "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "cpu": cpu_info(),
                 "versions": {"torch": torch.__version__, "onnxruntime": onnxruntime.__version__},
                 "threads": THREADS, "seq_len": SEQ, "repeats": repeats,
                 "load_average_before": [round(x, 2) for x in os.getloadavg()]}
    from lmforge.tokenizer import Tok

    # MiniLM / SST-2
    src, setup = finetune_minilm(work, a.train_rows)
    print("minilm", json.dumps(setup), flush=True)
    dev_texts = [r["sentence"] for r in read_tsv(SST2 / "dev.tsv")]
    rows = token_rows(Tok.load(src), dev_texts, 32)
    table, steps = variants(src, work / "minilm", Path(setup["subset"]), a.heads, a.mlp, a.recover_steps, None, 8)
    res["minilm"] = {"setup": {**setup, "model": str(src)}, "steps": steps,
                     "variants": measure(table, rows, lambda d, run: {"dev_accuracy": sst2_accuracy(d, run)}, repeats)}
    res["targets"] = targets(res["minilm"])
    # GPT / tiny Shakespeare
    gsrc, gsetup = train_gpt(work, a.gpt_width, a.gpt_steps)
    print("gpt", json.dumps(gsetup), flush=True)
    text = SHAKESPEARE.read_text(encoding="utf-8")
    cut = int(len(text) * 0.9)
    gtok = Tok.load(gsrc)
    train_txt = work / "shakespeare-train.txt"
    train_txt.write_text(text[:cut], encoding="utf-8")
    val_ids = [t for ids in gtok.encode_batch([text[cut:]]) for t in ids]
    val_rows = [val_ids[i:i + SEQ + 1] for i in range(0, len(val_ids) - SEQ - 1, SEQ + 1)][:64]
    grows = [r[:SEQ] for r in val_rows]
    gtable, gsteps = variants(gsrc, work / "gpt-variants", train_txt, a.heads, a.mlp, a.recover_steps, 1e-3, 8)
    res["gpt"] = {"setup": {**gsetup, "model": str(gsrc), "val_windows": len(val_rows)}, "steps": gsteps,
                  "variants": measure(gtable, grows, lambda d, run: {"val_ppl": gpt_perplexity(run, val_rows)},
                                      repeats)}
    res["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "compression.json").write_text(json.dumps(res, indent=2) + "\n")
    (RESULTS / "compression.md").write_text(markdown(res))
    print(markdown(res))


if __name__ == "__main__":
    main()
