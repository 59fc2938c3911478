"""The task interface: what fine-tuning, evaluation, prediction (and later serving and export) see.

A task knows its data and its outputs; the trainer knows optimisation. One class per task
(classification, NER, seq2seq, QA, chat), each in its own module and registered by ``kind``:

    read(path)                 -> examples (dicts, each with an ``id``), errors name file:line
    fit(train_examples)        -> learns what the examples define (label names); saved in ``state``
    encode(example, tok)       -> features (plain lists; offsets kept; -100 where there is no loss)
    collate(features, tok)     -> a batch of tensors
    build_model(body, tok)     -> the model to train (body + head, or the body itself)
    loss(model, batch)         -> (sum of per-item losses, number of items)
    predict(model, batch, tok) -> one user-level output per example (labels+scores, spans, text)
    metrics(preds, examples)   -> {headline metric: value, ...} plus details

A fine-tuned model directory holds ``task.json`` (kind, the task's config and its fitted state), so
``lmforge evaluate --model DIR --data FILE`` needs nothing else.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, ClassVar, Iterable

import numpy as np
import torch
import torch.nn as nn

from ..config import StrictModel
from ..errors import InputError

TASK_FILE = "task.json"
TASKS: dict[str, type["Task"]] = {}


def register(cls: type["Task"]) -> type["Task"]:
    TASKS[cls.kind] = cls
    return cls


class Task:
    """Base class; subclasses set ``kind``, ``config_cls``, ``headline`` and implement the methods."""

    kind: ClassVar[str]
    headline: ClassVar[tuple[str, ...]] = ()
    # direction of each headline metric for "best checkpoint" and comparisons (True = higher is better)
    higher_is_better: ClassVar[bool] = True

    def __init__(self, cfg: StrictModel, state: dict | None = None):
        self.cfg = cfg
        self.state: dict[str, Any] = dict(state or {})

    # -- data ---------------------------------------------------------------------------------
    def read(self, path: str | Path) -> list[dict]:
        raise NotImplementedError

    def fit(self, examples: list[dict]) -> None:
        """Learn what the training examples define (e.g. the label set); default: nothing."""

    def check(self, examples: list[dict], path: str) -> list[str]:
        """Warnings about examples that are still usable (e.g. labels never seen in training)."""
        return []

    def prepare_tokenizer(self, tok):
        """A tokenizer for this task (chat adds its turn markers); default: unchanged."""
        return tok

    def example(self, value, i: int = 0) -> dict:
        """An example from raw input (a line of stdin, an API request): a text, or a dict with the
        task's fields (QA: question and context)."""
        if isinstance(value, dict):
            return {"id": str(value.get("id", i)), **value}
        return {"id": str(i), "text": str(value)}

    def encode(self, example: dict, tok) -> dict:
        raise NotImplementedError

    def collate(self, features: list[dict], tok) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def length(self, features: dict) -> int:
        """Tokens in an example (length-grouped batching, token counts)."""
        return len(features["input_ids"])

    # -- model --------------------------------------------------------------------------------
    def build_model(self, body: nn.Module, tok) -> nn.Module:
        raise NotImplementedError

    def loss(self, model: nn.Module, batch: dict) -> tuple[torch.Tensor, int]:
        raise NotImplementedError

    def count(self, batch: dict) -> int:
        """Loss items in a batch, known before the forward pass (examples by default)."""
        return int(next(iter(batch.values())).shape[0])

    def tokens(self, batch: dict) -> int:
        return int(batch["attention_mask"].sum()) if "attention_mask" in batch else 0

    @torch.no_grad()
    def predict(self, model: nn.Module, batch: dict, tok, features: list[dict]) -> list[dict]:
        raise NotImplementedError

    # -- scoring ------------------------------------------------------------------------------
    def metrics(self, predictions: list[dict], examples: list[dict]) -> dict:
        raise NotImplementedError

    def subset_scores(self, predictions: list[dict], examples: list[dict],
                      index_sets: Iterable[np.ndarray]) -> dict[str, list[float]]:
        """Headline metrics on resampled index sets (bootstrap); tasks with sufficient statistics
        (BLEU, entity F1) can override this with something faster than recomputing."""
        out: dict[str, list[float]] = {h: [] for h in self.headline}
        for idx in index_sets:
            m = self.metrics([predictions[i] for i in idx], [examples[i] for i in idx])
            for h in self.headline:
                out[h].append(float(m[h]))
        return out

    def example_errors(self, prediction: dict, example: dict) -> dict | None:
        """A row for the per-example error file when the prediction is wrong, else None."""
        return None

    def reference(self, example: dict) -> Any:
        """What a correct prediction looks like, for prediction files."""
        return None

    # -- persistence --------------------------------------------------------------------------
    def to_json(self) -> dict:
        return {"kind": self.kind, "config": self.cfg.model_dump(mode="json"), "state": self.state}

    def save(self, directory: Path) -> Path:
        from ..runs import atomic_write_json

        path = Path(directory) / TASK_FILE
        atomic_write_json(path, self.to_json())
        return path


def task_from_config(cfg: StrictModel, state: dict | None = None) -> Task:
    from . import registry  # noqa: F401  (registers every task)

    return TASKS[cfg.kind](cfg, state)


def load_task(model_dir: str | Path, overrides: dict | None = None) -> Task:
    """The task a fine-tuned model directory was trained for (``task.json``)."""
    from .registry import task_config_adapter

    path = Path(model_dir) / TASK_FILE
    if not path.exists():
        raise InputError(f"{model_dir} has no {TASK_FILE}: not a fine-tuned task model",
                         "point --model at a finetune output, e.g. runs/NAME/finetune/pretrained/model")
    blob = json.loads(path.read_text(encoding="utf-8"))
    cfg = {**blob["config"], **(overrides or {})}
    try:
        task_cfg = task_config_adapter().validate_python(cfg)
    except Exception as err:  # pydantic ValidationError
        raise InputError(f"{path}: task settings are not valid: {err}".splitlines()[0],
                         "check the key=value overrides against the task's settings") from None
    return task_from_config(task_cfg, blob.get("state"))


# -------------------------------------------------------------------------------------------------
# Shared helpers for tasks


def pad_batch(seqs: list[list[int]], pad: int, left: bool = False, dtype=torch.long) -> torch.Tensor:
    """(B, T) tensor of ``seqs`` padded with ``pad`` on the right (or left)."""
    T = max((len(s) for s in seqs), default=1) or 1
    out = torch.full((len(seqs), T), pad, dtype=dtype)
    for i, s in enumerate(seqs):
        if s:
            if left:
                out[i, T - len(s):] = torch.as_tensor(s, dtype=dtype)
            else:
                out[i, : len(s)] = torch.as_tensor(s, dtype=dtype)
    return out


def attention_mask(seqs: list[list[int]], left: bool = False) -> torch.Tensor:
    return pad_batch([[1] * len(s) for s in seqs], 0, left=left)


def field_value(rec: dict, key: str | int, path: str, line: int, what: str, setting: str) -> Any:
    """``rec[key]`` (a name, or a column position for header-less files), or a clear error."""
    k = str(key)
    if k in rec:
        return rec[k]
    if "." in k:  # nested: meta.label
        node: Any = rec
        for part in k.split("."):
            if not isinstance(node, dict) or part not in node:
                break
            node = node[part]
        else:
            return node
    if isinstance(rec.get("meta"), dict) and k in rec["meta"]:  # the data stage's output keeps fields in meta
        return rec["meta"][k]
    have = sorted(k2 for k2 in rec if not k2.isdigit())
    raise InputError(f"{path}:{line}: no {what} field '{k}' (fields: {', '.join(have) or 'positional only'})",
                     f"set {setting} to the file's field name or column number")


def require_examples(examples: list, path: str | Path) -> list:
    if not examples:
        raise InputError(f"{path}: no examples", "the file is empty; point the recipe at a file with examples")
    return examples


class WarningCounter:
    """Counted warnings about data that is still usable, reported once per kind, not per line."""

    def __init__(self):
        self.counts: dict[str, int] = {}
        self.first: dict[str, str] = {}

    def add(self, kind: str, where: str) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + 1
        self.first.setdefault(kind, where)

    def lines(self) -> list[str]:
        return [f"{n} × {kind} (first at {self.first[kind]})" for kind, n in self.counts.items()]


# -------------------------------------------------------------------------------------------------
# The trainer's objective for any task


class TaskObjective:
    """Epochs over encoded examples for the trainer: shuffled per epoch (a pure function of the
    seed and the epoch), optionally grouped by length so a batch pads little; evaluation is one
    pass over the same validation examples for the loss and the task's own metrics."""

    def __init__(self, task: Task, tok, train: list[dict], val: list[dict], val_examples: list[dict],
                 batch_size: int, seed: int, group_by_length: bool = True):
        if not train:
            raise InputError("no training examples left after encoding", "check the training file")
        self.task, self.tok = task, tok
        # validation in a fixed shuffled order, so the first ``eval_batches`` are a fair sample even
        # when the file is sorted (e.g. by label)
        order = np.random.default_rng(seed).permutation(len(val)) if val_examples else np.arange(len(val))
        val = [val[i] for i in order]
        val_examples = [val_examples[i] for i in order] if val_examples else val_examples
        self.train, self.val, self.val_examples = train, val, val_examples
        self.batch_size, self.seed, self.group_by_length = batch_size, seed, group_by_length
        self._epoch_cache: tuple[int, list[list[int]]] | None = None

    def _world(self) -> tuple[int, int]:
        if torch.distributed.is_initialized():
            return torch.distributed.get_rank(), torch.distributed.get_world_size()
        return 0, 1

    @property
    def steps_per_epoch(self) -> int:
        return max(1, math.ceil(len(self.train) / (self.batch_size * self._world()[1])))

    def _batches(self, epoch: int) -> list[list[int]]:
        """The epoch's global batches (indices into train); a short last batch is filled from the start."""
        if self._epoch_cache is not None and self._epoch_cache[0] == epoch:
            return self._epoch_cache[1]
        rng = np.random.default_rng([self.seed, epoch])
        perm = rng.permutation(len(self.train))
        B = self.batch_size * self._world()[1]
        n = self.steps_per_epoch * B
        order = np.concatenate([perm, perm[: n - len(perm)]]) if n > len(perm) else perm[:n]
        if self.group_by_length:  # sort within mega-batches of 50 batches, then shuffle the batches
            lengths = np.array([self.task.length(self.train[i]) for i in order])
            chunks = []
            for s in range(0, n, 50 * B):
                part = order[s: s + 50 * B]
                part = part[np.argsort(-lengths[s: s + 50 * B], kind="stable")]
                chunks.extend(part[i: i + B].tolist() for i in range(0, len(part), B))
            batches = [chunks[i] for i in rng.permutation(len(chunks))]
        else:
            batches = [order[i: i + B].tolist() for i in range(0, n, B)]
        self._epoch_cache = (epoch, batches)
        return batches

    def train_batch(self, step: int, micro: int, n_micro: int) -> dict[str, torch.Tensor]:
        batch = self._batches(step // self.steps_per_epoch)[step % self.steps_per_epoch]
        rank, _ = self._world()
        per = self.batch_size // n_micro
        start = rank * self.batch_size + micro * per
        idx = batch[start: start + per] or batch[:1]
        return self.task.collate([self.train[i] for i in idx], self.tok)

    def count(self, batch) -> int:
        return self.task.count(batch)

    def tokens(self, batch) -> int:
        return self.task.tokens(batch)

    def loss(self, model, batch):
        return self.task.loss(model, batch)

    def eval_batches(self, limit: int):
        n = min(len(self.val), limit * self.batch_size)
        for i in range(0, n, self.batch_size):
            yield self.task.collate(self.val[i: i + self.batch_size], self.tok), (i, min(i + self.batch_size, n))

    @torch.no_grad()
    def evaluate(self, model: nn.Module, limit: int, move, autocast) -> dict[str, float]:
        """Validation loss and the task's metrics over the same examples, in one pass."""
        total, count, preds = 0.0, 0, []
        n = 0
        for batch, (a, b) in self.eval_batches(limit):
            batch = move(batch)
            with autocast:
                loss_sum, k = self.task.loss(model, batch)
                preds.extend(self.task.predict(model, batch, self.tok, self.val[a:b]))
            total += float(loss_sum)
            count += k
            n = b
        out = {"val_loss": total / max(count, 1)}
        if n:
            m = self.task.metrics(preds, self.val_examples[:n])
            out.update({f"val_{k}": float(v) for k, v in m.items() if k in self.task.headline})
        return out
