"""Experiment tracking: the rows the trainer appends to metrics.jsonl, mirrored to TensorBoard and W&B.

One feed (``Trainer._log_eval``) keeps every backend equal to metrics.jsonl. Tracking only observes: a
missing package is a clear error before training starts, but a backend failing mid-run is warned about
once and switched off, so it never costs a run. W&B runs offline only (files under ``out_dir/wandb``,
uploaded later with ``wandb sync``); lmforge never talks to a network for tracking.
"""

from __future__ import annotations

import json
import os
import uuid
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from ..errors import InputError

HINT = "pip install 'lmforge[track]'"


class Tracker(Protocol):
    """One backend. ``start`` gets the hyperparameters and the step training resumes from (0 = fresh)."""

    name: str

    def start(self, hparams: dict, step: int) -> None: ...

    def log(self, row: dict, step: int) -> None: ...

    def finish(self, final: dict) -> None: ...


def scalars(row: dict) -> dict[str, float]:
    """The numeric values of a row (bools and the step itself are not curves)."""
    return {k: v for k, v in row.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "step"}


def flatten(d: dict, prefix: str = "") -> dict:
    """``{"train": {"lr": 1e-3}}`` -> ``{"train.lr": 1e-3}``; TensorBoard's hparams take only flat scalars."""
    out: dict = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[prefix + k] = v if isinstance(v, (bool, int, float, str)) else json.dumps(v)
    return out


class TensorBoardTracker:
    """Event files under ``out_dir/tensorboard``; a resumed run appends and purges what it redoes."""

    name = "tensorboard"

    def __init__(self, out_dir: Path):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise InputError("train.track: tensorboard needs the tensorboard package",
                             f"{HINT} (or pip install tensorboard)") from None
        self._cls, self.dir, self.writer, self.hparams, self.step = SummaryWriter, out_dir / "tensorboard", None, {}, 0

    def start(self, hparams: dict, step: int) -> None:
        # events past the resumed checkpoint were written by the killed run and are redone: hide them
        self.writer = self._cls(str(self.dir), purge_step=step + 1 if step else None)
        self.hparams, self.step = hparams, step
        self.writer.add_text("config", "    " + json.dumps(hparams, indent=2).replace("\n", "\n    "), step)

    def log(self, row: dict, step: int) -> None:
        for k, v in scalars(row).items():
            self.writer.add_scalar(k, v, step)
        self.step = step

    def finish(self, final: dict) -> None:
        if self.writer is None:
            return
        self.writer.flush()
        metrics = {f"final/{k}": v for k, v in scalars(final).items()}
        if metrics:  # the HParams tab: this run's settings beside its final metrics, in the same run dir
            self.writer.add_hparams(flatten(self.hparams), metrics, run_name=".", global_step=self.step)
        self.writer.close()


class WandbTracker:
    """An offline W&B run in ``out_dir/wandb``; its id is kept in ``out_dir/wandb_id`` so a resume reuses it."""

    name = "wandb"

    def __init__(self, out_dir: Path):
        # offline, silent, and no error reporting (W&B's telemetry is a network call too)
        os.environ.update(WANDB_MODE="offline", WANDB_SILENT="true", WANDB_ERROR_REPORTING="false")
        try:
            import wandb
        except ImportError:
            raise InputError("train.track: wandb needs the wandb package", f"{HINT} (or pip install wandb)") from None
        self.wandb, self.out_dir, self.run = wandb, out_dir, None

    def start(self, hparams: dict, step: int) -> None:
        id_file = self.out_dir / "wandb_id"
        if not id_file.exists():
            id_file.write_text(uuid.uuid4().hex[:12] + "\n")
        settings = self.wandb.Settings(mode="offline", silent=True, console="off", disable_git=True,
                                       disable_code=True, x_disable_stats=True, x_disable_meta=True,
                                       x_disable_machine_info=True)
        self.run = self.wandb.init(project=os.environ.get("WANDB_PROJECT", "lmforge"), dir=str(self.out_dir),
                                   id=id_file.read_text().strip(), resume="allow", mode="offline",
                                   name="/".join(self.out_dir.resolve().parts[-3:]), config=hparams,
                                   settings=settings)

    def log(self, row: dict, step: int) -> None:
        self.run.log(scalars(row), step=step)

    def finish(self, final: dict) -> None:
        if self.run is not None:
            self.run.summary.update({k: v for k, v in final.items() if v is not None})
            self.run.finish()


BACKENDS: dict[str, Callable[[Path], Tracker]] = {"tensorboard": TensorBoardTracker, "wandb": WandbTracker}


class Tracking:
    """The trackers of one run, called together; one that raises is warned about once and dropped."""

    def __init__(self, names: list[str], out_dir: Path):
        self.trackers: list[Tracker] = [BACKENDS[n](Path(out_dir)) for n in dict.fromkeys(names)]

    def _each(self, method: str, *args) -> None:
        for t in list(self.trackers):
            try:
                getattr(t, method)(*args)
            except Exception as e:  # noqa: BLE001 - tracking must never stop training
                self.trackers.remove(t)
                warnings.warn(f"{t.name} tracking failed in {method} ({type(e).__name__}: {e}); "
                              "training goes on without it (metrics.jsonl is complete)", stacklevel=3)

    def start(self, hparams: dict, step: int) -> None:
        self._each("start", hparams, step)

    def log(self, row: dict) -> None:
        self._each("log", row, row["step"])

    def finish(self, final: dict) -> None:
        self._each("finish", final)
        self.trackers = []
