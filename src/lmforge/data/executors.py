"""Executors: the same shard tasks on local processes (default) or on Ray.

A task is ``fn(*args)`` for one shard; it writes its own outputs and a completion marker, so the
executor only has to run every task once — a rerun skips what is done.
"""

from __future__ import annotations

import multiprocessing as mp
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any, Callable

from ..errors import ConfigError
from .config import DataStageConfig


def n_workers(cfg: DataStageConfig, n_tasks: int) -> int:
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(cfg.workers or cpus, n_tasks))


def run_tasks(fn: Callable, tasks: list[tuple], cfg: DataStageConfig, label: str = "shards") -> None:
    if not tasks:
        return
    if cfg.executor == "ray":
        return _run_ray(fn, tasks, cfg, label)
    workers = n_workers(cfg, len(tasks))
    if workers == 1:
        progress = _progress(cfg, label, len(tasks))
        try:
            for args in tasks:
                fn(*args)
                progress.advance()
        finally:
            progress.close()
        return
    with ProcessPoolExecutor(workers, mp_context=_context()) as pool:
        futures = [pool.submit(fn, *args) for args in tasks]
        progress = _progress(cfg, label, len(tasks))  # after the fork: its refresh thread stays here
        try:
            for fut in as_completed(futures):
                fut.result()
                progress.advance()
        finally:
            progress.close()


def _context():
    """fork when this process has a single thread (fast, no re-import, no __main__ guard needed);
    spawn otherwise, because forking a threaded process (torch, a UI thread) can copy a held lock."""
    import threading

    if "fork" in mp.get_all_start_methods() and threading.active_count() == 1:
        return mp.get_context("fork")
    return mp.get_context("spawn")


def _run_ray(fn: Callable, tasks: list[tuple], cfg: DataStageConfig, label: str) -> None:
    try:
        import ray
    except ImportError:
        raise ConfigError("executor: ray needs Ray installed", "pip install 'lmforge[ray]'") from None
    if not ray.is_initialized():
        kwargs: dict[str, Any] = {"ignore_reinit_error": True, "log_to_driver": False,
                                  "include_dashboard": False}
        if cfg.ray_address:
            kwargs["address"] = cfg.ray_address
        else:
            kwargs["num_cpus"] = n_workers(cfg, 1 << 30)
        ray.init(**kwargs)
    remote = ray.remote(num_cpus=1, max_retries=2)(fn)
    refs = [remote.remote(*args) for args in tasks]
    progress = _progress(cfg, label, len(tasks))
    try:
        pending = list(refs)
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            ray.get(ready)
            progress.advance()
    finally:
        progress.close()


class _progress:
    """A rich progress bar when ``cfg.progress``; silent otherwise (tests, recipe runner)."""

    def __init__(self, cfg: DataStageConfig, label: str, total: int):
        self.bar = None
        if cfg.progress:
            from rich.progress import Progress

            self.bar = Progress(transient=True)
            self.bar.start()
            self.task = self.bar.add_task(label, total=total)

    def advance(self) -> None:
        if self.bar is not None:
            self.bar.advance(self.task)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
