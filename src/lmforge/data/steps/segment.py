"""Word segmentation step for classic models: jieba for Chinese, English rules otherwise."""

from __future__ import annotations

from ...text import segment
from ..config import SegmentConfig
from ..document import Document
from .base import Step


class Segment(Step):
    name = "segment"

    def __init__(self, cfg: SegmentConfig):
        super().__init__()
        self.cfg = cfg

    def process(self, doc: Document) -> Document | str:
        lang = doc.meta.get("lang")
        lang = "zh" if lang in ("zh", "ja") else ("en" if lang else None)
        toks = segment(doc.text, lang, remove_stopwords=self.cfg.stopwords)
        if self.cfg.replace_text:
            doc.text = " ".join(toks)
        else:
            doc.meta["tokens"] = toks
        self.stats.counters["tokens"] += len(toks)
        return doc
