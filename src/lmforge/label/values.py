"""Annotation values by task kind, checked and put in canonical form.

- classification: one label name, ``"positive"``
- multilabel: a list of label names in the project's label order, ``["sports", "politics"]`` (may be empty)
- ner: a list of spans ``{"start", "end", "label", "text"}`` with Python character offsets (code
  points: an emoji or a CJK character counts 1), end exclusive, sorted by position
"""

from __future__ import annotations

from typing import Any

from ..errors import LmforgeError

KINDS = ("classification", "multilabel", "ner")


class LabelError(LmforgeError):
    """A request the project cannot take: an unknown example or label, a span outside the text."""


class NotFoundError(LabelError):
    """An example id that is not in the project."""


def normalize_value(kind: str, value: Any, labels: list[str], text: str, where: str) -> Any:
    """A value checked against the kind, the label set and the text (spans), in canonical form."""
    known = set(labels)
    if kind == "classification":
        if isinstance(value, list) and len(value) == 1:
            value = value[0]
        if not isinstance(value, str) or value not in known:
            raise LabelError(f"{where}: {value!r} is not one of the labels {labels}", "pick a label of the project")
        return value
    if kind == "multilabel":
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or any(not isinstance(v, str) for v in value):
            raise LabelError(f"{where}: a multi-label value is a list of label names, got {value!r}")
        unknown = [v for v in value if v not in known]
        if unknown:
            raise LabelError(f"{where}: unknown labels {unknown} (labels: {labels})", "pick labels of the project")
        return [lab for lab in labels if lab in set(value)]
    if kind == "ner":
        if not isinstance(value, list):
            raise LabelError(f"{where}: an NER value is a list of spans {{start, end, label}}, got {value!r}")
        spans = []
        for s in value:
            if not isinstance(s, dict) or not {"start", "end", "label"} <= set(s):
                raise LabelError(f"{where}: a span needs start, end and label, got {s!r}")
            a, z, lab = s["start"], s["end"], s["label"]
            if type(a) is not int or type(z) is not int or not 0 <= a < z <= len(text):
                raise LabelError(f"{where}: span [{a!r}, {z!r}) is not inside the text of {len(text)} characters",
                                 "offsets are Python character offsets, end exclusive")
            if lab not in known:
                raise LabelError(f"{where}: unknown span label {lab!r} (labels: {labels})")
            if "text" in s and s["text"] != text[a:z]:
                raise LabelError(f"{where}: span [{a}, {z}) is {text[a:z]!r} in the text, not {s['text']!r}",
                                 "offsets are Python character offsets (code points), not UTF-16 or bytes")
            span = {"start": a, "end": z, "label": lab, "text": text[a:z]}
            if span not in spans:
                spans.append(span)
        return sorted(spans, key=lambda s: (s["start"], s["end"], s["label"]))
    raise LabelError(f"unknown task kind {kind!r}", f"use one of {', '.join(KINDS)}")
