"""Trains a tiny char GPT; with KILL_AT=N it SIGKILLs itself when step N's batch is requested."""

import os
import signal
import sys
from pathlib import Path

import numpy as np
import torch

from lmforge.models.gpt import GPT, GPTConfig
from lmforge.train.config import TrainConfig
from lmforge.train.loop import Trainer
from lmforge.train.objectives import CausalLM

torch.set_num_threads(1)
out, text_path = Path(sys.argv[1]), sys.argv[2]
kill_at = int(os.environ.get("KILL_AT", "-1"))
text = Path(text_path).read_text(encoding="utf-8")[:200_000]
chars = sorted(set(text))
data = np.array([chars.index(c) for c in text], dtype=np.uint16)


class Killable(CausalLM):
    def train_batch(self, step, micro, n_micro):
        if step == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        return super().train_batch(step, micro, n_micro)


torch.manual_seed(0)
model = GPT(GPTConfig(vocab_size=len(chars), block_size=32, n_layer=2, n_head=2, d_model=32, dropout=0.1))
if os.environ.get("PEFT"):  # LoRA adapters on the same model: resume must restore them exactly too
    from lmforge.models.io import save_model
    from lmforge.models.peft import PeftSettings, base_reference, inject

    save_model(model, out.with_name(out.name + "-base"))
    inject(model, PeftSettings(r=4, dropout=0.1), base_reference(out.with_name(out.name + "-base")))
cfg = TrainConfig(max_steps=40, batch_size=8, grad_accum=2, lr=3e-3, warmup_steps=5, eval_every=10,
                  eval_batches=2, save_every=15, log_every=5)
obj = Killable(data[:180_000], data[180_000:], 32, 8, seed=3, val_bytes_per_token=1.0)
Trainer(model, obj, cfg, out, progress=False).train()
