"""The finetune stage for any task, and loading/predicting with what it writes.

``run`` reads the task's training data (and validation data, or a split of the training data made
by ``data/split.py``), fits the task (labels), encodes, builds the model from the body and trains it
with the one trainer. With ``compare_random_init`` the same model is also trained from a randomly
initialised body with the same budget, so the report can show what pretraining bought. Each
variant's ``model/`` directory holds the weights, the tokenizer and ``task.json``.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Literal

import torch
from pydantic import Field, model_validator
from rich.console import Console

from ..config import StrictModel
from ..errors import InputError
from ..models.layers import set_attention_dropout
from ..models.io import resolve_model_dir  # noqa: F401  (re-exported: recipes and benchmarks use it here)
from ..models.peft import PeftSettings
from ..runs import StageResult, atomic_write_json, set_seed
from ..train.config import ModelConfig, TrainConfig
from .base import Task, TaskObjective, load_task, task_from_config
from .distill import DistillSettings
from .registry import TaskConfig

console = Console(stderr=True)


class FoldSpec(StrictModel):
    """Cross-validation: fold ``index`` of ``k`` of the training file is held out as the test set."""

    k: int = Field(..., ge=2)
    index: int = Field(..., ge=0)
    mode: Literal["stratified", "grouped", "random"] | None = Field(
        None, description="null: stratified by label where each example has one label, else random")
    seed: int = 0
    group_field: str | None = Field(None, description="grouped: an example key whose equal values stay in one fold")

    @model_validator(mode="after")
    def _index(self):
        if self.index >= self.k:
            raise ValueError(f"fold index {self.index} is not below k={self.k}")
        return self


class TaskData(StrictModel):
    train: str | None = None
    val: str | None = Field(None, description="validation file; unset = val_fraction of train")
    test: str | None = None
    val_fraction: float = Field(0.1, gt=0, lt=1)
    split_seed: int = 0
    max_train_examples: int | None = Field(None, ge=1, description="use the first N training examples")
    max_val_examples: int | None = Field(None, ge=1)
    max_test_examples: int | None = Field(None, ge=1)
    fold: FoldSpec | None = Field(None, description="hold out one cross-validation fold of train as the test "
                                  "set (lmforge cv sets this for each fold)")


class FinetuneTrainConfig(TrainConfig):
    """Trainer defaults suited to fine-tuning; a partial ``train:`` section keeps the rest of them."""

    max_steps: int = Field(300, ge=1)
    lr: float = Field(3e-4, gt=0)
    warmup_steps: int = Field(30, ge=0)
    eval_every: int = Field(50, ge=1)
    weight_decay: float = Field(0.01, ge=0)
    min_lr_ratio: float = Field(0.0, ge=0, le=1)
    keep_best: bool = True
    group_by_length: bool = Field(True, description="batches of similar length (less padding)")


class FinetuneConfig(StrictModel):
    task: TaskConfig = Field(default_factory=lambda: {"kind": "classification"})  # type: ignore[assignment]
    data: TaskData
    init_from: str | None = Field(None, description="a model directory (lmforge or Hugging Face GPT-2/LLaMA/BERT), "
                                  "or package:NAME, to start from instead of the pretrain stage's model")
    model: ModelConfig | None = Field(None, description="train from zero: a fresh body of this architecture "
                                      "(family gpt, bert, seq2seq, rnn or bow) on the recipe's tokenizer stage")
    compare_random_init: bool = False
    attention_dropout: float | None = Field(
        None, ge=0.0, lt=1.0,
        description="override the body's dropout on attention probabilities while fine-tuning (0 lets "
                    "PyTorch use its fused attention kernel on CPU: measured 2x faster and half the "
                    "activation memory for MiniLM at 384 tokens); null keeps the body's own")
    distill: DistillSettings | None = Field(None, description="train with a fine-tuned teacher's soft labels "
                                            "(classification, ner, translation, summarization, chat): "
                                            "{teacher: DIR, temperature: 2, alpha: 0.5}")
    peft: PeftSettings | None = Field(None, description="train adapters (LoRA, DoRA, rsLoRA, IA3) instead of the "
                                      "whole body: {method: lora, r: 8, alpha: 16, target: all-linear}")
    train: FinetuneTrainConfig = Field(default_factory=FinetuneTrainConfig)

    @model_validator(mode="after")
    def _one_body(self):
        if self.model is not None and self.init_from:
            raise ValueError("set finetune.model (train from zero) or finetune.init_from, not both")
        if self.model is not None and self.model.family is None:
            raise ValueError("finetune.model needs a family: gpt, bert, seq2seq, rnn or bow")
        return self

    def input_paths(self) -> list[str]:
        paths = [p for p in (self.data.train, self.data.val, self.data.test) if p]
        if hasattr(self.task, "data_files"):  # a task's path may name several files (PREFIX.lang) or a selector
            paths = [f for p in paths for f in self.task.data_files(p)]
        paths += getattr(self.task, "input_paths", lambda: [])()
        if self.init_from:
            paths.append(str(resolve_model_dir(self.init_from)))
        if self.model is not None and self.model.vectors:  # word vectors that initialise a from-zero body
            paths.append(self.model.vectors)
        if self.distill is not None:  # a retrained teacher retrains the student
            paths.append(self.distill.teacher)
        return paths


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
    model = load_model(model_dir)
    return getattr(model, "body", model)  # a fine-tuned model: continue from its body


def read_split(task: Task, data: TaskData, split: str) -> list[dict]:
    path = getattr(data, split)
    if path is None:
        raise InputError(f"finetune.data.{split} is not set", f"set finetune.data.{split} to a file")
    examples = task.read(path)
    cap = getattr(data, f"max_{split}_examples")
    return examples[:cap] if cap else examples


def split_train_val(task: Task, examples: list[dict], data: TaskData) -> tuple[list[dict], list[dict]]:
    """Validation examples out of the training file (stratified by label where there is one)."""
    from ..data.config import SplitConfig
    from ..data.split import assign_splits

    label = examples[0].get("label")
    mode = "stratified" if isinstance(label, (str, int)) else "random"
    records = [{"id": f"{i}:{e['id']}", "meta": {"label": str(e.get("label")), "augmented_from": _source(e)}}
               for i, e in enumerate(examples)]
    assign = assign_splits(records, SplitConfig(val_fraction=data.val_fraction, seed=data.split_seed, mode=mode))
    train = [e for e, a in zip(examples, assign) if a == 0]
    val = [e for e, a in zip(examples, assign) if a == 1]
    if not val:
        raise InputError(f"{data.train}: too few examples to hold out validation ({len(examples)})",
                         "add examples, raise finetune.data.val_fraction or set finetune.data.val")
    return train, val


def _source(e: dict) -> str:
    """The id an example was augmented from, else its own: a copy and its source share one side."""
    return str(e.get("augmented_from") or (e.get("meta") or {}).get("augmented_from") or e["id"])


def _example_text(e: dict) -> str:
    """What near-duplicate grouping compares: the example's input text, whatever the task calls it."""
    for key in ("text", "source", "context"):
        if isinstance(e.get(key), str):
            return e[key] + (" " + e["question"] if isinstance(e.get("question"), str) else "")
    if isinstance(e.get("tokens"), list):
        return " ".join(map(str, e["tokens"]))
    return json.dumps({k: v for k, v in e.items() if k != "id"}, ensure_ascii=False, sort_keys=True)


def fold_split(task: Task, data: TaskData, examples: list[dict]) -> tuple[list[dict], list[dict]]:
    """(the other folds, the held-out fold) of ``examples`` under ``data.fold``."""
    from ..data.split import assign_folds

    f = data.fold
    scalar = all(isinstance(e.get("label"), (str, int)) for e in examples)
    mode = f.mode or ("stratified" if scalar else "random")
    if mode == "stratified" and not scalar:
        raise InputError(f"{data.train}: stratified folds need one label per example",
                         "set finetune.data.fold.mode to random or grouped")
    records = [{"id": str(i), "text": _example_text(e),
                "meta": {"label": str(e.get("label")), "augmented_from": _source(e),
                         **({f.group_field: e.get(f.group_field)} if f.group_field else {})}}
               for i, e in enumerate(examples)]
    folds = assign_folds(records, f.k, mode, f.seed, group_field=f.group_field)
    return ([e for e, i in zip(examples, folds) if i != f.index], [e for e, i in zip(examples, folds) if i == f.index])


def training_split(task: Task, data: TaskData) -> tuple[list[dict], list[dict]]:
    """(train, validation) examples exactly as fine-tuning used them (deterministic: the evaluate
    stage re-derives the training examples for its baselines)."""
    examples = read_split(task, data, "train")
    if data.fold is not None:
        examples = fold_split(task, data, examples)[0]
    if data.val:
        return examples, read_split(task, data, "val")
    return split_train_val(task, examples, data)


def held_out_fold(task: Task, data: TaskData) -> list[dict]:
    """The test examples of a cross-validation fold: the held-out part of the training file."""
    return fold_split(task, data, read_split(task, data, "train"))[1]


def encode_all(task: Task, examples: list[dict], tok) -> list[dict]:
    return [task.encode(e, tok) for e in examples]


def _report_warnings(task: Task, where: str) -> list[str]:
    lines = getattr(getattr(task, "warnings", None), "lines", lambda: [])()
    for line in lines:
        console.print(f"[yellow]warning[/yellow] {where}: {line}")
    return lines


def fresh_body(model_cfg: ModelConfig, tok):
    """A randomly initialised body of ``model_cfg``'s family for ``tok`` (training from zero)."""
    from ..train.pretrain import build_family

    return build_family(model_cfg.family, model_cfg, tok.vocab_size, tok)


def run(cfg: FinetuneConfig, pretrain_model_dir: Path | None, out_dir: Path, progress: bool = True,
        tokenizer_dir: Path | None = None) -> StageResult:
    """``pretrain_model_dir``: the pretrain stage's model (the default body); ``tokenizer_dir``: the
    tokenizer stage's output, used with ``finetune.model`` (from zero)."""
    from ..models.io import rebuild
    from ..tokenizer import Tok
    from ..train.loop import Trainer

    if cfg.model is not None:
        if tokenizer_dir is None or not (Path(tokenizer_dir) / "tokenizer.json").exists():
            raise InputError("finetune.model (from zero) needs the recipe's tokenizer stage",
                             "add a tokenizer: section (e.g. files: [the training file])")
        body_dir = Path(tokenizer_dir)
    else:
        body_dir = resolve_model_dir(cfg.init_from) if cfg.init_from else pretrain_model_dir
    if body_dir is None:
        raise InputError("finetune has no body to start from",
                         "add a pretrain section, set finetune.init_from, or set finetune.model (from zero)")
    task = task_from_config(cfg.task)
    train_ex, val_ex = training_split(task, cfg.data)
    task.fit(train_ex)
    warnings = task.check(val_ex, cfg.data.val or "validation split")
    tok = task.prepare_tokenizer(Tok.load(body_dir))
    train_f, val_f = encode_all(task, train_ex, tok), encode_all(task, val_ex, tok)
    warnings += _report_warnings(task, "finetune")
    distill_info = None
    if cfg.distill is not None:
        from .distill import attach_teacher_logits

        distill_info = attach_teacher_logits(cfg.distill, task, train_ex, train_f, progress, tok=tok)
        task.distill = (cfg.distill.temperature, cfg.distill.alpha)
    variants = ["pretrained", "random"] if cfg.compare_random_init else ["pretrained"]
    metrics: dict = {"task": task.kind, "train_examples": len(train_ex), "val_examples": len(val_ex)}
    if distill_info is not None:
        metrics["distill"] = distill_info
    if "labels" in task.state:
        metrics["labels"] = task.state["labels"]
    outputs = []
    with tempfile.TemporaryDirectory() as tmp:
        tok.save(Path(tmp))
        for variant in variants:
            set_seed(cfg.train.seed)
            if cfg.model is not None:
                body = fresh_body(cfg.model, tok)
            else:
                body = load_body(body_dir)
                if variant == "random":
                    body = rebuild(body)  # same architecture, fresh weights
            if cfg.attention_dropout is not None:
                set_attention_dropout(body, cfg.attention_dropout)
            before = json.dumps(body.config.to_dict())
            model = task.build_model(body, tok)
            peft_info = None
            if cfg.peft is not None:
                fresh = cfg.model is not None or variant == "random"
                base = cfg.init_from or str(body_dir)
                peft_info = _adapt(model, cfg.peft, base, fresh, before, out_dir / variant)
            task.save(Path(tmp))  # task.json travels with every checkpoint and the final model
            files = sorted(Path(tmp).iterdir())
            objective = TaskObjective(task, tok, train_f, val_f, val_ex, cfg.train.batch_size, cfg.train.seed,
                                      cfg.train.group_by_length)
            trainer = Trainer(model, objective, cfg.train, out_dir / variant, progress=progress, extra_files=files)
            result = trainer.train()
            model_dir = out_dir / variant / "model"
            extra = {}
            if hasattr(task, "calibrate"):  # e.g. multi-label thresholds, tuned on validation
                model = trainer.model.eval()
                preds = predict_features(task, model, tok, val_f, cfg.train.batch_size)
                extra = task.calibrate(preds, val_ex)
                task.save(model_dir)
            last = result.history[-1] if result.history else {}
            metrics[variant] = {k: v for k, v in last.items() if k.startswith("val_")}
            metrics[variant].update(steps=result.steps, elapsed_s=round(result.elapsed_s, 1),
                                    best_step=result.best_step, best_metric=result.best_metric, **extra)
            if peft_info is not None:
                metrics[variant]["peft"] = peft_info
            outputs.append(str(model_dir))
    if warnings:
        metrics["warnings"] = warnings
    atomic_write_json(out_dir / "finetune_summary.json", metrics)
    return StageResult(metrics=metrics, outputs=outputs)


def _adapt(model, settings: PeftSettings, base_spec: str, fresh: bool, before: str, variant_dir: Path) -> dict:
    """Inject adapters; the saved model will reference its base, so the base must exist on disk as it is
    now: a body trained from zero, a random-init variant or one the task changed (e.g. new chat tokens)
    is written once to ``<variant>/base``."""
    from ..models.io import save_model
    from ..models.peft import adapted_root, base_reference, inject, vocab_embeddings

    root = adapted_root(model)
    if fresh or json.dumps(root.config.to_dict()) != before:
        save_model(root, variant_dir / "base")
        base_spec = str(variant_dir / "base")
    grown = getattr(root.config, "vocab_size", None) != json.loads(before).get("vocab_size")
    extra = [n for n in vocab_embeddings(root) if n not in settings.modules_to_save] if grown else []
    if extra:  # new token rows (e.g. chat markers) start at the mean embedding: frozen, they could never be told apart
        console.print(f"  peft: the task added tokens, so {', '.join(extra)} is trained in full too (modules_to_save)")
        settings = settings.model_copy(update={"modules_to_save": [*settings.modules_to_save, *extra]})
    info = inject(model, settings, base_reference(base_spec))
    console.print(f"  peft: {info['method']} on {info['adapted_modules']} modules, {info['trainable_params']:,} of "
                  f"{info['total_params']:,} parameters trainable ({info['trainable_share']:.2%})")
    return info


def load_task_model(model_dir: str | Path, overrides: dict | None = None, device: str = "cpu"):
    """(task, model, tok) from a fine-tuned model directory."""
    from ..models.io import load_model
    from ..tokenizer import Tok

    task = load_task(model_dir, overrides)
    model = load_model(model_dir, device=device).eval()
    return task, model, Tok.load(model_dir)


@torch.no_grad()
def predict_features(task: Task, model, tok, features: list[dict], batch_size: int = 64,
                     progress: bool = False) -> list[dict]:
    """User-level predictions for encoded examples, in order (batched by similar length)."""
    from ..progress import progress_bar

    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    order = sorted(range(len(features)), key=lambda i: task.length(features[i]))
    out: list[dict | None] = [None] * len(features)
    with progress_bar(progress) as bar:
        t = bar.add_task("predict", total=len(features), info="")
        for s in range(0, len(order), batch_size):
            idx = order[s: s + batch_size]
            feats = [features[i] for i in idx]
            batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in task.collate(feats, tok).items()}
            for i, p in zip(idx, task.predict(model, batch, tok, feats)):
                out[i] = p
            bar.advance(t, len(idx))
    model.train(was_training)
    return out  # type: ignore[return-value]
