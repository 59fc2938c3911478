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
    args = ap.parse_args()
    max_tokens = 64 if args.quick else 128
    per_level = {1: 4, 4: 8, 16: 16} if args.quick else {1: 8, 4: 32, 16: 64}
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        model_dir, n_params, n_body = build_model_dir(Path(tmp), vocab=4096)
        setup = time.perf_counter() - t0
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        env = {**os.environ, **({"OMP_NUM_THREADS": str(args.threads)} if args.threads else {})}
        proc = subprocess.Popen([str(Path(sys.executable).parent / "lmforge"), "serve", f"bench={model_dir}",
                                 "--port", str(port), "--gen-max-batch", str(args.max_batch)], cwd=ROOT, env=env,
                                 stdout=subprocess.DEVNULL)
        base = f"http://127.0.0.1:{port}"
        try:
            import httpx

            for _ in range(600):
                try:
                    if httpx.get(base + "/ready", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.1)
            lines = [ln[:120] for ln in TEXT.read_text(encoding="utf-8").splitlines() if len(ln) > 60]
            asyncio.run(run_clients(base, lines[:4], 4, 8))  # warm-up
            load_before = os.getloadavg()
            seq = asyncio.run(run_clients(base, lines[:8], 1, max_tokens))
            conc = asyncio.run(run_clients(base, lines[:8], 8, max_tokens))
            levels = {c: asyncio.run(run_clients(base, lines[8:8 + k], c, max_tokens)) for c, k in per_level.items()}
            load_after = os.getloadavg()
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    import torch

    speedup = conc["tokens_per_s"] / seq["tokens_per_s"]
    env = {"torch": torch.__version__, "python": platform.python_version(), "cpu_count": os.cpu_count(),
           "threads": torch.get_num_threads(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
           "load_average_before": [round(x, 2) for x in load_before],
           "load_average_after": [round(x, 2) for x in load_after]}
    cmd = "python benchmarks/serve_generation.py" + (" --quick" if args.quick else "")
    rows = [f"| {c} | {len(r['latency'])} | {r['tokens_per_s']:.1f} | {pct(r['latency'], 50):.2f} | "
            f"{pct(r['latency'], 95):.2f} | {pct(r['latency'], 99):.2f} | {pct(r['ttft'], 50) * 1000:.0f} | "
            f"{pct(r['ttft'], 95) * 1000:.0f} | {pct(r['ttft'], 99) * 1000:.0f} |" for c, r in levels.items()]
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

The machine's CPUs are shared with other work (see the load averages), so absolute numbers move between
runs; the ratio is the point.
"""
    RESULTS.mkdir(exist_ok=True)
    name = "serve_generation"  # the command above says whether it was --quick
    (RESULTS / f"{name}.md").write_text(md, encoding="utf-8")
    (RESULTS / f"{name}.json").write_text(json.dumps({"env": env, "max_tokens": max_tokens, "sequential": seq,
                                                      "concurrent8": conc, "speedup": speedup,
                                                      "levels": {str(c): r for c, r in levels.items()}}, indent=1))
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
