"""Dataset card: one self-contained HTML page (inline SVG, no JavaScript) describing a corpus.

Length histograms (kept vs dropped), language mix, drop reasons, duplicate-cluster sizes and the
per-step table from ``stats.json`` when the input is a ``lmforge data process`` output directory.
"""

from __future__ import annotations

import html
import json
import math
from collections import Counter
from pathlib import Path

from ..runs import atomic_write_text
from ..text.scripts import cjk_count
from .writers import iter_jsonl


def _files(p: Path, sub: str | None = None) -> list[Path]:
    if p.is_file():
        return [p]
    d = p / sub if sub else p
    return sorted(x for x in d.glob("*") if x.is_file() and (".jsonl" in x.name or x.suffix == ".parquet"))


def _length(text: str) -> int:
    han = cjk_count(text)
    return han + len(text.split()) if han else len(text.split())  # words, CJK characters


def _bars(title: str, items: list[tuple[str, float]], color: str = "#4c78a8") -> str:
    if not items:
        return f"<h3>{html.escape(title)}</h3><p>none</p>"
    w, bh = 640, 18
    top = max(v for _, v in items) or 1
    rows = []
    for i, (label, v) in enumerate(items):
        y = i * (bh + 4)
        bw = max(1, int((w - 260) * v / top))
        rows.append(f'<text x="0" y="{y + 13}" font-size="12">{html.escape(str(label))[:38]}</text>'
                    f'<rect x="250" y="{y}" width="{bw}" height="{bh}" fill="{color}"/>'
                    f'<text x="{255 + bw}" y="{y + 13}" font-size="12">{v:,.0f}</text>')
    h = len(items) * (bh + 4)
    return f'<h3>{html.escape(title)}</h3><svg width="{w}" height="{h}" xmlns="http://www.w3.org/2000/svg">{"".join(rows)}</svg>'


def _histogram(lengths: list[int], bins: int = 20) -> list[tuple[str, float]]:
    if not lengths:
        return []
    hi = max(lengths)
    edges = sorted({0, *[int(round(math.exp(math.log(max(hi, 2)) * k / bins))) for k in range(1, bins + 1)]})
    counts = Counter()
    for n in lengths:
        for a, b in zip(edges, edges[1:]):
            if n <= b:
                counts[(a, b)] += 1
                break
    return [(f"{a + 1}–{b}", counts[(a, b)]) for a, b in zip(edges, edges[1:]) if counts[(a, b)]]


def summarize(inputs: list[Path]) -> dict:
    kept_len, drop_len, langs, reasons, dup_targets = [], [], Counter(), Counter(), Counter()
    stats = None
    for p in inputs:
        p = Path(p)
        if p.is_dir() and (p / "stats.json").exists():
            stats = json.loads((p / "stats.json").read_text(encoding="utf-8"))
            kept_files, drop_files = _files(p, "kept"), _files(p, "dropped")
        else:
            kept_files, drop_files = _files(p), []
        for f in kept_files:
            for r in iter_jsonl(f):
                kept_len.append(_length(r["text"]))
                langs[r.get("meta", {}).get("lang", "unknown")] += 1
        for f in drop_files:
            for r in iter_jsonl(f):
                drop_len.append(_length(r["text"]))
                reasons[r.get("reason", "unknown")] += 1
                if r.get("reason", "").startswith("dedup:"):
                    dup_targets[r["meta"].get("dup_of")] += 1
    clusters = Counter(n + 1 for n in dup_targets.values())
    if stats and stats.get("steps", {}).get("dedup", {}).get("cluster_sizes"):
        clusters = Counter({int(k): v for k, v in stats["steps"]["dedup"]["cluster_sizes"].items()})
    return {"documents": len(kept_len), "dropped": len(drop_len), "kept_lengths": kept_len,
            "dropped_lengths": drop_len, "languages": dict(langs.most_common()),
            "drop_reasons": dict(reasons.most_common()), "cluster_sizes": dict(sorted(clusters.items())),
            "stats": stats}


def write_card(inputs: list[Path], output: Path) -> dict:
    s = summarize(inputs)
    kl = sorted(s["kept_lengths"])
    median = kl[len(kl) // 2] if kl else 0
    parts = [f"<h1>Dataset card</h1><p>{s['documents']:,} documents kept, {s['dropped']:,} dropped; "
             f"median length {median:,} words (CJK: characters); total {sum(kl):,}.</p>"
             f"<p>Sources: {', '.join(html.escape(str(p)) for p in inputs)}</p>"]
    parts.append(_bars("Length of kept documents (words / CJK characters)", _histogram(s["kept_lengths"])))
    if s["dropped_lengths"]:
        parts.append(_bars("Length of dropped documents", _histogram(s["dropped_lengths"]), "#e45756"))
    parts.append(_bars("Language mix (kept)", list(s["languages"].items())[:20], "#54a24b"))
    parts.append(_bars("Drop reasons", list(s["drop_reasons"].items())[:25], "#e45756"))
    parts.append(_bars("Duplicate clusters: documents per cluster -> clusters",
                       [(str(k), v) for k, v in s["cluster_sizes"].items()], "#b279a2"))
    if s["stats"]:
        st = s["stats"]
        rows = "".join(f"<tr><td>{html.escape(n)}</td><td>{d['in']:,}</td><td>{d['out']:,}</td>"
                       f"<td>{d['seconds']:.2f}</td><td>{html.escape(', '.join(f'{k}={v}' for k, v in d['dropped'].items()))}</td></tr>"
                       for n, d in st["steps"].items())
        parts.append(f"<h3>Pipeline</h3><p>{st['records_in']:,} input records = {st['kept']:,} kept + "
                     f"{st['dropped']:,} dropped + {st['errors']:,} errors</p><table border=1 cellpadding=4>"
                     f"<tr><th>step</th><th>in</th><th>out</th><th>s</th><th>drops</th></tr>{rows}</table>")
    page = ("<!doctype html><html><head><meta charset='utf-8'><title>Dataset card</title><style>"
            "body{font-family:sans-serif;max-width:900px;margin:2em auto}</style></head><body>"
            + "".join(parts) + "</body></html>")
    atomic_write_text(output, page)
    return {k: v for k, v in s.items() if not k.endswith("_lengths")}
