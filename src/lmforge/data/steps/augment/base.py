"""The augmentation step: one document in, the original plus up to ``n`` copies out.

Each copy is ``{orig_id}#aug{k}`` with ``meta.augmented_from`` (the root original, also for a copy of a
copy) and ``meta.augment`` (the method); every other meta field is copied, so a classification label
stays with its text and NER spans are moved with their words (see ``units.py``). A copy equal to the
original or to an earlier copy, or empty, is not emitted (counted). Randomness comes from the seed and the document id
alone, so a copy is the same whatever the sharding, order or number of workers.
"""

from __future__ import annotations

import difflib
import random
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

import xxhash

from ....errors import ConfigError
from ...document import Document
from ..base import Result, Step
from .units import View, build_view

TRIES = 3  # attempts per wanted copy (a random edit can come out equal to the original)


@dataclass
class Options:
    """Per-method settings from ``key=value`` pairs; unknown keys are errors with a suggestion."""

    @classmethod
    def parse(cls, options: dict[str, Any] | None, method: str) -> Options:
        known = {f.name: f for f in fields(cls)}
        out = {}
        for key, value in (options or {}).items():
            if key not in known:
                close = difflib.get_close_matches(key, list(known), n=1)
                hint = f"did you mean '{close[0]}'?" if close else f"options of {method}: {', '.join(known) or 'none'}"
                raise ConfigError(f"unknown option '{key}' for augmentation method '{method}'", hint)
            default = getattr(cls, key)
            try:
                value = type(default)(value) if not isinstance(default, bool) else _bool(value)
            except (TypeError, ValueError):
                raise ConfigError(f"option {key}={value!r}: expected {type(default).__name__}",
                                  f"write e.g. {key}={default}") from None
            if isinstance(value, float) and not 0.0 <= value <= 1.0:
                raise ConfigError(f"option {key}={value} is outside [0, 1]", "rates and probabilities are fractions")
            out[key] = value
        return cls(**out)


def _bool(v: Any) -> bool:
    if isinstance(v, bool):
        return v
    if str(v).lower() in ("1", "true", "yes", "on"):
        return True
    if str(v).lower() in ("0", "false", "no", "off"):
        return False
    raise ValueError(v)


class Augmenter(Step):
    """Base of every augmentation method: subclasses implement ``edit(view, rng, k)``."""

    name = "augment"
    method = "augment"

    def __init__(self, n: int = 1, seed: int = 0, lang: str = "auto"):
        super().__init__()
        if n < 1:
            raise ConfigError(f"n={n}: the number of copies must be at least 1", "use --n 1 or more")
        if lang not in ("auto", "en", "zh"):
            raise ConfigError(f"unknown language '{lang}' for augmentation", "use en, zh or auto")
        self.n, self.seed, self.lang = n, seed, lang

    def rng(self, doc: Document) -> random.Random:
        return random.Random(xxhash.xxh64_intdigest(f"{self.method}\0{doc.id}".encode(), seed=self.seed))

    def edit(self, view: View, rng: random.Random, k: int) -> View | None:
        """An attempt at a copy, made by editing ``view`` (a private clone); None: no edit possible.
        ``k`` counts the attempts for one document from a random start (methods that cycle use it)."""
        raise NotImplementedError

    def view(self, doc: Document) -> View | None:
        view = build_view(doc, self.lang)
        if isinstance(view, str):  # the document passes through unchanged, counted
            self.stats.counters[f"skipped:{view}"] += 1
            return None
        return view

    def process(self, doc: Document) -> Result:
        view = self.view(doc)
        if view is None:
            return doc
        rng = self.rng(doc)
        k0 = rng.randrange(1 << 16)
        return self.collect(doc, (self.edit(view.clone(), rng, k0 + k) for k in range(self.n * TRIES)))

    def collect(self, doc: Document, views: Sequence[View | None] | Any) -> Result:
        """The original plus the first ``n`` distinct copies among ``views``."""
        out, seen = [doc], {doc.text}
        for v in views:
            if len(out) > self.n:
                break
            if v is None:
                continue
            copy = v.render(doc, f"{doc.id}#aug{len(out)}", self.method)
            if not copy.text.strip():  # e.g. a translation model that gave nothing back
                self.stats.counters["empty_copies"] += 1
                continue
            if copy.text in seen:
                self.stats.counters["repeated_copies"] += 1
                continue
            seen.add(copy.text)
            out.append(copy)
        if len(out) == 1:
            self.stats.counters["no_copy"] += 1
            return doc
        if len(out) <= self.n:
            self.stats.counters["fewer_copies"] += 1
        return out
