"""Pretraining objectives over token shards: causal LM, masked LM + next-sentence prediction, seq2seq.

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
import torch.nn.functional as F


def _rank_world() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def micro_slice(step: int, micro: int, n_micro: int, batch_size: int) -> tuple[int, int, int]:
    """(global batch size, first row, rows) of this rank's micro-batch within the step's global batch."""
    rank, world = _rank_world()
    per_micro = batch_size // n_micro
    return batch_size * world, (rank * n_micro + micro) * per_micro, per_micro


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
        total, first, rows = micro_slice(step, micro, n_micro, self.batch_size)
        # the global batch (all ranks, all micro-batches) is drawn at once from (seed, step), then
        # sliced: so the split across ranks and micro-batches never changes which windows are used
        rng = np.random.default_rng([self.seed, step])
        starts = rng.integers(0, len(self.train) - self.block_size - 1, size=total)
        return self._windows(self.train, starts[first : first + rows])

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


# ---------------------------------------------------------------------------------------------
# Masked LM + next-sentence prediction (BERT)


class BertPretrainModel(nn.Module):
    """BERT with both pretraining heads in one forward (so DDP sees every parameter used).

    MLM logits are computed only at the masked positions (a (B·T, V) projection would dominate the
    cost). ``module`` is the BERT itself: ``checkpoint.unwrap`` reaches it, so what is saved is a
    plain BERT checkpoint. Without NSP the pooler and NSP head are frozen (they get no gradient).
    """

    def __init__(self, bert: nn.Module, nsp: bool = True):
        super().__init__()
        self.module = bert
        self.nsp = nsp
        if not nsp:
            for p in (*bert.pooler.parameters(), *bert.nsp_head.parameters()):
                p.requires_grad_(False)

    @property
    def config(self):
        return self.module.config

    def forward(self, input_ids, labels, token_type_ids=None, attention_mask=None):
        h = self.module.hidden_states(input_ids, token_type_ids, attention_mask)
        picked = h[labels != -100]
        mlm = self.module.mlm_logits(picked)
        nsp = self.module.nsp_logits(h) if self.nsp else None
        return mlm, nsp


class MaskedLM:
    """BERT pretraining: ``[CLS] A [SEP] B [SEP]`` pairs cut from documents, 15% of tokens masked.

    A pair is a window inside one document (found through the shard's document index), split at a
    random point; with NSP, half the time B is replaced by a span of the same length from a random
    document (label 1, "not next"), as in the BERT paper. Masking (80% [MASK] / 10% random / 10%
    kept, optionally whole words) is ``models.bert.mask_tokens`` with a generator seeded by
    (seed, step), applied to the whole global batch, so batches are a pure function of the step.
    The loss is the summed masked-token cross-entropy plus the NSP cross-entropy weighted by the
    expected number of masked tokens per pair, normalised by the window's masked tokens: about
    ``mlm_mean + nsp_mean`` and exactly the same for any split into micro-batches or ranks.
    """

    def __init__(self, train_tokens: np.ndarray, train_offsets: np.ndarray, val_tokens: np.ndarray,
                 val_offsets: np.ndarray, block_size: int, batch_size: int, seed: int, masking, cls_id: int,
                 sep_id: int, pad_id: int, mask_prob: float = 0.15, whole_word: bool = False, nsp: bool = True,
                 short_seq_prob: float = 0.1):
        from ..models.bert import MaskingInfo

        if block_size < 8:
            raise ValueError("block_size must be at least 8 for [CLS] A [SEP] B [SEP] pairs")
        self.train = (np.asarray(train_tokens), np.asarray(train_offsets, dtype=np.int64))
        self.val = (np.asarray(val_tokens), np.asarray(val_offsets, dtype=np.int64))
        for name, (tok, _) in (("training", self.train), ("validation", self.val)):
            if len(tok) < 16:
                raise ValueError(f"{name} data has only {len(tok)} tokens")
        self.block_size, self.batch_size, self.seed = block_size, batch_size, seed
        self.info = MaskingInfo.coerce(masking)
        self.cls_id, self.sep_id, self.pad_id = cls_id, sep_id, pad_id
        self.mask_prob, self.whole_word, self.nsp, self.short_seq_prob = mask_prob, whole_word, nsp, short_seq_prob
        self.nsp_weight = mask_prob * (block_size - 3)
        self._cache: tuple[int, dict] | None = None
        self._val_cache: list[dict] | None = None

    # -- pairs -----------------------------------------------------------------------------------
    def _span(self, data, rng, length: int) -> np.ndarray:
        tokens, offsets = data
        pos = int(rng.integers(0, len(tokens)))
        d = int(np.searchsorted(offsets, pos, side="right")) - 1
        start, end = int(offsets[d]), int(offsets[d + 1])
        s = int(rng.integers(start, max(start, end - length) + 1))
        return np.asarray(tokens[s : min(s + length, end)], dtype=np.int64)

    def _pair(self, data, rng) -> tuple[list[int], list[int], int]:
        room = self.block_size - (3 if self.nsp else 2)
        n = room if rng.random() >= self.short_seq_prob else int(rng.integers(2, room + 1))
        window = self._span(data, rng, n)
        if not self.nsp:
            return [self.cls_id, *window.tolist(), self.sep_id], [0] * (len(window) + 2), 0
        if len(window) < 2:  # a one-token document: pair it with a random span
            a, b, label = window, self._span(data, rng, n - len(window)), 1
        else:
            cut = int(rng.integers(1, len(window)))
            a, b, label = window[:cut], window[cut:], 0
            if rng.random() < 0.5:
                b, label = self._span(data, rng, len(b)), 1
        ids = [self.cls_id, *a.tolist(), self.sep_id, *b.tolist(), self.sep_id]
        types = [0] * (len(a) + 2) + [1] * (len(b) + 1)
        return ids, types, label

    def _batch(self, data, rng, n: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
        from ..models.bert import mask_tokens

        pairs = [self._pair(data, rng) for _ in range(n)]
        T = max(len(p[0]) for p in pairs)
        ids = torch.full((n, T), self.pad_id, dtype=torch.long)
        types = torch.zeros((n, T), dtype=torch.long)
        att = torch.zeros((n, T), dtype=torch.long)
        for i, (x, t, _) in enumerate(pairs):
            ids[i, : len(x)], types[i, : len(t)], att[i, : len(x)] = torch.tensor(x), torch.tensor(t), 1
        inputs, labels = mask_tokens(ids, self.info, self.mask_prob, self.whole_word, generator=gen)
        labels = labels.masked_fill(att == 0, -100)
        inputs = torch.where(att == 0, ids, inputs)
        batch = {"input_ids": inputs, "labels": labels, "token_type_ids": types, "attention_mask": att}
        if self.nsp:
            batch["next_sentence_label"] = torch.tensor([p[2] for p in pairs], dtype=torch.long)
        return batch

    def train_batch(self, step: int, micro: int, n_micro: int) -> dict[str, torch.Tensor]:
        total, first, rows = micro_slice(step, micro, n_micro, self.batch_size)
        if self._cache is None or self._cache[0] != step:
            gen = torch.Generator().manual_seed(int(np.random.default_rng([self.seed, step, 1]).integers(2**62)))
            self._cache = (step, self._batch(self.train, np.random.default_rng([self.seed, step]), total, gen))
        return {k: v[first : first + rows] for k, v in self._cache[1].items()}

    # -- loss --------------------------------------------------------------------------------------
    def count(self, batch) -> int:
        return int((batch["labels"] != -100).sum())

    def tokens(self, batch) -> int:
        return int(batch["attention_mask"].sum())

    def _forward(self, model: nn.Module, batch):
        labels = batch["labels"]
        mlm, nsp = model(batch["input_ids"], labels, batch["token_type_ids"], batch["attention_mask"])
        target = labels[labels != -100]
        mlm_sum = F.cross_entropy(mlm.float(), target, reduction="sum")
        nsp_sum = F.cross_entropy(nsp.float(), batch["next_sentence_label"], reduction="sum") if nsp is not None else None
        return mlm, nsp, target, mlm_sum, nsp_sum

    def loss(self, model: nn.Module, batch) -> tuple[torch.Tensor, int]:
        _, _, target, mlm_sum, nsp_sum = self._forward(model, batch)
        total = mlm_sum if nsp_sum is None else mlm_sum + self.nsp_weight * nsp_sum
        return total, len(target)

    @torch.no_grad()
    def evaluate(self, model: nn.Module, limit: int, move, autocast) -> dict[str, float]:
        """Masked-token loss/accuracy and NSP loss/accuracy over the fixed validation pairs, one pass."""
        stats = np.zeros(5)  # mlm loss sum, masked tokens, correct, nsp loss sum, nsp correct
        pairs = 0
        for batch in self.eval_batches(limit):
            batch = move(batch)
            with autocast:
                mlm, nsp, target, mlm_sum, nsp_sum = self._forward(model, batch)
            stats += [float(mlm_sum), len(target), float((mlm.argmax(-1) == target).sum()),
                      float(nsp_sum) if nsp is not None else 0.0,
                      float((nsp.argmax(-1) == batch["next_sentence_label"]).sum()) if nsp is not None else 0]
            pairs += int(batch["input_ids"].shape[0])
        mlm_sum, n, correct, nsp_sum, nsp_correct = stats
        val_loss = mlm_sum / max(n, 1)
        out = {"val_loss": val_loss, "val_ppl": math.exp(min(val_loss, 50)), "val_accuracy": correct / max(n, 1)}
        if self.nsp:
            out.update(val_nsp_loss=nsp_sum / max(pairs, 1), val_nsp_accuracy=nsp_correct / max(pairs, 1))
        return out

    def eval_batches(self, limit: int) -> Iterable[dict[str, torch.Tensor]]:
        """The same pairs and masks at every evaluation (seeded once)."""
        if self._val_cache is None:
            rng = np.random.default_rng([self.seed, 2**31])
            gen = torch.Generator().manual_seed(self.seed)
            self._val_cache = [self._batch(self.val, rng, self.batch_size, gen) for _ in range(limit)]
        yield from self._val_cache[:limit]

    def eval_metrics(self, model, loss_sum: float, count: int) -> dict[str, float]:
        val_loss = loss_sum / max(count, 1)
        return {"val_loss": val_loss, "val_ppl": math.exp(min(val_loss, 50))}


# ---------------------------------------------------------------------------------------------
# Sequence to sequence


class Seq2SeqLM:
    """Encoder-decoder training on (source, target) pairs; loss = target tokens' cross-entropy.

    ``pairs`` mode: explicit lists of (source ids, target ids) (e.g. translations), sampled with
    replacement by (seed, step); targets end with EOS. Stream mode (``pairs=None``): a random window
    of the token stream, its first ``source_len`` tokens the source and the next ``target_len`` the
    target (next-segment generation). Decoder inputs are the labels shifted right behind the start id.
    """

    def __init__(self, batch_size: int, seed: int, start_id: int, pad_id: int, eos_id: int | None = None,
                 train_pairs: list | None = None, val_pairs: list | None = None,
                 train_tokens: np.ndarray | None = None, val_tokens: np.ndarray | None = None,
                 source_len: int = 64, target_len: int = 64, val_bytes_per_token: float | None = None):
        self.batch_size, self.seed = batch_size, seed
        self.start_id, self.pad_id, self.eos_id = start_id, pad_id, eos_id
        self.train_pairs, self.val_pairs = train_pairs, val_pairs
        self.train, self.val = train_tokens, val_tokens
        self.S, self.T = source_len, target_len
        self.val_bytes_per_token = val_bytes_per_token
        if train_pairs is None:
            for name, data in (("training", train_tokens), ("validation", val_tokens)):
                if data is None or len(data) <= self.S + self.T:
                    raise ValueError(f"{name} data has {0 if data is None else len(data)} tokens; "
                                     f"need more than source_len+target_len={self.S + self.T}")
        elif not train_pairs or not val_pairs:
            raise ValueError("seq2seq needs training and validation pairs")

    def _collate(self, pairs: list) -> dict[str, torch.Tensor]:
        from ..models.seq2seq import shift_right

        S, T = max(len(p[0]) for p in pairs), max(len(p[1]) for p in pairs)
        src = torch.full((len(pairs), S), self.pad_id, dtype=torch.long)
        att = torch.zeros((len(pairs), S), dtype=torch.long)
        labels = torch.full((len(pairs), T), -100, dtype=torch.long)
        for i, (s, t) in enumerate(pairs):
            src[i, : len(s)], att[i, : len(s)], labels[i, : len(t)] = torch.as_tensor(s), 1, torch.as_tensor(t)
        return {"src": src, "attention_mask": att, "labels": labels,
                "tgt": shift_right(labels, self.start_id, self.pad_id)}

    def _stream_pairs(self, data: np.ndarray, starts) -> list:
        n = self.S + self.T
        rows = [np.asarray(data[s : s + n], dtype=np.int64) for s in starts]
        return [(r[: self.S], r[self.S :]) for r in rows]

    def train_batch(self, step: int, micro: int, n_micro: int) -> dict[str, torch.Tensor]:
        total, first, rows = micro_slice(step, micro, n_micro, self.batch_size)
        rng = np.random.default_rng([self.seed, step])
        if self.train_pairs is not None:
            idx = rng.integers(0, len(self.train_pairs), size=total)[first : first + rows]
            return self._collate([self.train_pairs[i] for i in idx])
        starts = rng.integers(0, len(self.train) - self.S - self.T, size=total)[first : first + rows]
        return self._collate(self._stream_pairs(self.train, starts))

    def count(self, batch) -> int:
        return int((batch["labels"] != -100).sum())

    def tokens(self, batch) -> int:
        return int(batch["attention_mask"].sum()) + self.count(batch)

    def loss(self, model: nn.Module, batch) -> tuple[torch.Tensor, int]:
        logits, _ = model(batch["src"], batch["tgt"], attention_mask=batch["attention_mask"])
        loss = F.cross_entropy(logits.float().view(-1, logits.size(-1)), batch["labels"].reshape(-1),
                               ignore_index=-100, reduction="sum")
        return loss, self.count(batch)

    def eval_batches(self, limit: int) -> Iterable[dict[str, torch.Tensor]]:
        if self.val_pairs is not None:
            pairs = self.val_pairs[: limit * self.batch_size]
        else:
            n = self.S + self.T
            starts = np.arange((len(self.val) - 1) // n)[: limit * self.batch_size] * n
            pairs = self._stream_pairs(self.val, starts)
        for i in range(0, len(pairs), self.batch_size):
            yield self._collate(pairs[i : i + self.batch_size])

    def eval_metrics(self, model, loss_sum: float, count: int) -> dict[str, float]:
        val_loss = loss_sum / max(count, 1)
        out = {"val_loss": val_loss, "val_ppl": math.exp(min(val_loss, 50))}
        if self.val_bytes_per_token and self.val_pairs is None:
            out["val_bpb"] = val_loss / math.log(2) / self.val_bytes_per_token
        return out
