"""The step contract: a generator ``Iterable[Document] -> Iterable[Document]`` with stats for free.

A step implements ``process(doc)`` returning the (possibly changed) document to keep it, or a
string reason to drop it; the base class counts in/out, drops per reason and time, and hands every
dropped document to the sink (the exclusion writer), so nothing disappears silently.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator

from ..document import Document

Sink = Callable[[Document, str], None]


@dataclass
class StepStats:
    name: str
    docs_in: int = 0
    docs_out: int = 0
    seconds: float = 0.0
    dropped: Counter = field(default_factory=Counter)
    counters: Counter = field(default_factory=Counter)  # step-specific, e.g. PII replacements

    def to_dict(self) -> dict:
        return {"in": self.docs_in, "out": self.docs_out, "dropped": dict(sorted(self.dropped.items())),
                "seconds": round(self.seconds, 4), **({"counters": dict(sorted(self.counters.items()))}
                                                      if self.counters else {})}

    def merge(self, d: dict) -> None:
        self.docs_in += d["in"]
        self.docs_out += d["out"]
        self.seconds += d["seconds"]
        self.dropped.update(d.get("dropped", {}))
        self.counters.update(d.get("counters", {}))


class Step:
    name = "step"

    def __init__(self) -> None:
        self.stats = StepStats(self.name)

    def process(self, doc: Document) -> Document | str:
        raise NotImplementedError

    def __call__(self, docs: Iterable[Document], sink: Sink) -> Iterator[Document]:
        st = self.stats
        clock = time.perf_counter
        for doc in docs:
            st.docs_in += 1
            t = clock()
            res = self.process(doc)
            st.seconds += clock() - t
            if isinstance(res, str):
                st.dropped[res] += 1
                sink(doc, res)
            else:
                st.docs_out += 1
                yield res


class Precheck(Step):
    """Drops what a reader already judged (non-text WARC records) and empty documents."""

    name = "precheck"

    def process(self, doc: Document) -> Document | str:
        reason = doc.meta.pop("_drop", None)
        if reason:
            return reason
        if not doc.text or not doc.text.strip():
            return "empty"
        return doc
