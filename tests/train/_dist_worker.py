"""One data-parallel training run; started by torchrun (2 ranks) or directly (1 process).

    _dist_worker.py OUT TEXT MODE MAX_STEPS BATCH_SIZE GRAD_ACCUM [OPTIMIZER]

Writes OUT/model (rank 0). Same seed, data and schedule in every configuration, so a 2-rank run
with batch B must end with the weights of a 1-process run with batch 2B and grad_accum 2.
"""

import sys
from pathlib import Path

import numpy as np
import torch

from lmforge.models.gpt import GPT, GPTConfig
from lmforge.train.config import TrainConfig
from lmforge.train.loop import Trainer
from lmforge.train.objectives import CausalLM

torch.set_num_threads(1)
out, text_path, mode = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
max_steps, batch, accum = (int(x) for x in sys.argv[4:7])
optimizer = sys.argv[7] if len(sys.argv) > 7 else "adamw"
text = Path(text_path).read_text(encoding="utf-8")[:60_000]
chars = sorted(set(text))
data = np.array([chars.index(c) for c in text], dtype=np.uint16)

torch.manual_seed(0)
model = GPT(GPTConfig(vocab_size=len(chars), block_size=16, n_layer=2, n_head=2, d_model=32, positions="rope",
                      norm="rmsnorm", mlp="swiglu", bias=False))
cfg = TrainConfig(max_steps=max_steps, batch_size=batch, grad_accum=accum, lr=3e-3, warmup_steps=0,
                  schedule="constant", optimizer=optimizer, eval_every=4, eval_batches=2, save_every=4,
                  distributed=mode, grad_clip=0.5)
obj = CausalLM(data[:54_000], data[54_000:], 16, batch, seed=5, val_bytes_per_token=1.0)
Trainer(model, obj, cfg, out, progress=False).train()
