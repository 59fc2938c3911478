"""Label Studio JSON: import its task exports into a project, export a project as tasks it imports.

A task is ``{"id", "data": {"text": ...}, "annotations": [{"completed_by", "result": [...], ...}],
"predictions": [{"model_version", "score", "result": [...]}]}``; a result item is a ``choices``
(``value.choices``) or ``labels`` span (``value.start/end/text/labels``).

Offsets: current Label Studio stores a span's ``start``/``end`` in Unicode code points (its editor
converts the browser's UTF-16 offsets with ``charsToCodePoints`` in ``utils/html.js``, "in python and
other modern tools complex unicode symbols handled as code points"), i.e. Python string offsets.
Versions from 2021 and before wrote UTF-16 code units (label-studio issue #1347: every span after an
emoji shifted). ``offsets="auto"`` checks each span against its ``value.text`` and takes whichever
reading matches; a span that matches neither is left out of the project's value and counted.

Lossless: each imported task and annotation is kept verbatim (the task in the example's meta, the
annotation in the annotation row's ``extra``), so an export of a project nobody changed gives back the
same JSON; annotations made in lmforge are written in Label Studio's layout.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any
from xml.sax.saxutils import quoteattr

from .project import LabelError, Project

LS_KEY = "_labelstudio"  # where an example's Label Studio task is kept (in its meta)
OFFSETS = ("auto", "codepoints", "utf16")


def utf16_to_index(text: str, unit: int) -> int:
    """The Python index at UTF-16 offset ``unit`` (a JavaScript string offset) of ``text``."""
    n = 0
    for i, ch in enumerate(text):
        if n >= unit:
            return i
        n += 2 if ord(ch) > 0xFFFF else 1
    return len(text)


def index_to_utf16(text: str, index: int) -> int:
    return index + sum(ord(ch) > 0xFFFF for ch in text[:index])


def _same(piece: str, said: str) -> bool:  # Label Studio writes a newline in value.text as "\n" (2 chars)
    return piece == said or piece.replace("\r", "\\n").replace("\n", "\\n") == said


def ls_span(text: str, value: dict, offsets: str = "auto") -> tuple[int, int] | None:
    """Python offsets of a Label Studio span value, or None when they do not fit the text."""
    a, z, said = value.get("start"), value.get("end"), value.get("text")
    if type(a) is not int or type(z) is not int:
        return None
    readings = {"codepoints": (a, z), "utf16": (utf16_to_index(text, a), utf16_to_index(text, z))}
    for name in (["codepoints", "utf16"] if offsets == "auto" else [offsets]):
        s, e = readings[name]
        if 0 <= s < e <= len(text) and (offsets != "auto" or not isinstance(said, str) or _same(text[s:e], said)):
            return s, e
    return None


def is_task(rec: dict) -> bool:
    return isinstance(rec.get("data"), dict) and any(k in rec for k in ("annotations", "completions", "predictions",
                                                                        "id"))


def _is_span(r: dict) -> bool:
    v = r.get("value") or {}
    return r.get("type") == "labels" or ("labels" in v and "start" in v)


def _is_choice(r: dict) -> bool:
    return r.get("type") == "choices" or "choices" in (r.get("value") or {})


def ls_value(kind: str, text: str, result: list[dict], offsets: str = "auto") -> tuple[Any, int]:
    """(project value, spans left out) of a ``result`` list; value None when it holds no result of the
    project's kind (a classification annotation without a choice)."""
    if kind == "ner":
        spans, bad = [], 0
        for r in result:
            if _is_span(r):
                v = r["value"]
                where = ls_span(text, v, offsets)
                if where is None:
                    bad += max(1, len(v.get("labels") or []))
                    continue
                spans += [{"start": where[0], "end": where[1], "label": str(lab)} for lab in v.get("labels") or []]
        return spans, bad
    items = [r for r in result if _is_choice(r)]
    choices = [str(c) for r in items for c in r["value"].get("choices") or []]
    if kind == "multilabel":
        return (choices if items else None), 0
    return (choices[0] if choices else None), 0


def _describe(result: list[dict]) -> str:
    """What a result list holds, for the message about another labeling config."""
    parts = sorted({f"{r.get('type') or '?'} '{r.get('from_name') or '?'}' with value keys "
                    f"{sorted((r.get('value') or {}))}" for r in result if isinstance(r, dict)})
    return "; ".join(parts[:3]) or "nothing readable"


def _kind(tasks: list[dict]) -> str:
    multi = False
    for t in tasks:
        for a in _anns(t) + (t.get("predictions") or []):
            for r in a.get("result") or []:
                if _is_span(r):
                    return "ner"
                multi |= _is_choice(r) and len(r["value"].get("choices") or []) > 1
    return "multilabel" if multi else "classification"


def _anns(t: dict) -> list[dict]:
    return list(t.get("annotations") or t.get("completions") or [])


def _annotator(ann: dict) -> str:
    who = ann.get("lmforge_annotator") or ann.get("completed_by")
    if isinstance(who, dict):
        who = who.get("email") or who.get("id")
    return str(who) if who not in (None, "") else "labelstudio"


def _text_key(data: dict, text_field: str) -> str:
    if isinstance(data.get(text_field), str):
        return text_field
    keys = [k for k, v in data.items() if isinstance(v, str) and k != "id"]
    if not keys:
        raise LabelError(f"a Label Studio task has no text in its data (keys: {sorted(data)})", "pass --text-field NAME")
    return keys[0]


def import_tasks(project: str | Path, tasks: list[dict], kind: str | None = None, labels=(), text_field: str = "text",
                 offsets: str = "auto", source_name: str = "labelstudio") -> dict:
    if offsets not in OFFSETS:
        raise LabelError(f"unknown offsets {offsets!r}", f"use one of {', '.join(OFFSETS)}")
    if kind is None and Path(project).is_file():
        with Project(project) as p:
            kind = p.kind
    kind = kind or _kind(tasks)
    found = [str(x) for t in tasks for a in _anns(t) + (t.get("predictions") or []) for r in a.get("result") or []
             for x in ((r.get("value") or {}).get("labels" if kind == "ner" else "choices") or [])]
    stats = {"annotations": 0, "skipped": 0, "predictions": 0, "spans_dropped": 0, "unreadable": 0}
    examples, anns, preds, other = [], [], {}, []
    for n, t in enumerate(tasks, 1):
        data = t["data"]
        key = _text_key(data, text_field)
        text = data[key]
        rid = str(data["id"]) if "id" in data else str(t["id"]) if "id" in t else f"{source_name}:{n}"
        meta = {k: v for k, v in data.items() if k not in (key, "id")}
        meta[LS_KEY] = {"task": {k: v for k, v in t.items() if k not in ("annotations", "completions", "predictions",
                                                                          "data")},
                        "text_key": key, "data_keys": list(data), "keys": list(t)}
        examples.append({"id": rid, "text": text, "meta": meta})
        for a in _anns(t):
            value, bad = ls_value(kind, text, a.get("result") or [], offsets)
            stats["spans_dropped"] += bad
            if value is None and a.get("result") and not a.get("was_cancelled"):
                other.append((n, _describe(a["result"])))  # a result, but not one of this kind: another config
                continue
            anns.append((rid, a, value))
        seen: dict[str, int] = {}
        for p in t.get("predictions") or []:
            value, bad = ls_value(kind, text, p.get("result") or [], offsets)
            model = str(p.get("model_version") or "labelstudio")
            seen[model] = seen.get(model, 0) + 1
            model = model if seen[model] == 1 else f"{model}#{seen[model]}"
            if value is not None:
                preds.setdefault(model, []).append({"id": rid, "value": value, "score": p.get("score"),
                                                    "extra": {"labelstudio": p}})
    want = "Labels results (value.start, value.end, value.labels)" if kind == "ner" else \
        "Choices results (value.choices)"
    if other and not anns:
        n, what = other[0]
        raise LabelError(f"{source_name}: task {n}: no annotation has {want} for a {kind} project; they hold "
                         f"{what} (an export from another labeling config)",
                         "lmforge reads Label Studio <Choices> and <Labels> results; export a project labeled with one of them")
    stats["unreadable"] = len(other)
    stats["unreadable_examples"] = [f"task {n}: {what}" for n, what in other[:3]]
    with Project.open_or_create(project, kind, [*labels, *found]) as proj:
        counts = proj.add_examples(examples, who=source_name)
        for rid, a, value in anns:
            who, at, extra = _annotator(a), a.get("created_at"), {"labelstudio": a}
            if a.get("was_cancelled") or value is None:
                proj.skip(rid, who, source="labelstudio", extra=extra, created_at=at)
                stats["skipped"] += 1
            else:
                proj.annotate(rid, value, who, source="labelstudio", extra=extra, created_at=at)
                stats["annotations"] += 1
        for model, rows in preds.items():
            stats["predictions"] += proj.set_predictions(rows, model)
        return {**counts, **stats, "kind": proj.kind, "labels": proj.labels}


# -- export --------------------------------------------------------------------------------------
def _names(proj: Project) -> tuple[str, str]:
    """from_name/to_name of the project's Label Studio results, or ("label", "text")."""
    want = _is_span if proj.kind == "ner" else _is_choice
    for h in proj.history():
        for r in ((h["extra"] or {}).get("labelstudio") or {}).get("result") or []:
            if want(r) and r.get("from_name") and r.get("to_name"):
                return r["from_name"], r["to_name"]
    return "label", "text"


def _rid(*parts: Any) -> str:
    """A stable 10-character result id."""
    return hashlib.sha1("\x1f".join(map(str, parts)).encode()).hexdigest()[:10]


def ls_result(kind: str, text: str, value: Any, names: tuple[str, str], key: Any, offsets: str = "codepoints") -> list:
    fn, tn = names
    if kind == "ner":
        conv = (lambda i: index_to_utf16(text, i)) if offsets == "utf16" else (lambda i: i)
        return [{"value": {"start": conv(s["start"]), "end": conv(s["end"]), "text": s["text"], "labels": [s["label"]]},
                 "id": _rid(key, k), "from_name": fn, "to_name": tn, "type": "labels", "origin": "manual"}
                for k, s in enumerate(value)]
    choices = value if isinstance(value, list) else [value]
    return [{"value": {"choices": choices}, "id": _rid(key, 0), "from_name": fn, "to_name": tn, "type": "choices",
             "origin": "manual"}]


def _emitted(history: list[dict]) -> list[dict]:
    """Per annotator: its imported Label Studio annotations while no lmforge action replaced them,
    else its latest action."""
    groups: dict[str, list[dict]] = {}
    for h in history:
        if h["undone_at"] is None:
            groups.setdefault(h["annotator"], []).append(h)
    out = []
    for rows in groups.values():
        ls = [r for r in rows if r["source"] == "labelstudio" and (r["extra"] or {}).get("labelstudio")]
        out += ls if rows[-1] in ls else [rows[-1]]
    return sorted(out, key=lambda r: r["id"])


def labelstudio_tasks(proj: Project, offsets: str = "codepoints") -> list[dict]:
    """The project as a Label Studio task list (span offsets in code points, or ``utf16`` for old versions)."""
    if offsets not in ("codepoints", "utf16"):
        raise LabelError(f"unknown offsets {offsets!r}", "use codepoints (Label Studio >= 1.6) or utf16")
    names, kind, tasks = _names(proj), proj.kind, []
    for ex in proj.examples():
        anns = []
        for h in _emitted(proj.history(ex["id"])):
            raw = (h["extra"] or {}).get("labelstudio")
            if h["source"] == "labelstudio" and raw is not None and offsets == "codepoints":
                anns.append(raw)
                continue
            ann = {"id": h["id"], "result": [] if h["status"] == "skipped" else
                   ls_result(kind, ex["text"], h["value"], names, (ex["id"], h["id"]), offsets),
                   "was_cancelled": h["status"] == "skipped", "ground_truth": False,
                   "created_at": h["created_at"], "updated_at": h["created_at"]}
            if h["annotator"].isdigit():
                ann["completed_by"] = int(h["annotator"])
            else:
                ann["lmforge_annotator"] = h["annotator"]
            anns.append(ann)
        preds = []
        for p in proj.predictions(ex["id"], by="id"):
            raw = (p["extra"] or {}).get("labelstudio")
            preds.append(raw if raw is not None and offsets == "codepoints" else
                         {"model_version": p["model"].split("#")[0], "score": p["score"],
                          "result": ls_result(kind, ex["text"], p["value"], names, (ex["id"], p["model"]), offsets)})
        meta = dict(ex["meta"])
        ls = meta.pop(LS_KEY, None)
        if ls is None:
            tasks.append({"id": ex["seq"], "data": {"text": ex["text"], "id": ex["id"], **meta},
                          "annotations": anns, "predictions": preds})
            continue
        keys = [k for k in ls["data_keys"]] + [k for k in meta if k not in ls["data_keys"]]
        data = {k: ex["text"] if k == ls["text_key"] else ex["id"] if k == "id" else meta.get(k) for k in keys}
        built = {**ls["task"], "data": data,
                 ("completions" if "completions" in ls["keys"] else "annotations"): anns, "predictions": preds}
        if "predictions" not in ls["keys"] and not preds:
            del built["predictions"]
        order = ls["keys"] + [k for k in built if k not in ls["keys"]]
        tasks.append({k: built[k] for k in order if k in built})
    return tasks


def labeling_config(proj: Project) -> str:
    """A Label Studio labeling interface (XML) for the project's kind and labels."""
    fn, tn = _names(proj)
    items = "".join(f"\n    <{'Label' if proj.kind == 'ner' else 'Choice'} value={quoteattr(lab)}/>" for lab in proj.labels)
    text = f'  <Text name={quoteattr(tn)} value="$text"/>'
    if proj.kind == "ner":
        return f"<View>\n  <Labels name={quoteattr(fn)} toName={quoteattr(tn)}>{items}\n  </Labels>\n{text}\n</View>\n"
    choice = "multiple" if proj.kind == "multilabel" else "single"
    return (f"<View>\n{text}\n  <Choices name={quoteattr(fn)} toName={quoteattr(tn)} choice=\"{choice}\">{items}\n"
            "  </Choices>\n</View>\n")
