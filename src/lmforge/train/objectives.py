"""Pretraining objectives over token shards.

Batches are a pure function of (seed, step, micro-batch index, rank), so resuming at step ``s``
sees exactly the batches an uninterrupted run would, and ``N`` processes see together exactly what
one process sees with ``grad_accum = N`` (each rank takes its own micro-batches of the global batch).
"""

from __future__ import annotations

import math
from typing import Iterable

import numpy as np
import torch
import torch.nn as nn


def _rank_world() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


class CausalLM:
    """Next-token prediction on random windows of a token stream (nanoGPT's sampler, made resumable)."""

    def __init__(self, train_tokens: np.ndarray, val_tokens: np.ndarray, block_size: int, batch_size: int,
                 seed: int, val_bytes_per_token: float | None = None):
        if len(train_tokens) <= block_size + 1:
            raise ValueError(f"training data has {len(train_tokens)} tokens; need more than block_size+1={block_size + 1}")
        self.train, self.val = train_tokens, val_tokens
        self.block_size, self.batch_size, self.seed = block_size, batch_size, seed
        self.val_bytes_per_token = val_bytes_per_token

    def _windows(self, data: np.ndarray, starts: np.ndarray) -> dict[str, torch.Tensor]:
        T = self.block_size
        rows = np.stack([np.asarray(data[s : s + T + 1], dtype=np.int64) for s in starts])
        rows = torch.from_numpy(rows)
        return {"input_ids": rows[:, :-1], "labels": rows[:, 1:]}

    def train_batch(self, step: int, micro: int, n_micro: int) -> dict[str, torch.Tensor]:
        rank, world = _rank_world()
        per_micro = self.batch_size // n_micro
        # the global batch (all ranks, all micro-batches) is drawn at once from (seed, step), then
        # sliced: so the split across ranks and micro-batches never changes which windows are used
        rng = np.random.default_rng([self.seed, step])
        starts = rng.integers(0, len(self.train) - self.block_size - 1, size=self.batch_size * world)
        first = (rank * n_micro + micro) * per_micro
        return self._windows(self.train, starts[first : first + per_micro])

    def count(self, batch) -> int:
        return int((batch["labels"] != -100).sum())

    def tokens(self, batch) -> int:
        return int(batch["input_ids"].numel())

    def loss(self, model: nn.Module, batch) -> tuple[torch.Tensor, int]:
        _, loss = model(batch["input_ids"], batch["labels"], reduction="sum")
        return loss, self.count(batch)

    def eval_batches(self, limit: int) -> Iterable[dict[str, torch.Tensor]]:
        """Fixed, non-overlapping windows from the start of the validation stream (same every eval)."""
        T = self.block_size
        n_windows = (len(self.val) - 1) // T
        starts = np.arange(n_windows) * T
        for i in range(0, min(len(starts), limit * self.batch_size), self.batch_size):
            yield self._windows(self.val, starts[i : i + self.batch_size])

    def eval_metrics(self, model, loss_sum: float, count: int) -> dict[str, float]:
        val_loss = loss_sum / max(count, 1)
        out = {"val_loss": val_loss, "val_ppl": math.exp(min(val_loss, 50))}
        if self.val_bytes_per_token:
            out["val_bpb"] = val_loss / math.log(2) / self.val_bytes_per_token
        return out
