"""Checkpoints: ``model.safetensors`` + ``config.json`` (+ ``trainer_state.json``, ``optimizer.pt``).

Written to a temp dir and renamed into place, so a kill at any moment leaves either the previous
checkpoint or the new one, never a torn one. Optimizer and RNG state go through ``torch.save`` and
are read back with ``weights_only=True``: plain tensors and containers, nothing unpickled.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import numpy as np
import safetensors.torch
import torch
import torch.nn as nn

from ..errors import InputError
from ..runs import atomic_dir, atomic_write_text
from .distributed import unwrap  # noqa: F401  (re-exported: checkpoint -> distributed, never back)

LATEST = "latest.txt"


def save_weights(model: nn.Module, directory: Path) -> None:
    """Weights + config into ``directory`` (not atomic by itself; callers use atomic_dir)."""
    model = unwrap(model)
    safetensors.torch.save_model(model, str(directory / "model.safetensors"))
    (directory / "config.json").write_text(json.dumps(model.config.to_dict(), indent=2) + "\n")


def load_weights(model: nn.Module, directory: Path, strict: bool = True) -> None:
    if (Path(directory) / "adapter.safetensors").exists():  # an adapted model's best/: only its trained part
        from ..models.peft import load_trainable

        load_trainable(unwrap(model), Path(directory))
        return
    path = Path(directory) / "model.safetensors"
    if not path.exists():
        raise InputError(f"no model.safetensors in {directory}", "point at a model or checkpoint directory")
    missing, unexpected = safetensors.torch.load_model(unwrap(model), str(path), strict=strict)
    if strict and (missing or unexpected):  # pragma: no cover - load_model raises first
        raise InputError(f"{path}: weights do not match the model", f"missing={missing} unexpected={unexpected}")


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(ckpt_root: Path, model: nn.Module, optimizer: torch.optim.Optimizer | None, trainer_state: dict,
                    keep: int = 2, extra_files: list[Path] = (), optimizer_state: dict | None = None) -> Path:
    """``optimizer_state`` replaces ``optimizer.state_dict()`` (FSDP passes the gathered full state)."""
    name = f"step_{trainer_state['step']:07d}"
    target = ckpt_root / name
    with atomic_dir(target) as tmp:
        save_weights(model, tmp)
        optim = optimizer_state if optimizer_state is not None else optimizer.state_dict()
        torch.save({"optimizer": optim, "rng": _rng_for_save()}, tmp / "optimizer.pt")
        (tmp / "trainer_state.json").write_text(json.dumps(trainer_state, indent=2) + "\n")
        for f in extra_files:
            shutil.copy2(f, tmp / Path(f).name)
    atomic_write_text(ckpt_root / LATEST, name + "\n")
    old = sorted(p for p in ckpt_root.glob("step_*") if p.is_dir())[:-keep]
    for p in old:
        shutil.rmtree(p, ignore_errors=True)
    return target


def _rng_for_save() -> dict:
    s = rng_state()
    # numpy/python states are tuples with non-tensor parts; store them as plain lists/ints
    np_state = s["numpy"]
    s["numpy"] = {"kind": np_state[0], "keys": torch.from_numpy(np_state[1].astype(np.int64)),
                  "pos": int(np_state[2]), "has_gauss": int(np_state[3]), "gauss": float(np_state[4])}
    version, internal, gauss = s["python"]
    s["python"] = {"version": version, "internal": torch.tensor(internal, dtype=torch.int64), "gauss": gauss}
    return s


def _rng_from_saved(s: dict) -> dict:
    n = s["numpy"]
    s["numpy"] = (n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"])
    p = s["python"]
    s["python"] = (p["version"], tuple(int(x) for x in p["internal"].tolist()), p["gauss"])
    return s


def latest_checkpoint(ckpt_root: Path) -> Path | None:
    pointer = ckpt_root / LATEST
    if not pointer.exists():
        return None
    path = ckpt_root / pointer.read_text().strip()
    return path if (path / "trainer_state.json").exists() else None


def load_checkpoint(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, fsdp: bool = False) -> dict:
    """Weights, optimizer and RNG state into ``model``/``optimizer``; returns the trainer state.

    With ``fsdp`` the (full) weights go through an unsharded CPU copy and every rank keeps its shard.
    """
    blob = torch.load(path / "optimizer.pt", map_location="cpu", weights_only=True)
    if fsdp:
        from ..models.io import rebuild
        from .distributed import fsdp_load_state  # noqa: F401

        plain = rebuild(unwrap(model))
        load_weights(plain, path)
        prefix = "module." if hasattr(model, "module") else ""  # a training wrapper (BertPretrainModel)
        full = {prefix + k: v for k, v in plain.state_dict().items()}
        fsdp_load_state(model, optimizer, full, blob["optimizer"])
    else:
        load_weights(model, path)
        optimizer.load_state_dict(blob["optimizer"])
    set_rng_state(_rng_from_saved(blob["rng"]))
    return json.loads((path / "trainer_state.json").read_text())
