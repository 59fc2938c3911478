"""Import into a labeling project and export from it.

Import: jsonl/json/csv/tsv (through ``data.readers.read_records``), the data stage's output (fields
under ``meta``; a ``data split`` directory of train/val/test files) and Label Studio JSON exports
(``labelstudio.py``). Export: ``jsonl`` in the layout ``lmforge finetune`` reads for classification
(``{"id", "text", "label"}``, label a list for multi-label) and ``{"id", "text", "spans"}`` for NER;
``conll`` (``token<TAB>tag``, IOB2: what the NER task reads); ``labelstudio`` (tasks it imports).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable, Iterator

from ..errors import InputError
from .labelstudio import LS_KEY, OFFSETS
from .project import KINDS, LabelError, Project

SPAN_FIELDS = ("spans", "entities")


# -- reading -------------------------------------------------------------------------------------
def _files(path: Path) -> list[Path]:
    if path.is_dir():  # the data stage's split directory: train.jsonl, val.jsonl, test.jsonl, ...
        files = sorted(p for p in path.iterdir() if p.name.endswith((".jsonl", ".jsonl.gz", ".jsonl.zst")))
        if not files:
            raise InputError(f"{path}: no .jsonl files in the directory", "pass a file, or a `data split` output")
        return files
    if not path.is_file():
        raise InputError(f"file not found: {path}", "check the path")
    return [path]


def _records(path: Path) -> Iterator[tuple[int, dict]]:
    from ..data.readers import read_records

    yield from read_records(str(path))


def _field(rec: dict, key: str) -> Any:
    if key in rec:
        return rec[key]
    meta = rec.get("meta")
    return meta.get(key) if isinstance(meta, dict) else None


def _plain(rec: dict, line: int, src: Path, split: str | None, fields: dict) -> tuple[dict, Any, Any]:
    """(example, label value or None, prediction row or None) of a jsonl/csv record."""
    from ..data.readers import TEXT_COLUMNS

    text = None
    for name in (fields["text"], *TEXT_COLUMNS):
        if isinstance(_field(rec, name), str):
            text = _field(rec, name)
            break
    if text is None:
        raise InputError(f"{src}:{line}: no text field {fields['text']!r} (fields: {sorted(rec)})",
                         "pass --text-field NAME")
    taken = {fields["text"], fields["id"], fields["label"], "meta", "prediction", "score", *SPAN_FIELDS}
    meta = {k: v for k, v in rec.items() if k not in taken and not k.isdigit()}
    if isinstance(rec.get("meta"), dict):
        meta.update({k: v for k, v in rec["meta"].items() if k not in taken})
    if split:
        meta.setdefault("split", split)
    rid = _field(rec, fields["id"])
    ex = {"id": str(rid) if rid is not None else f"{src.name}:{line}", "text": text, "meta": meta}
    value = _field(rec, fields["label"])
    for name in SPAN_FIELDS:
        if value is None and isinstance(_field(rec, name), list):
            value = [_span_record(s, src, line) for s in _field(rec, name)]
    if isinstance(value, str) and not value.strip():
        value = None
    pred = rec.get("prediction")
    pred = None if pred is None else {"id": ex["id"], "value": pred, "score": rec.get("score")}
    return ex, value, pred


def _span_record(s: Any, src: Path, line: int) -> dict:
    if isinstance(s, (list, tuple)) and len(s) == 3:  # doccano's [start, end, label]
        return {"start": s[0], "end": s[1], "label": str(s[2])}
    if isinstance(s, dict) and "start" in s and "end" in s and ("label" in s or "type" in s):
        span = {"start": s["start"], "end": s["end"], "label": str(s.get("label", s.get("type")))}
        if "text" in s:
            span["text"] = s["text"]
        return span
    raise InputError(f"{src}:{line}: a span is {{start, end, label}} or [start, end, label], got {s!r}")


def _coerce(kind: str, value: Any, sep: str) -> Any:
    if kind == "multilabel" and isinstance(value, str):
        return [v.strip() for v in value.split(sep) if v.strip()]
    if kind in ("classification", "multilabel") and isinstance(value, (int, float, bool)):
        return str(value)
    if kind == "multilabel" and isinstance(value, list):
        return [str(v) for v in value]
    return value


def _guess_kind(values: list[Any]) -> str | None:
    for v in values:
        if isinstance(v, list) and any(isinstance(s, dict) for s in v):
            return "ner"
    if any(isinstance(v, list) for v in values):
        return "multilabel"
    return "classification" if values else None


def _value_labels(kind: str, value: Any) -> list[str]:
    if kind == "ner":
        return [s["label"] for s in value]
    return list(value) if isinstance(value, list) else [value]


# -- import --------------------------------------------------------------------------------------
def import_file(project: str | Path, path: str | Path, kind: str | None = None, labels: Iterable[str] = (),
                text_field: str = "text", label_field: str = "label", id_field: str = "id",
                annotator: str = "import", label_separator: str = ",", offsets: str = "auto") -> dict:
    """Add a file's examples (and its labels, as ``annotator``'s annotations) to a project, creating
    the project when it does not exist. Returns counts."""
    path = Path(path)
    if offsets not in OFFSETS:
        raise LabelError(f"unknown offsets {offsets!r}", f"use one of {', '.join(OFFSETS)}")
    items = [(f, line, rec) for f in _files(path) for line, rec in _records(f)]
    if not items:
        raise InputError(f"{path}: no records", "the file is empty")
    from .labelstudio import import_tasks, is_task

    if is_task(items[0][2]):
        return import_tasks(project, [rec for _, _, rec in items], kind, labels, text_field, offsets, path.name)
    fields = {"text": text_field, "label": label_field, "id": id_field}
    parsed = [_plain(rec, line, f, f.name.split(".")[0] if path.is_dir() else None, fields) for f, line, rec in items]
    if kind is None and Path(project).is_file():
        with Project(project) as p:
            kind = p.kind
    kind = kind or _guess_kind([v for _, v, _ in parsed if v is not None])
    if kind is None:
        raise LabelError(f"{path} has no labels to tell the task kind from",
                         f"pass --kind ({', '.join(KINDS)}) and --labels")
    values = {ex["id"]: _coerce(kind, v, label_separator) for ex, v, _ in parsed if v is not None}
    preds = [{**p, "value": _coerce(kind, p["value"], label_separator)} for _, _, p in parsed if p is not None]
    found = [lab for v in [*values.values(), *(p["value"] for p in preds)] for lab in _value_labels(kind, v)]
    with Project.open_or_create(project, kind, [*labels, *found]) as proj:
        if not proj.labels:
            raise LabelError(f"{path} has no labels and the project has none", "pass --labels a,b,c")
        counts = proj.add_examples((ex for ex, _, _ in parsed), who=annotator)
        for rid, v in values.items():
            proj.annotate(rid, v, annotator, source="import", if_changed=True)
        if preds:
            proj.set_predictions(preds, "import")
        return {**counts, "annotations": len(values), "predictions": len(preds), "kind": proj.kind,
                "labels": proj.labels}


# -- export --------------------------------------------------------------------------------------
def export(project: str | Path, fmt: str, output: str | Path, annotator: str | None = None,
           include_unlabeled: bool = False, offsets: str = "codepoints") -> int:
    """Write the project to ``output`` in ``fmt`` (jsonl, labelstudio, conll); returns examples written."""
    from ..runs import atomic_write_text

    with Project(project) as proj:
        if fmt == "jsonl":
            lines = [json.dumps(r, ensure_ascii=False) for r in jsonl_rows(proj, annotator, include_unlabeled)]
            body = "".join(line + "\n" for line in lines)
        elif fmt == "conll":
            if proj.kind != "ner":
                raise LabelError(f"conll export is for NER projects; this one is {proj.kind}", "use --format jsonl")
            blocks = [conll_block(r["text"], r["value"]) for r in proj.rows(annotator)]
            lines = [b for b in blocks if b]
            body = "\n".join(lines)
        elif fmt == "labelstudio":
            from .labelstudio import labelstudio_tasks

            lines = labelstudio_tasks(proj, offsets)
            body = json.dumps(lines, ensure_ascii=False, indent=1) + "\n"
        else:
            raise LabelError(f"unknown export format {fmt!r}", "use jsonl, labelstudio or conll")
        atomic_write_text(output, body)
        with proj._tx():
            proj._audit("export", annotator or "lmforge", {"format": fmt, "output": str(output), "count": len(lines)})
    return len(lines)


def jsonl_rows(proj: Project, annotator: str | None = None, include_unlabeled: bool = False) -> Iterator[dict]:
    """Classification: ``{"id", "text", "label", "meta"}`` (label a list for multi-label), what
    ``finetune`` with task kind classification reads; NER: ``{"id", "text", "spans", "meta"}``."""
    key = "spans" if proj.kind == "ner" else "label"
    for r in proj.rows(annotator, include_unlabeled):
        meta = {k: v for k, v in r["meta"].items() if k != LS_KEY}
        yield {"id": r["id"], "text": r["text"], key: r["value"], "meta": meta}


def conll_tokens(text: str, cuts: Iterable[int] = ()) -> list[tuple[int, int]]:
    """Token spans: whitespace separates words, every CJK character is a token, and a token is also
    cut at each offset in ``cuts`` (span boundaries), so entities map onto whole tokens."""
    from ..text.scripts import is_cjk_char

    cuts = set(cuts)
    out, start = [], None
    for i, ch in enumerate(text):
        if ch.isspace():
            if start is not None:
                out.append((start, i))
            start = None
            continue
        if is_cjk_char(ch):
            if start is not None:
                out.append((start, i))
            out.append((i, i + 1))
            start = None
            continue
        if start is not None and i in cuts:
            out.append((start, i))
            start = None
        if start is None:
            start = i
    if start is not None:
        out.append((start, len(text)))
    return out


def conll_block(text: str, spans: list[dict]) -> str:
    """One sentence as ``token<TAB>IOB2 tag`` lines (overlapping spans: the earlier, then longer, wins)."""
    chosen, end = [], -1
    for s in sorted(spans, key=lambda s: (s["start"], -s["end"])):
        if s["start"] >= end:
            chosen.append(s)
            end = s["end"]
    tokens = conll_tokens(text, [x for s in chosen for x in (s["start"], s["end"])])
    tags = ["O"] * len(tokens)
    for s in chosen:
        inside = [k for k, (a, z) in enumerate(tokens) if a >= s["start"] and z <= s["end"]]
        for j, k in enumerate(inside):
            tags[k] = ("B-" if j == 0 else "I-") + s["label"]
    return "".join(f"{text[a:z]}\t{t}\n" for (a, z), t in zip(tokens, tags))


__all__ = ["import_file", "export", "jsonl_rows", "conll_block", "conll_tokens"]
