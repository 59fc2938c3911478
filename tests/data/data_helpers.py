"""Helpers shared by the data tests (real text from the shared datasets, output readers)."""

from __future__ import annotations

import json
from pathlib import Path


def read_jsonl(path: Path) -> list[dict]:
    import gzip

    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def read_dir(path: Path) -> list[dict]:
    out: list[dict] = []
    for p in sorted(path.glob("part-*")):
        out.extend(read_jsonl(p))
    return out


def paragraphs(path: Path, n: int, min_len: int = 200, encoding: str = "utf-8") -> list[str]:
    """The first ``n`` paragraphs of a text file that are at least ``min_len`` chars long."""
    text = path.read_text(encoding=encoding, errors="strict")
    paras = [" ".join(p.split()) if not any("\u4e00" <= c <= "\u9fff" for c in p) else p.strip()
             for p in text.replace("\r\n", "\n").split("\n\n")]
    return [p for p in paras if len(p) >= min_len][:n]
