"""Data-parallel training through ``torchrun``: DDP and FSDP (FSDP2 ``fully_shard``).

The trainer stays the same in every mode. What changes:

- ``setup`` creates the process group from torchrun's environment (``RANK``, ``WORLD_SIZE``,
  ``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT``): NCCL on GPUs, gloo on CPUs;
- ``wrap`` puts the model under DDP (gradients all-reduced) or shards it with ``fully_shard``
  (each Transformer block, then the root; parameters, gradients and optimizer state are split
  across ranks);
- both average gradients over ranks, so the trainer scales each rank's loss by the world size:
  with the loss normalised by the global number of target tokens, N processes give the same
  update as one process with ``grad_accum = N`` (tested);
- only rank 0 writes metrics, checkpoints and the final model; FSDP first gathers the full state
  (a collective, so every rank takes part); on resume every rank loads the same checkpoint.
"""

from __future__ import annotations

import contextlib
import os
import sys
from datetime import timedelta

import torch
import torch.distributed as dist
import torch.nn as nn

from ..errors import ConfigError


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module under DDP / FSDP / torch.compile wrappers."""
    while True:
        if hasattr(model, "module"):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod
        else:
            return model


def env_world() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def in_torchrun() -> bool:
    """True inside a process started by torchrun (or any launcher that sets WORLD_SIZE/RANK)."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def resolve_mode(mode: str) -> str:
    """``auto`` -> ddp when the process is one of several, else none; an explicit mode is kept,
    but data parallelism with a world of one is just ``none``."""
    world = dist.get_world_size() if dist.is_initialized() else env_world()
    if mode == "auto":
        return "ddp" if world > 1 else "none"
    if mode != "none" and world == 1 and not dist.is_initialized():
        return "none"
    return mode


def rank_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main() -> bool:
    return rank_world()[0] == 0


def setup(mode: str) -> bool:
    """Create the process group when ``mode`` needs one and none exists; True if created here."""
    if resolve_mode(mode) == "none" or dist.is_initialized():
        return False
    if not in_torchrun():
        raise ConfigError(f"distributed={mode} needs several processes",
                          "launch with `lmforge pretrain RECIPE --nproc N` (or torchrun)")
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend, timeout=timedelta(minutes=30))
    return True


def teardown(created: bool) -> None:
    if created and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def device_for(name: str) -> torch.device:
    """``auto`` -> this rank's GPU (LOCAL_RANK) when there are GPUs, else the CPU."""
    if name != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")) if dist.is_initialized() else 0)
    return torch.device("cpu")


def all_reduce_sum(value: float, device: torch.device) -> float:
    if not dist.is_initialized():
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return float(t)


def _blocks(model: nn.Module) -> list[nn.Module]:
    """The repeated layers to shard one by one (GPT/BERT ``blocks``, seq2seq ``encoder``/``decoder``)."""
    out = []
    for name in ("blocks", "encoder", "decoder"):
        layers = getattr(model, name, None)
        if isinstance(layers, nn.ModuleList):
            out += list(layers)
    return out


def wrap(model: nn.Module, mode: str, device: torch.device) -> nn.Module:
    """The module to call forward on. DDP returns a wrapper; FSDP shards ``model`` in place."""
    if mode == "ddp":
        from torch.nn.parallel import DistributedDataParallel as DDP

        ids = [device.index] if device.type == "cuda" else None
        # every rank computes the same buffers (rotary tables), so there is nothing to broadcast
        return DDP(model, device_ids=ids, broadcast_buffers=False)
    if mode == "fsdp":
        from torch.distributed.fsdp import fully_shard

        inner = unwrap(model)
        for block in _blocks(inner):
            fully_shard(block)
        fully_shard(model)
        return model
    return model


def no_sync(forward_model: nn.Module, mode: str, skip: bool):
    """Skip the gradient all-reduce on all but the last micro-batch of an accumulation window."""
    if not skip:
        return contextlib.nullcontext()
    if mode == "ddp" and hasattr(forward_model, "no_sync"):
        return forward_model.no_sync()
    if mode == "fsdp" and hasattr(forward_model, "set_requires_gradient_sync"):
        return _fsdp_no_sync(forward_model)
    return contextlib.nullcontext()


@contextlib.contextmanager
def _fsdp_no_sync(model):
    model.set_requires_gradient_sync(False)
    try:
        yield
    finally:
        model.set_requires_gradient_sync(True)


def full_norm(norm) -> float:
    """clip_grad_norm_ returns a DTensor under FSDP2; the total norm as a float either way."""
    if hasattr(norm, "full_tensor"):
        norm = norm.full_tensor()
    return float(norm)


# -- FSDP state: gathered to rank 0 for saving, loaded by every rank -------------------------------

def fsdp_full_state(model: nn.Module, optimizer: torch.optim.Optimizer) -> tuple[dict, dict]:
    """(model state, optimizer state) as full tensors on rank 0's CPU (empty dicts elsewhere). Collective."""
    from torch.distributed.checkpoint.state_dict import (StateDictOptions, get_model_state_dict,
                                                         get_optimizer_state_dict)

    opts = StateDictOptions(full_state_dict=True, cpu_offload=True)
    return get_model_state_dict(model, options=opts), get_optimizer_state_dict(model, optimizer, options=opts)


def fsdp_load_state(model: nn.Module, optimizer: torch.optim.Optimizer | None, model_state: dict,
                    optim_state: dict | None) -> None:
    """Load full (unsharded) state on every rank; each keeps its own shard. Collective."""
    from torch.distributed.checkpoint.state_dict import (StateDictOptions, set_model_state_dict,
                                                         set_optimizer_state_dict)

    opts = StateDictOptions(full_state_dict=True)
    set_model_state_dict(model, model_state, options=opts)
    if optimizer is not None and optim_state is not None:
        set_optimizer_state_dict(model, optimizer, optim_state, options=opts)


# -- launching --------------------------------------------------------------------------------------

def torchrun_command(nproc: int, argv: list[str]) -> list[str]:
    """``python -m torch.distributed.run --standalone --nproc-per-node N -m lmforge ARGV`` (torchrun's
    own module, so it works wherever this Python's torch is installed)."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
            "-m", "lmforge", *argv]
