"""Normalisation step: NFKC, control chars, whitespace, leftover markup; optional classic-NLP forms."""

from __future__ import annotations

from ...text import lemmatize, normalize, segment, stopwords
from ..config import NormalizeConfig
from ..document import Document
from .base import Step


class Normalize(Step):
    name = "normalize"

    def __init__(self, cfg: NormalizeConfig):
        super().__init__()
        self.cfg = cfg

    def process(self, doc: Document) -> Document | str:
        c = self.cfg
        text = normalize(doc.text, nfkc_form=c.nfkc, keep_cjk_punct=c.keep_cjk_punct, markup=c.strip_markup,
                         lowercase=c.lowercase, t2s=c.t2s)
        if c.remove_stopwords or c.lemmatize:
            lines = []
            for line in text.split("\n"):
                toks = segment(line)
                lang = "zh" if any("\u3400" <= ch <= "\u9fff" for ch in line) else "en"
                if c.remove_stopwords:
                    sw = stopwords(lang)
                    toks = [t for t in toks if t.lower() not in sw]
                if c.lemmatize and lang == "en":
                    toks = [lemmatize(t) for t in toks]
                lines.append(("" if lang == "zh" else " ").join(toks))
            text = "\n".join(lines).strip()
        if not text:
            return "empty"
        if text != doc.text:
            self.stats.counters["changed"] += 1
            doc.text = text
        return doc
