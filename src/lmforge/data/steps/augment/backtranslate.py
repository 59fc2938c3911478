"""Back-translation (Sennrich et al., 2016; Xie et al., 2020): a paraphrase from a round trip through
another language, e.g. en -> de -> en with two lmforge translation models.

The step receives one ``translate(list[str]) -> list[str]`` callable per direction (data/ never loads
models; ``lmforge augment --forward DIR --backward DIR`` builds them from model directories). Lines are
translated one by one so a long document keeps its line structure and each input stays the length the
models were trained on. Greedy or beam decoding gives one paraphrase per document, so ``n`` is 1.
Documents with NER spans pass through without a copy (counted): a translation cannot carry the
offsets of its entities.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

from ....errors import ConfigError
from ...document import Document
from ..base import Result
from .base import Augmenter, Options
from .units import build_view

Translate = Callable[[list[str]], list[str]]


class BackTranslateOptions(Options):
    pass


class BackTranslate(Augmenter):
    method = "backtranslate"

    def __init__(self, forward: Translate, backward: Translate, n: int = 1, seed: int = 0, lang: str = "auto",
                 options: dict | None = None, batch_size: int = 32):
        super().__init__(n, seed, lang)
        if n != 1:
            raise ConfigError(f"back-translation makes one copy per document (got n={n})",
                              "use --n 1, or run it again on its output for a second round trip")
        BackTranslateOptions.parse(options, self.method)
        self.forward, self.backward, self.batch_size = forward, backward, batch_size

    def process(self, doc: Document) -> Result:
        return self.process_batch([doc])[0]

    def process_batch(self, docs: list[Document]) -> list[Result]:
        lines: list[str] = []
        todo = []  # (document, [index of each non-empty line in `lines` or None])
        for doc in docs:
            if "entities" in doc.meta or "tags" in doc.meta:
                self.stats.counters["skipped:has_entities"] += 1
                todo.append((doc, None))
                continue
            if isinstance(build_view(doc, self.lang), str):
                self.stats.counters["skipped:unreadable"] += 1
                todo.append((doc, None))
                continue
            idx = []
            for line in doc.text.split("\n"):
                if line.strip():
                    idx.append(len(lines))
                    lines.append(line.strip())
                else:
                    idx.append(None)
            todo.append((doc, idx))
        back = self._round_trip(lines) if lines else []
        out: list[Result] = []
        for doc, idx in todo:
            if idx is None:
                out.append(doc)
                continue
            text = "\n".join(back[i] if i is not None else "" for i in idx)
            view = _TextView(text) if text != doc.text else None  # an empty one is counted by collect
            out.append(self.collect(doc, [view]))
        return out

    def _round_trip(self, lines: list[str]) -> list[str]:
        pivot = self.forward(lines)
        if len(pivot) != len(lines):
            raise ValueError(f"forward translation returned {len(pivot)} texts for {len(lines)}")
        back = self.backward(list(pivot))
        if len(back) != len(lines):
            raise ValueError(f"backward translation returned {len(back)} texts for {len(lines)}")
        return [b.strip() for b in back]


class _TextView:
    """A whole new text for a copy (what ``collect`` renders): meta copied, provenance added."""

    def __init__(self, text: str):
        self.text = text

    def render(self, doc: Document, new_id: str, method: str) -> Document:
        meta = {k: copy.deepcopy(v) for k, v in doc.meta.items() if k != "tokens"}  # tokens of the old text
        meta["augmented_from"] = doc.meta.get("augmented_from", doc.id)
        meta["augment"] = method
        return Document(new_id, self.text, meta)
