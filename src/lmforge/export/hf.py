"""Hugging Face layout: a thin wrapper over ``models.hf.export_hf`` (which stays where it is)."""

from __future__ import annotations

from pathlib import Path


def export_hf_dir(model_dir: str | Path, output: str | Path, options: dict | None = None) -> Path:
    from ..models.hf import export_hf

    return Path(export_hf(model_dir, output, (options or {}).get("layout")))
