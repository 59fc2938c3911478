"""Run directories: ``runs/<name>/`` with ``manifest.json`` and one subfolder per stage.

The manifest records what produced every artifact (resolved config, input hashes, package
versions, git commit, times, per-stage status and headline metrics). A stage is skipped when its
fingerprint — its own config, the hashes of its input files and the fingerprints of the stages it
reads from — matches the last successful run, so editing one stage reruns it and everything
downstream, and nothing else. All writes are atomic (temp file + rename), so a killed run never
leaves a half-written artifact that a rerun would trust.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from . import __version__


# ---------------------------------------------------------------------------------------------
# Atomic writes


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n")


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a temp directory that replaces ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    try:
        yield tmp
        if path.exists():
            old = path.with_name(f".{path.name}.old.{os.getpid()}")
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


# ---------------------------------------------------------------------------------------------
# Hashing and environment


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def hash_inputs(paths: list[str | Path]) -> dict[str, str]:
    """sha256 of every file under ``paths`` (directories are walked, in sorted order)."""
    out: dict[str, str] = {}
    for p in paths:
        p = Path(p)
        if p.is_dir():
            for f in sorted(x for x in p.rglob("*") if x.is_file()):
                out[str(f)] = file_sha256(f)
        elif p.is_file():
            out[str(p)] = file_sha256(p)
        else:
            out[str(p)] = "missing"
    return out


def fingerprint(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def package_versions() -> dict[str, str]:
    from importlib import metadata

    names = ["lmforge", "torch", "numpy", "tokenizers", "safetensors", "pydantic", "scikit-learn"]
    out = {"python": platform.python_version()}
    for n in names:
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[n] = metadata.version(n)
    return out


def git_commit(cwd: str | Path = ".") -> str | None:
    try:
        res = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return res.stdout.strip() or None if res.returncode == 0 else None


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and torch so a run is repeatable on the same machine."""
    random.seed(seed)
    os.environ["PYTHONHASHSEED"] = str(seed)
    try:
        import numpy as np

        np.random.seed(seed % (2**32))
    except ImportError:  # pragma: no cover
        pass
    try:
        import torch

        torch.manual_seed(seed)
    except ImportError:  # pragma: no cover
        pass


def now() -> str:
    from datetime import datetime

    return datetime.now().astimezone().isoformat(timespec="milliseconds")


# ---------------------------------------------------------------------------------------------
# Run directory


@dataclass
class StageResult:
    """What a stage reports back: headline metrics for the manifest, plus free-form details."""

    metrics: dict[str, Any] = field(default_factory=dict)
    outputs: list[str] = field(default_factory=list)


class RunDir:
    """A run directory and its manifest."""

    def __init__(self, path: str | Path, config: dict | None = None):
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.manifest_path = self.path / "manifest.json"
        if self.manifest_path.exists():
            self.manifest = json.loads(self.manifest_path.read_text(encoding="utf-8"))
        else:
            self.manifest = {"name": self.path.name, "created": now(), "stages": {}}
        if config is not None:
            self.manifest["config"] = config
        self.manifest["lmforge_version"] = __version__
        self.manifest["packages"] = package_versions()
        self.manifest["git_commit"] = git_commit()
        self.manifest["command"] = " ".join(sys.argv)
        self.save()

    def stage_dir(self, stage: str) -> Path:
        return self.path / stage

    def stage(self, stage: str) -> dict:
        return self.manifest["stages"].get(stage, {})

    def save(self) -> None:
        self.manifest["updated"] = now()
        atomic_write_json(self.manifest_path, self.manifest)

    def is_fresh(self, stage: str, fp: str) -> bool:
        rec = self.stage(stage)
        return rec.get("status") == "done" and rec.get("fingerprint") == fp and self.stage_dir(stage).exists()

    def begin(self, stage: str, fp: str, inputs: dict[str, str]) -> None:
        self.manifest["stages"][stage] = {"status": "running", "fingerprint": fp, "inputs": inputs,
                                          "started": now()}
        self.save()

    def finish(self, stage: str, result: StageResult, seconds: float) -> None:
        rec = self.manifest["stages"][stage]
        rec.update(status="done", finished=now(), seconds=round(seconds, 2), metrics=result.metrics)
        self.save()

    def fail(self, stage: str, error: str) -> None:
        rec = self.manifest["stages"].setdefault(stage, {})
        rec.update(status="failed", finished=now(), error=error)
        self.save()
