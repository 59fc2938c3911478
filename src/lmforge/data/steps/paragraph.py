"""Paragraph-level dedup (CCNet style: a paragraph is a line): a line already seen in an earlier
kept document is removed; a document left empty is dropped as ``dedup:paragraph``."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..document import Document
from .base import Step


def paragraph_decisions(shards: list, work: Path, offsets: np.ndarray, reason: np.ndarray) -> dict:
    """{shard: {row: [line indices]}} for lines (paragraphs, CCNet-style) seen in an earlier
    document that is kept; the first occurrence in input order stays."""
    hashes, rows, idx, owner = [], [], [], []
    for s in shards:
        z = np.load(work / "p1" / f"part-{s.index:05d}.sig.npz")
        pos = z["para_pos"]
        hashes.append(z["para"])
        rows.append(pos[:, 0] + offsets[s.index])
        idx.append(pos[:, 1])
        owner.append(np.full(len(pos), s.index))
    if not hashes or not sum(len(h) for h in hashes):
        return {}
    h, g, j, o = (np.concatenate(x) for x in (hashes, rows, idx, owner))
    live = reason[g] == 0  # lines of documents dropped as duplicates do not count
    h, g, j, o = h[live], g[live], j[live], o[live]
    _, first, inverse = np.unique(h, return_index=True, return_inverse=True)
    repeat = first[inverse.reshape(-1)] != np.arange(len(h))
    repeat &= g[first[inverse.reshape(-1)]] != g  # a line repeated inside one document is not removed
    out: dict = {}
    for k in np.flatnonzero(repeat):
        sh = int(o[k])
        out.setdefault(sh, {}).setdefault(str(int(g[k] - offsets[sh])), []).append(int(j[k]))
    return out



class ParagraphDedup(Step):
    """Removes lines already seen in an earlier kept document (phase 2 decided which)."""

    name = "paragraph_dedup"

    def __init__(self, lines: dict[str, list[int]]):
        super().__init__()
        self.lines = lines

    def process(self, doc: Document) -> Document | str:
        drop = set(self.lines.get(str(doc.meta.get("_row")), ()))
        if not drop:
            return doc
        kept = [ln for j, ln in enumerate(doc.text.split("\n")) if j not in drop]
        self.stats.counters["lines_removed"] += len(drop)
        text = "\n".join(kept).strip()
        if not text:
            doc.meta.pop("_row", None)
            return "dedup:paragraph"
        doc.text = text
        doc.meta["lines_removed"] = len(drop)
        return doc
