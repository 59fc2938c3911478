"""The step contract: a generator ``Iterable[Document] -> Iterable[Document]`` with stats for free.

A step implements ``process(doc)`` returning the (possibly changed) document to keep it, a string
reason to drop it, or a list of documents to replace it with (one in, many out: augmentation returns
the original plus its copies). The base class counts in/out/created, drops per reason and time, and
hands every dropped document to the sink (the exclusion writer), so nothing disappears silently:
``in + created = out + dropped`` for every step. A step whose work is cheaper in batches (a model
behind it) sets ``batch_size`` and implements ``process_batch``.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from itertools import islice
from typing import Callable, Iterable, Iterator

from ..document import Document

Sink = Callable[[Document, str], None]


@dataclass
class StepStats:
    name: str
    docs_in: int = 0
    docs_out: int = 0
    created: int = 0  # documents a one-in, many-out step added: in + created = out + dropped
    seconds: float = 0.0
    dropped: Counter = field(default_factory=Counter)
    counters: Counter = field(default_factory=Counter)  # step-specific, e.g. PII replacements

    def to_dict(self) -> dict:
        return {"in": self.docs_in, "out": self.docs_out, "created": self.created, "dropped": dict(sorted(self.dropped.items())),
                "seconds": round(self.seconds, 4), **({"counters": dict(sorted(self.counters.items()))}
                                                      if self.counters else {})}

    def merge(self, d: dict) -> None:
        self.docs_in += d["in"]
        self.docs_out += d["out"]
        self.created += d.get("created", 0)
        self.seconds += d["seconds"]
        self.dropped.update(d.get("dropped", {}))
        self.counters.update(d.get("counters", {}))


Result = Document | list[Document] | str


class Step:
    name = "step"
    batch_size = 1  # > 1: documents reach ``process_batch`` this many at a time

    def __init__(self) -> None:
        self.stats = StepStats(self.name)

    def process(self, doc: Document) -> Result:
        raise NotImplementedError

    def process_batch(self, docs: list[Document]) -> list[Result]:
        return [self.process(d) for d in docs]

    def __call__(self, docs: Iterable[Document], sink: Sink) -> Iterator[Document]:
        st = self.stats
        clock = time.perf_counter
        if self.batch_size > 1:
            for chunk in _chunks(docs, self.batch_size):
                st.docs_in += len(chunk)
                t = clock()
                results = self.process_batch(chunk)
                st.seconds += clock() - t
                for doc, res in zip(chunk, results, strict=True):
                    yield from self._emit(doc, res, sink)
            return
        for doc in docs:
            st.docs_in += 1
            t = clock()
            res = self.process(doc)
            st.seconds += clock() - t
            yield from self._emit(doc, res, sink)

    def _emit(self, doc: Document, res: Result, sink: Sink) -> Iterator[Document]:
        st = self.stats
        if isinstance(res, str):
            st.dropped[res] += 1
            sink(doc, res)
        elif isinstance(res, list):
            if not res:
                raise ValueError(f"step {self.name} returned no documents for {doc.id}: return a reason to drop it")
            st.docs_out += len(res)
            st.created += len(res) - 1
            yield from res
        else:
            st.docs_out += 1
            yield res


def _chunks(docs: Iterable[Document], n: int) -> Iterator[list[Document]]:
    it = iter(docs)
    while chunk := list(islice(it, n)):
        yield chunk


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
