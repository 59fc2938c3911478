"""Generation serving: continuous batching throughput and latency of /v1/completions over HTTP.

A ~10M-parameter GPT (6 layers, d_model 384, 6 heads, block 512; RANDOM INIT, which is fine for
speed: the work per token does not depend on the weights) with a byte-level BPE tokenizer trained
on examples/data/raw/reviews.txt, served by ``lmforge serve`` in a subprocess (the real server:
its guard, routes and continuous-batching engine), driven by an asyncio httpx client over streaming requests with
``ignore_eos`` so every request generates exactly ``max_tokens`` tokens.

* throughput: 8 requests one at a time vs 8 at once (rows decoded together; target >= 3x);
* latency: p50/p95/p99 of request latency and time to first token at 1, 4 and 16 concurrent clients.

    python benchmarks/serve_generation.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
TEXT = ROOT / "examples" / "data" / "raw" / "reviews.txt"


def build_model_dir(out: Path, vocab: int) -> tuple[Path, int, int]:
    """The model directory, its parameter count with and without the embedding/position tables."""
    import torch

    from lmforge.models.gpt import GPT, GPTConfig
    from lmforge.models.io import save_model
    from lmforge.tokenizer.config import TokenizerConfig
    from lmforge.tokenizer.train import train_tokenizer

    lines = [ln for ln in TEXT.read_text(encoding="utf-8").splitlines() if ln.strip()]
    tok = train_tokenizer(lines, TokenizerConfig(kind="byte_bpe", vocab_size=vocab, family="gpt"))
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=512, n_layer=6, n_head=6, d_model=384))
    tok.save(out / "tok")
    save_model(model, out / "model", extra_files=sorted((out / "tok").iterdir()))
    total = sum(p.numel() for p in model.parameters())
    return out / "model", total, total - model.wte.weight.numel() - model.wpe.weight.numel()


def baseline_app(hf_dir: str):
    """The transformers + FastAPI server a team writes by hand: ``generate`` with a streamer, one thread
    per request (no batching across requests), the same SSE chunks as /v1/completions."""
    import threading
    import uuid

    import torch
    from fastapi import Body, FastAPI
    from fastapi.responses import StreamingResponse
    from transformers import AutoModelForCausalLM, AutoTokenizer, TextIteratorStreamer

    tok = AutoTokenizer.from_pretrained(hf_dir)
    model = AutoModelForCausalLM.from_pretrained(hf_dir).eval()
    app = FastAPI()

    @app.get("/ready")
    def ready() -> dict:
        return {"status": "ok"}

    @app.post("/v1/completions")
    def complete(body: dict = Body(...)):  # (annotations are strings here: no locally imported types)
        ids = tok(body["prompt"], return_tensors="pt").input_ids
        n = int(body["max_tokens"])
        streamer = TextIteratorStreamer(tok, skip_prompt=True)
        if body.get("seed") is not None:
            torch.manual_seed(int(body["seed"]))

        def work():
            with torch.inference_mode():
                model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=n, min_new_tokens=n,
                               do_sample=True, temperature=float(body.get("temperature", 1.0)), top_k=0,
                               streamer=streamer, pad_token_id=tok.eos_token_id)

        threading.Thread(target=work, daemon=True).start()
        rid = f"cmpl-{uuid.uuid4().hex}"

        def events():
            for text in streamer:  # blocks in Starlette's thread pool, not on the event loop
                yield "data: " + json.dumps({"id": rid, "object": "text_completion",
                                             "choices": [{"index": 0, "text": text}]}) + "\n\n"
            yield "data: " + json.dumps({"id": rid, "choices": [], "usage": {"completion_tokens": n}}) + "\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    return app


def export_for_baseline(model_dir: Path, out: Path) -> Path:
    """Our random-init GPT as a transformers GPT-2 directory (same weights, same tokenizer)."""
    from lmforge.models.hf import export_hf

    return Path(export_hf(model_dir, out, "gpt2"))


def measure(base: str, lines: list[str], max_tokens: int, per_level: dict[int, int]) -> dict:
    asyncio.run(run_clients(base, lines[:4], 4, 8))  # warm-up
    seq = asyncio.run(run_clients(base, lines[:8], 1, max_tokens))
    conc = asyncio.run(run_clients(base, lines[:8], 8, max_tokens))
    levels = {c: asyncio.run(run_clients(base, lines[8:8 + k], c, max_tokens)) for c, k in per_level.items()}
    return {"seq": seq, "conc": conc, "levels": levels}


def wait_ready(base: str, proc) -> None:
    import httpx

    for _ in range(1200):
        if proc.poll() is not None:
            raise SystemExit(f"the server at {base} exited with {proc.returncode}")
        try:
            if httpx.get(base + "/ready", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"the server at {base} did not get ready")


async def one(client, prompt: str, max_tokens: int, seed: int) -> tuple[float, float, int]:
    """(latency, time to first token, tokens) of one streamed completion."""
    t0 = time.perf_counter()
    ttft, n = None, 0
    payload = {"model": "bench", "prompt": prompt, "max_tokens": max_tokens, "temperature": 0.8, "seed": seed,
               "ignore_eos": True, "stream": True, "stream_options": {"include_usage": True}}
    async with client.stream("POST", "/v1/completions", json=payload) as r:
        r.raise_for_status()
        async for line in r.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if chunk["choices"] and ttft is None:
                ttft = time.perf_counter() - t0
            if chunk.get("usage"):
                n = chunk["usage"]["completion_tokens"]
    return time.perf_counter() - t0, ttft or 0.0, n


async def run_clients(base: str, prompts: list[str], concurrency: int, max_tokens: int) -> dict:
    import httpx

    sem = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(base_url=base, timeout=600) as client:
        async def job(i, p):
            async with sem:
                return await one(client, p, max_tokens, i)

        t0 = time.perf_counter()
        out = await asyncio.gather(*(job(i, p) for i, p in enumerate(prompts)))
        wall = time.perf_counter() - t0
    lat, ttft, toks = zip(*out)
    return {"wall_s": wall, "tokens": sum(toks), "tokens_per_s": sum(toks) / wall, "latency": list(lat), "ttft": list(ttft)}


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, round(q / 100 * (len(xs) - 1))))]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="shorter generations, fewer requests (~1-2 min)")
    ap.add_argument("--max-batch", type=int, default=16)
    ap.add_argument("--threads", type=int, default=0, help="torch threads in the server (0: torch's default)")
    ap.add_argument("--baseline", help=argparse.SUPPRESS)  # HF_DIR: run the transformers server
    ap.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--no-baseline", action="store_true", help="skip the transformers + FastAPI server")
    args = ap.parse_args()
    if args.baseline:
        import uvicorn

        uvicorn.run(baseline_app(args.baseline), host="127.0.0.1", port=args.port, log_level="warning")
        return 0
    max_tokens = 64 if args.quick else 128
    per_level = {1: 4, 4: 8, 16: 16} if args.quick else {1: 8, 4: 32, 16: 64}
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        model_dir, n_params, n_body = build_model_dir(Path(tmp), vocab=4096)
        setup = time.perf_counter() - t0
        lines = [ln[:120] for ln in TEXT.read_text(encoding="utf-8").splitlines() if len(ln) > 60]
        env = {**os.environ, **({"OMP_NUM_THREADS": str(args.threads)} if args.threads else {})}
        servers = {"lmforge": [str(Path(sys.executable).parent / "lmforge"), "serve", f"bench={model_dir}",
                               "--gen-max-batch", str(args.max_batch)]}
        if not args.no_baseline:
            hf = export_for_baseline(model_dir, Path(tmp) / "hf")
            servers["transformers"] = [sys.executable, __file__, "--baseline", str(hf)]
        load_before = os.getloadavg()
        results = {}
        for name, cmd in servers.items():
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            proc = subprocess.Popen([*cmd, "--port", str(port)], cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
            base = f"http://127.0.0.1:{port}"
            try:
                wait_ready(base, proc)
                results[name] = measure(base, lines, max_tokens, per_level)
                print(name, {k: round(v["tokens_per_s"], 1) for k, v in results[name]["levels"].items()}, flush=True)
            finally:
                proc.terminate()
                proc.wait(timeout=30)
        load_after = os.getloadavg()
        seq, conc, levels = (results["lmforge"][k] for k in ("seq", "conc", "levels"))
    import torch

    speedup = conc["tokens_per_s"] / seq["tokens_per_s"]
    env = {"torch": torch.__version__, "python": platform.python_version(), "cpu_count": os.cpu_count(),
           "threads": torch.get_num_threads(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
           "load_average_before": [round(x, 2) for x in load_before],
           "load_average_after": [round(x, 2) for x in load_after]}
    cmd = " ".join(["python", "benchmarks/serve_generation.py", *sys.argv[1:]])

    def table(levels: dict, server: str = "") -> list[str]:
        return [f"| {server + ' | ' if server else ''}{c} | {len(r['latency'])} | {r['tokens_per_s']:.1f} | "
                f"{pct(r['latency'], 50):.2f} | {pct(r['latency'], 95):.2f} | {pct(r['latency'], 99):.2f} | "
                f"{pct(r['ttft'], 50) * 1000:.0f} | {pct(r['ttft'], 95) * 1000:.0f} | {pct(r['ttft'], 99) * 1000:.0f} |"
                for c, r in levels.items()]

    rows = table(levels)
    side = ""
    if "transformers" in results:
        b = results["transformers"]
        side = f"""
## Side by side: a transformers + FastAPI server

The same weights exported to a transformers GPT-2 directory (`lmforge export --to hf`), served by a plain
FastAPI app written for this benchmark: `generate` with a `TextIteratorStreamer`, one thread per request,
the same SSE chunks; the same client and load.

| server | mode | tokens/s |
|---|---|---|
| lmforge | one at a time | {seq['tokens_per_s']:.1f} |
| lmforge | 8 concurrent | {conc['tokens_per_s']:.1f} |
| transformers | one at a time | {b['seq']['tokens_per_s']:.1f} |
| transformers | 8 concurrent | {b['conc']['tokens_per_s']:.1f} |

| server | clients | requests | tokens/s | latency p50 s | p95 s | p99 s | TTFT p50 ms | p95 ms | p99 ms |
|---|---|---|---|---|---|---|---|---|---|
{chr(10).join(table(levels, "lmforge") + table(b["levels"], "transformers"))}

With 8 concurrent streams lmforge generates **{conc['tokens_per_s'] / b['conc']['tokens_per_s']:.2f}x** the
tokens/s of the transformers server.
"""
    md = f"""# Generation serving: continuous batching over HTTP (/v1/completions, streaming)

Command: `{cmd}`

Environment: {json.dumps(env)}

Model: GPT, 6 layers, d_model 384, 6 heads, block 512, vocab 4096 (byte-level BPE trained on
examples/data/raw/reviews.txt): {n_params / 1e6:.1f}M parameters with embeddings, {n_body / 1e6:.1f}M
without. Random init (speed does not depend on the weights). Server: `lmforge serve
bench=MODEL_DIR --gen-max-batch {args.max_batch}` in a subprocess; client: asyncio httpx, streamed requests,
`ignore_eos`, temperature 0.8, {max_tokens} new tokens each, prompts of ~120 characters. Setup (tokenizer +
model) {setup:.1f} s, not timed below.

## Throughput: 8 requests one at a time vs 8 at once

| mode | wall s | tokens | tokens/s |
|---|---|---|---|
| one at a time | {seq['wall_s']:.2f} | {seq['tokens']} | {seq['tokens_per_s']:.1f} |
| 8 concurrent | {conc['wall_s']:.2f} | {conc['tokens']} | {conc['tokens_per_s']:.1f} |

Speed-up with continuous batching: **{speedup:.2f}x** (target >= 3x).

## Latency by concurrency

| clients | requests | tokens/s | latency p50 s | p95 s | p99 s | TTFT p50 ms | p95 ms | p99 ms |
|---|---|---|---|---|---|---|---|---|
{chr(10).join(rows)}
{side}
The machine's CPUs are shared with other work (see the load averages), so absolute numbers move between
runs; the ratio is the point.
"""
    RESULTS.mkdir(exist_ok=True)
    name = "serve_generation"  # the command above says whether it was --quick
    (RESULTS / f"{name}.md").write_text(md, encoding="utf-8")
    (RESULTS / f"{name}.json").write_text(json.dumps({"env": env, "max_tokens": max_tokens, "sequential": seq,
                                                      "concurrent8": conc, "speedup": speedup,
                                                      "levels": {str(c): r for c, r in levels.items()},
                                                      "servers": {k: {"sequential": v["seq"], "concurrent8": v["conc"],
                                                                      "levels": {str(c): r for c, r in v["levels"].items()}}
                                                                  for k, v in results.items()}}, indent=1))
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
