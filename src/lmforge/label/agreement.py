"""Inter-annotator agreement: Cohen's kappa (two annotators), Fleiss' kappa (a fixed number of
annotators per item), Krippendorff's alpha (nominal; any number of annotators, missing values), and
the list of examples whose annotators disagree.

What an item is depends on the task: an example (classification), an (example, label) yes/no
decision (multi-label), a non-space character's entity type or "O" (NER, so partly overlapping spans
count partly; exact-span F1 between annotators is reported beside it).
"""

from __future__ import annotations

from collections import Counter
from itertools import combinations
from typing import Any, Hashable, Sequence

import numpy as np


def cohen_kappa(a: Sequence[Hashable], b: Sequence[Hashable]) -> float:
    """Cohen's kappa of two annotators' labels for the same items (nan when chance agreement is 1)."""
    if len(a) != len(b):
        raise ValueError(f"cohen_kappa: {len(a)} and {len(b)} labels; give one label per item from each")
    if not a:
        return float("nan")
    n = len(a)
    po = sum(x == y for x, y in zip(a, b)) / n
    ca, cb = Counter(a), Counter(b)
    pe = sum(ca[k] * cb[k] for k in ca) / (n * n)
    return float("nan") if pe == 1 else (po - pe) / (1 - pe)


def fleiss_kappa(counts: Sequence[Sequence[int]]) -> float:
    """Fleiss' kappa from an items × categories matrix of how many annotators chose each category;
    every item must have the same number (>= 2) of annotators."""
    m = np.asarray(counts, dtype=float)
    if m.ndim != 2 or not len(m):
        return float("nan")
    raters = m.sum(1)
    if not np.all(raters == raters[0]) or raters[0] < 2:
        raise ValueError("fleiss_kappa: every item needs the same number (>= 2) of annotators")
    n, r = len(m), raters[0]
    p_items = ((m * m).sum(1) - r) / (r * (r - 1))
    p_cats = m.sum(0) / (n * r)
    p_bar, p_e = p_items.mean(), float((p_cats ** 2).sum())
    return float("nan") if p_e == 1 else float((p_bar - p_e) / (1 - p_e))


def krippendorff_alpha(units: Sequence[Sequence[Hashable | None]]) -> float:
    """Krippendorff's alpha for nominal data: ``units[i]`` holds the values given to item i (None, or
    a shorter list, where an annotator gave none). Items with fewer than two values are not pairable."""
    values = sorted({v for u in units for v in u if v is not None}, key=repr)
    index = {v: i for i, v in enumerate(values)}
    o = np.zeros((len(values), len(values)))
    for u in units:  # the coincidence matrix: every ordered pair of values within a unit, weight 1/(m-1)
        vs = [index[v] for v in u if v is not None]
        m = len(vs)
        if m < 2:
            continue
        c = np.bincount(vs, minlength=len(values)).astype(float)
        o += (np.outer(c, c) - np.diag(c)) / (m - 1)
    n_c = o.sum(1)
    n = n_c.sum()
    if n < 2:
        return float("nan")
    d_o = o.sum() - np.trace(o)
    d_e = (n_c.sum() ** 2 - (n_c ** 2).sum()) / (n - 1)
    return float("nan") if d_e == 0 else float(1 - d_o / d_e)


# -- projects ------------------------------------------------------------------------------------
def _char_tags(text: str, spans: list[dict]) -> list[str]:
    tags = ["O"] * len(text)
    for s in spans:
        for i in range(s["start"], s["end"]):
            if tags[i] == "O":
                tags[i] = s["label"]
    return [t for t, ch in zip(tags, text) if not ch.isspace()]


def item_table(proj, annotators: Sequence[str] | None = None) -> tuple[list[str], list[dict[str, Any]]]:
    """(annotators, items): each item maps annotator -> value, for examples with >= 2 annotators."""
    cur = proj.current()
    who = sorted(annotators) if annotators else sorted({a for v in cur.values() for a in v})
    texts = {ex["id"]: ex["text"] for ex in proj.examples()} if proj.kind == "ner" else {}
    labels = proj.labels
    items: list[dict[str, Any]] = []
    for eid, by in cur.items():
        by = {a: v for a, v in by.items() if a in who}
        if len(by) < 2:
            continue
        if proj.kind == "classification":
            items.append(by)
        elif proj.kind == "multilabel":
            items += [{a: lab in v for a, v in by.items()} for lab in labels]
        else:
            tags = {a: _char_tags(texts[eid], v) for a, v in by.items()}
            n = len(next(iter(tags.values())))  # the text's non-space characters
            items += [{a: t[i] for a, t in tags.items()} for i in range(n)]
    return who, items


def span_f1(a: list[dict], b: list[dict]) -> tuple[int, int, int]:
    """(matches, spans of a, spans of b): exact (start, end, label) matches."""
    sa = {(s["start"], s["end"], s["label"]) for s in a}
    sb = {(s["start"], s["end"], s["label"]) for s in b}
    return len(sa & sb), len(sa), len(sb)


def agreement(proj, annotators: Sequence[str] | None = None) -> dict:
    """Agreement of a project's current annotations: per-pair Cohen's kappa, Fleiss' kappa over the
    items every annotator labeled, Krippendorff's alpha over all, and the number of conflicts."""
    who, items = item_table(proj, annotators)
    out: dict[str, Any] = {"kind": proj.kind, "annotators": who, "items": len(items), "pairs": {}}
    cur = proj.current() if proj.kind == "ner" else {}
    for a, b in combinations(who, 2):
        both = [it for it in items if a in it and b in it]
        if not both:
            continue
        pair = {"items": len(both), "kappa": _r(cohen_kappa([it[a] for it in both], [it[b] for it in both])),
                "agreement": _r(sum(it[a] == it[b] for it in both) / len(both))}
        if proj.kind == "ner":
            m = na = nb = 0
            for by in cur.values():
                if a in by and b in by:
                    x, y, z = span_f1(by[a], by[b])
                    m, na, nb = m + x, na + y, nb + z
            pair["span_f1"] = _r(2 * m / (na + nb)) if na + nb else None
        out["pairs"][f"{a} | {b}"] = pair
    full = [it for it in items if len(it) == len(who)]
    if full and len(who) >= 2:
        cats = sorted({v for it in full for v in it.values()}, key=repr)
        out["fleiss_kappa"] = _r(fleiss_kappa([[list(it.values()).count(c) for c in cats] for it in full]))
        out["fleiss_items"] = len(full)
    else:
        out["fleiss_kappa"], out["fleiss_items"] = None, 0
    out["krippendorff_alpha"] = _r(krippendorff_alpha([list(it.values()) for it in items])) if items else None
    out["conflicts"] = len(conflicts(proj, who))
    return out


def conflicts(proj, annotators: Sequence[str] | None = None) -> list[dict]:
    """Examples whose annotators' current values differ: ``{"id", "text", "values": {annotator: value}}``."""
    keep = set(annotators) if annotators else None
    texts = {ex["id"]: ex["text"] for ex in proj.examples()}
    out = []
    for eid, by in proj.current().items():
        by = {a: v for a, v in sorted(by.items()) if keep is None or a in keep}
        if len(by) >= 2 and len({repr(v) for v in by.values()}) > 1:
            out.append({"id": eid, "text": texts[eid], "values": by})
    return out


def _r(x: float) -> float | None:
    return None if x != x else round(float(x), 6)
