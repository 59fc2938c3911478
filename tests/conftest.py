"""Shared fixtures. Real datasets come from LMFORGE_DATASETS (default ../shared/datasets); tests that
need them skip cleanly when they are absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def datasets_dir() -> Path:
    return Path(os.environ.get("LMFORGE_DATASETS", REPO.parent / "shared" / "datasets"))


@pytest.fixture(scope="session")
def shared_datasets() -> Path:
    d = datasets_dir()
    if not d.exists():
        pytest.skip(f"shared datasets not found at {d} (set LMFORGE_DATASETS)")
    return d


@pytest.fixture(scope="session")
def shakespeare(shared_datasets) -> str:
    path = shared_datasets / "pretrain" / "tinyshakespeare" / "input.txt"
    if not path.exists():
        pytest.skip(f"{path} missing")
    return path.read_text(encoding="utf-8")


@pytest.fixture(autouse=True)
def _few_threads():
    """Tests share 2 cores; keep torch from oversubscribing them."""
    import torch

    torch.set_num_threads(1)
    yield
