"""The training loop, shared by every objective.

An *objective* (objectives.py, tasks/) knows its data and its loss; the loop knows optimisation:
schedule, accumulation, clipping, precision, evaluation, early stopping, logging and checkpoints.

Two rules make results trustworthy:
- the loss is normalised over the whole accumulation window (sum of per-token losses / number of
  target tokens in the window), so ``grad_accum`` never changes the loss scale or the gradient;
- batches are a pure function of (seed, step, micro-batch), and checkpoints carry optimizer and RNG
  state, so a run killed at any point and started again ends with the same weights.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import torch
from torch import nn

from ..errors import ConfigError
from ..models.io import save_model
from ..models.peft import (
    after_step,
    check_gradients,
    is_adapted,
    regulariser,
    start_training,
)
from ..runs import atomic_write_json
from . import distributed
from .checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint, unwrap
from .config import TrainConfig
from .optim import lr_at, make_optimizer, set_lr
from .tracking import Tracking

# Called as hook(step, metrics) after every evaluation; lmforge tune adds its pruner here.
EVAL_HOOKS: list = []


class Objective(Protocol):
    """What the loop needs from a task."""

    def train_batch(self, step: int, micro: int, n_micro: int) -> dict[str, torch.Tensor]: ...

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
        """(sum of per-item losses, number of items) for one micro-batch."""
        ...

    def count(self, batch: dict[str, torch.Tensor]) -> int:
        """Number of loss items in a batch, known before the forward pass."""
        ...

    def tokens(self, batch: dict[str, torch.Tensor]) -> int: ...

    def eval_batches(self, limit: int) -> Iterable[dict[str, torch.Tensor]]: ...

    def eval_metrics(self, model: nn.Module, loss_sum: float, count: int) -> dict[str, float]:
        """Turn the summed eval loss into metrics (``val_loss`` at least; more if the task has them)."""
        ...


@dataclass
class TrainResult:
    steps: int
    tokens: int
    elapsed_s: float
    history: list[dict] = field(default_factory=list)
    best_val_loss: float | None = None
    stopped_early: bool = False
    best_metric: float | None = None
    best_step: int | None = None


def pick_device(name: str) -> torch.device:
    if name != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


def autocast_for(device: torch.device, precision: str):
    """bf16/fp16 autocast where the hardware has it; fp32 on CPU by default (CPU bf16 is slow)."""
    if precision == "auto":
        precision = "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "fp32"
    if precision == "fp32":
        return contextlib.nullcontext(), precision
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype), precision


def flops_per_token(model: nn.Module) -> float | None:
    """Training FLOPs per token, 6N + 12·L·T·d (PaLM appendix B); None for non-Transformer models."""
    cfg = getattr(unwrap(model), "config", None)
    if cfg is None or not hasattr(cfg, "n_layer"):
        return None
    n = sum(p.numel() for p in unwrap(model).parameters())
    T = getattr(cfg, "block_size", 0)
    return 6 * n + 12 * cfg.n_layer * T * cfg.d_model


def _move(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}


class Trainer:
    def __init__(self, model: nn.Module, objective: Objective, cfg: TrainConfig, out_dir: Path,
                 progress: bool = True, extra_files: Iterable[Path] = ()):
        self.cfg, self.objective, self.out_dir = cfg, objective, Path(out_dir)
        self.extra_files = list(extra_files)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        # data parallelism (distributed.py): a process group from torchrun's environment, then DDP
        # around the (compiled) model or FSDP shards of it; single process: all of it is a no-op
        self.mode = distributed.resolve_mode(cfg.distributed)
        self._created_pg = distributed.setup(cfg.distributed)
        self.device = distributed.device_for(cfg.device)
        self.model = model.to(self.device)
        self.adapted = is_adapted(model)
        if self.adapted and self.mode == "fsdp":
            raise ConfigError("finetune.peft with distributed fsdp is not supported (FSDP saving rebuilds plain models)",
                              "use distributed: ddp, or train the adapters on one process")
        if hasattr(objective, "steps_per_epoch") and cfg.max_epochs is not None:
            # epochs become steps once the data is known; the schedule then sees the real length
            steps = max(1, math.ceil(cfg.max_epochs * objective.steps_per_epoch))
            self.cfg = cfg = cfg.model_copy(update={"max_steps": steps})
        if self.adapted:
            start_training(model, cfg.max_steps)  # AdaLoRA's rank schedule counts steps
        # the flag lives on the body (a head wrapper forwards nothing): set it on every module that has it
        for m in unwrap(self.model).modules():
            if hasattr(m, "gradient_checkpointing"):
                m.gradient_checkpointing = cfg.gradient_checkpointing
        if self.mode == "fsdp":
            distributed.wrap(self.model, "fsdp", self.device)  # in place; the optimizer sees the shards
        self.optimizer = make_optimizer(self.model, cfg)
        self.autocast, self.precision = autocast_for(self.device, cfg.precision)
        self.scaler = torch.amp.GradScaler(enabled=self.precision == "fp16")
        self.forward_model = torch.compile(self.model) if cfg.compile else self.model
        if self.mode == "ddp":
            self.forward_model = distributed.wrap(self.forward_model, "ddp", self.device)
        self.progress = progress and distributed.is_main()
        self.ckpt_root = self.out_dir / "checkpoints"
        self.metrics_path = self.out_dir / "metrics.jsonl"
        self.flops_per_token = flops_per_token(self.model)
        # built here so a missing package fails before any training; rank 0 only
        track = [*cfg.track, *(["tensorboard"] if cfg.tensorboard else [])]
        self.tracking = Tracking(track if distributed.is_main() else [], self.out_dir)

    # -- evaluation -------------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        self.model.eval()
        if hasattr(self.objective, "evaluate"):  # tasks: loss and task metrics over the same examples
            out = self.objective.evaluate(self.forward_model, self.cfg.eval_batches,
                                          lambda b: _move(b, self.device), self.autocast)
            self.model.train()
            return out
        total, count = 0.0, 0
        for batch in self.objective.eval_batches(self.cfg.eval_batches):
            with self.autocast:
                loss_sum, n = self.objective.loss(self.forward_model, _move(batch, self.device))
            total += float(loss_sum)
            count += n
        self.model.train()
        return self.objective.eval_metrics(self.model, total, count)

    # -- state ------------------------------------------------------------------------------
    def _resume(self) -> dict:
        state = {"step": 0, "tokens": 0, "elapsed_s": 0.0, "best_val_loss": None, "bad_evals": 0,
                 "history": [], "best_metric": None, "best_step": None}
        path = latest_checkpoint(self.ckpt_root)
        if path is not None:  # every rank loads the same checkpoint
            state.update(load_checkpoint(path, self.model, self.optimizer, fsdp=self.mode == "fsdp"))
        # metrics.jsonl may hold evaluations written after the checkpoint: keep only those before it
        if self._is_main() and self.metrics_path.exists():
            lines = [json.loads(line) for line in self.metrics_path.read_text().splitlines() if line.strip()]
            kept = [m for m in lines if m["step"] <= state["step"]] if path is not None else []
            self.metrics_path.write_text("".join(json.dumps(m) + "\n" for m in kept))
        return state

    def _save(self, state: dict) -> None:
        """Rank 0 writes; under FSDP every rank first takes part in gathering the full state."""
        if self.mode == "fsdp":
            model_state, optim_state = distributed.fsdp_full_state(self.model, self.optimizer)
            if self._is_main():
                save_checkpoint(self.ckpt_root, self._plain_copy(model_state), None, state,
                                extra_files=self.extra_files, optimizer_state=optim_state)
        elif self._is_main():
            save_checkpoint(self.ckpt_root, self.model, self.optimizer, state, extra_files=self.extra_files)
        distributed.barrier()

    def _plain_copy(self, model_state: dict) -> nn.Module:
        """An unsharded CPU model holding ``model_state`` (FSDP saving goes through it)."""
        from ..models.io import rebuild

        plain = rebuild(unwrap(self.model))
        prefix = "module." if hasattr(self.model, "module") else ""  # a training wrapper (BertPretrainModel)
        plain.load_state_dict({k[len(prefix):]: v for k, v in model_state.items()})
        return plain

    def _final_model(self) -> nn.Module | None:
        if self.mode == "fsdp":
            model_state, _ = distributed.fsdp_full_state(self.model, self.optimizer)
            return self._plain_copy(model_state) if self._is_main() else None
        return self.model

    def _log_eval(self, state: dict, metrics: dict) -> None:
        row = {"step": state["step"], "tokens": state["tokens"], "elapsed_s": round(state["elapsed_s"], 3),
               **{k: (round(v, 6) if isinstance(v, float) else v) for k, v in metrics.items()}}
        state["history"].append(row)
        with open(self.metrics_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")
        self.tracking.log(row)

    def _hparams(self) -> dict:
        """What the trackers record as this run's hyperparameters: the train config and the model's."""
        config = next((m.config for m in unwrap(self.model).modules()
                       if hasattr(getattr(m, "config", None), "to_dict")), None)
        return {"train": self.cfg.model_dump(mode="json"), "model": config.to_dict() if config else {},
                "precision": self.precision, "device": str(self.device), "world_size": self._world()}

    @contextlib.contextmanager
    def _tracked(self, state: dict):
        """Trackers around the loop: final metrics are recorded even when a pruner or an error ends it."""
        self.tracking.start(self._hparams(), state["step"])
        try:
            yield
        finally:
            last = state["history"][-1] if state["history"] else {}
            self.tracking.finish({**last, "steps": state["step"], "best_val_loss": state["best_val_loss"],
                                  "metric_for_best": self.cfg.metric_for_best, "best_metric": state["best_metric"],
                                  "best_step": state["best_step"]})

    # -- training ---------------------------------------------------------------------------
    def train(self) -> TrainResult:
        cfg = self.cfg
        self.out_dir.mkdir(parents=True, exist_ok=True)
        state = self._resume()
        n_micro = cfg.grad_accum
        self.model.train()
        from ..progress import progress_bar

        stopped_early = False
        start_step = state["step"]
        with progress_bar(self.progress) as bar, self._tracked(state):
            task = bar.add_task("train", total=cfg.max_steps, completed=state["step"], info="")
            t_last, tok_last = time.perf_counter(), state["tokens"]
            while state["step"] < cfg.max_steps:
                step = state["step"]
                t0 = time.perf_counter()
                lr = lr_at(step, cfg)
                set_lr(self.optimizer, lr)
                batches = [self.objective.train_batch(step, i, n_micro) for i in range(n_micro)]
                window = sum(self.objective.count(b) for b in batches)
                window = self._all_reduce_count(window)
                loss_total = 0.0
                # DDP/FSDP average gradients over ranks: scale by the world size so the update is the
                # global sum of per-token losses over the global token count, as with one process
                scale = self._world() / window
                for i, batch in enumerate(batches):
                    batch = _move(batch, self.device)
                    with self._no_sync(i < n_micro - 1), self.autocast:
                        loss_sum, _ = self.objective.loss(self.forward_model, batch)
                        loss = loss_sum * scale
                        reg = regulariser(unwrap(self.model)) if self.adapted else None
                        if reg is not None:  # e.g. AdaLoRA's orthogonality penalty, once per step
                            loss = loss + reg / n_micro
                    self.scaler.scale(loss).backward()
                    loss_total += float(loss_sum.detach())
                    state["tokens"] += self.objective.tokens(batch) * self._world()
                if step == start_step and self.adapted:
                    check_gradients(unwrap(self.model))  # an adapter that gets no gradient is an error, not a no-op
                grad_norm = None
                if cfg.grad_clip:
                    self.scaler.unscale_(self.optimizer)
                    grad_norm = distributed.full_norm(
                        torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip))
                self.scaler.step(self.optimizer)
                self.scaler.update()
                if self.adapted:
                    after_step(unwrap(self.model), step)  # AdaLoRA scores ranks from these gradients
                self.optimizer.zero_grad(set_to_none=True)
                state["step"] = step + 1
                state["elapsed_s"] += time.perf_counter() - t0
                state["train_loss"] = distributed.all_reduce_sum(loss_total, self.device) / window
                if not math.isfinite(state["train_loss"]):
                    raise FloatingPointError(f"loss became {state['train_loss']} at step {step}; lower the lr")

                if state["step"] % cfg.log_every == 0 or state["step"] == cfg.max_steps:
                    now = time.perf_counter()
                    tps = (state["tokens"] - tok_last) / max(now - t_last, 1e-9)
                    t_last, tok_last = now, state["tokens"]
                    state["tokens_per_s"] = tps
                    info = f"loss {state['train_loss']:.4f} lr {lr:.2e} {tps:,.0f} tok/s"
                    if cfg.peak_tflops and self.flops_per_token:
                        state["mfu"] = self.flops_per_token * tps / (cfg.peak_tflops * 1e12)
                        info += f" mfu {state['mfu']:.1%}"
                    bar.update(task, completed=state["step"], info=info)
                else:
                    bar.update(task, completed=state["step"])

                if state["step"] % cfg.eval_every == 0 or state["step"] == cfg.max_steps:
                    t_eval = time.perf_counter()
                    metrics = {"train_loss": state["train_loss"], "lr": lr, **self.evaluate()}
                    if "tokens_per_s" in state:
                        metrics["tokens_per_s"] = state["tokens_per_s"]
                    if "mfu" in state:
                        metrics["mfu"] = state["mfu"]
                    if grad_norm is not None:
                        metrics["grad_norm"] = grad_norm
                    state["elapsed_s"] += time.perf_counter() - t_eval  # evaluation counts as wall time
                    if self._is_main():
                        self._log_eval(state, metrics)
                    val = metrics.get("val_loss")
                    if val is not None and (state["best_val_loss"] is None or val < state["best_val_loss"]):
                        state["best_val_loss"] = val
                    key = cfg.metric_for_best
                    best = metrics.get(key)
                    if best is not None:
                        higher = cfg.greater_is_better if cfg.greater_is_better is not None else not (
                            "loss" in key or "ppl" in key or "perplexity" in key)
                        prev = state["best_metric"]
                        if prev is None or (best > prev if higher else best < prev):
                            state["best_metric"], state["best_step"], state["bad_evals"] = best, state["step"], 0
                            if cfg.keep_best and self._is_main() and self.mode != "fsdp":
                                save_model(unwrap(self.model), self.out_dir / "best", extra_files=self.extra_files)
                        else:
                            state["bad_evals"] += 1
                    if cfg.early_stopping_patience and state["bad_evals"] >= cfg.early_stopping_patience:
                        stopped_early = True
                    for hook in EVAL_HOOKS:  # e.g. a search's pruner: it may raise to stop this run
                        hook(state["step"], metrics)
                if state["step"] % cfg.save_every == 0 or state["step"] == cfg.max_steps or stopped_early:
                    self._save(state)
                if stopped_early:
                    break
        final_model = self._final_model()
        restored = False
        if (cfg.keep_best and self._is_main() and self.mode != "fsdp" and state["best_step"] is not None
                and state["best_step"] != state["step"] and (self.out_dir / "best" / "model.safetensors").exists()):
            from .checkpoint import load_weights

            load_weights(unwrap(final_model), self.out_dir / "best")  # the best evaluation, not the last
            restored = True
        if self._is_main():
            save_model(unwrap(final_model), self.out_dir / "model", extra_files=self.extra_files)
            atomic_write_json(self.out_dir / "train_summary.json", {
                "steps": state["step"], "tokens": state["tokens"], "elapsed_s": state["elapsed_s"],
                "best_val_loss": state["best_val_loss"], "stopped_early": stopped_early,
                "metric_for_best": cfg.metric_for_best, "best_metric": state["best_metric"],
                "best_step": state["best_step"], "restored_best": restored,
                "precision": self.precision, "device": str(self.device), "distributed": self.mode,
                "world_size": self._world()})
        distributed.teardown(self._created_pg)
        return TrainResult(state["step"], state["tokens"], state["elapsed_s"], state["history"],
                           state["best_val_loss"], stopped_early, state["best_metric"], state["best_step"])

    # -- distributed hooks (single process: no-ops) -------------------------------------------
    def _world(self) -> int:
        return torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1

    def _is_main(self) -> bool:
        return not torch.distributed.is_initialized() or torch.distributed.get_rank() == 0

    def _all_reduce_count(self, n: int) -> int:
        if not torch.distributed.is_initialized():
            return n
        t = torch.tensor([n], dtype=torch.long, device=self.device)
        torch.distributed.all_reduce(t)
        return int(t)

    def _no_sync(self, skip: bool):
        return distributed.no_sync(self.forward_model, self.mode, skip)
