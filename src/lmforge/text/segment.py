"""Word segmentation for classic models: jieba for Chinese, rules for English.

The English rules follow the Penn Treebank conventions SST-2 and CoNLL use ("it's" -> "it 's",
"don't" -> "do n't"), so text segmented here matches those datasets.
"""

from __future__ import annotations

import re
from functools import lru_cache

from .scripts import is_cjk  # noqa: F401  (re-exported)
from .stopwords import stopwords

_EN_TOKEN = re.compile(
    r"""https?://\S+|[\w.+-]+@[\w-]+\.[\w.-]+"""  # urls, e-mails whole
    r"""|\d+(?:[.,]\d+)*"""  # numbers with separators
    r"""|[^\W\d_]+(?:[-'][^\W\d_]+)*"""  # words, hyphenated words
    r"""|\.\.\.|--|[^\w\s]""",  # punctuation, one symbol at a time
    re.UNICODE,
)
_CLITIC = re.compile(r"(?i)^(.+?)(n't|'s|'re|'ve|'ll|'d|'m)$")


def tokenize_en(text: str) -> list[str]:
    out: list[str] = []
    for tok in _EN_TOKEN.findall(text):
        m = _CLITIC.match(tok) if "'" in tok else None
        if m and m.group(1).lower() not in {"", "o", "y"}:
            out.extend([m.group(1), m.group(2)])
        else:
            out.append(tok)
    return out


@lru_cache(maxsize=1)
def _jieba():
    import logging

    import jieba

    jieba.setLogLevel(logging.WARNING)
    jieba.initialize()
    return jieba


def tokenize_zh(text: str) -> list[str]:
    return [t for t in _jieba().lcut(text) if t.strip()]


def segment(text: str, lang: str | None = None, remove_stopwords: bool = False) -> list[str]:
    """Words of ``text``; ``lang`` 'zh' uses jieba, anything else the English rules (auto if None)."""
    if lang is None:
        lang = "zh" if is_cjk(text) else "en"
    toks = tokenize_zh(text) if lang == "zh" else tokenize_en(text)
    if remove_stopwords:
        sw = stopwords(lang)
        toks = [t for t in toks if t.lower() not in sw]
    return toks


_SPAN_EN = re.compile(r"[^\W_]+(?:['’\-][^\W_]+)*|\S")


def token_spans(text: str, lang: str) -> list[tuple[int, int]]:
    """Character spans of the tokens of ``text`` (whitespace between them is not a token): jieba's
    words for 'zh', else letter/digit runs (with inner apostrophes and hyphens) and single symbols.
    Every non-space character is in exactly one span, so editing tokens keeps the rest of the text."""
    if lang == "zh":
        return [(a, b) for _, a, b in _jieba().tokenize(text) if text[a:b].strip()]
    return [m.span() for m in _SPAN_EN.finditer(text)]
