"""Fixtures for the data pipeline tests: real text from the shared datasets, small and fast."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def dataset(shared_datasets):
    """``dataset('pretrain/gutenberg/austen-emma.txt')`` -> Path, or skip when absent."""

    def get(rel: str) -> Path:
        p = shared_datasets / rel
        if not p.exists():
            pytest.skip(f"{p} missing")
        return p

    return get
