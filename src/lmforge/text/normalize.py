"""Text normalisation shared by the data pipeline and the classic models.

NFKC folds compatibility forms (full-width Latin, ligatures) but would also turn Chinese full-width
punctuation ('，', '：') into ASCII; ``keep_cjk_punct`` keeps those as they are.
"""

from __future__ import annotations

import html
import re
import unicodedata
from functools import lru_cache

CJK_PUNCT = "，。！？：；（）【】《》「」『』、～“”‘’…—·"
_CJK_PUNCT_RE = re.compile(f"([{re.escape(CJK_PUNCT)}])")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200b-\u200d\u2060\ufeff\ufffe]")
_HSPACE = re.compile(r"[^\S\n]+")
_BLANKS = re.compile(r"\n{3,}")
_TAG = re.compile(r"</?[a-zA-Z][a-zA-Z0-9]*(?:\s[^<>]{0,500})?/?>|<!--.*?-->", re.S)
_ENTITY = re.compile(r"&(?:#\d{1,7}|#x[0-9a-fA-F]{1,6}|[a-zA-Z]{2,10});")
_HAN = re.compile(r"[\u3400-\u9fff]")


def nfkc(text: str, keep_cjk_punct: bool = True) -> str:
    if unicodedata.is_normalized("NFKC", text):
        return text
    if not keep_cjk_punct or not _HAN.search(text):
        return unicodedata.normalize("NFKC", text)
    parts = _CJK_PUNCT_RE.split(text)  # odd indices are the protected punctuation
    return "".join(p if i % 2 else unicodedata.normalize("NFKC", p) for i, p in enumerate(parts))


def strip_markup(text: str) -> str:
    """Leftover HTML tags and entities (after extraction, or in scraped jsonl)."""
    if "<" in text:
        text = _TAG.sub(" ", text)
    if "&" in text:
        text = _ENTITY.sub(lambda m: html.unescape(m.group(0)), text)
    return text


_NEEDS_CLEAN = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200d\u2060\ufeff\ufffe\t\u00a0\u2000-\u200a\u3000]"
                          r"|  | \n|\n |\n\n\n")


def clean_whitespace(text: str) -> str:
    """Control chars removed, runs of spaces/tabs to one space, lines stripped, ≤1 blank line."""
    if not _NEEDS_CLEAN.search(text) and text == text.strip():
        return text  # already clean: one scan instead of five passes
    text = _CONTROL.sub("", text)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _HSPACE.sub(" ", text)
    text = "\n".join(line.strip() for line in text.split("\n"))
    return _BLANKS.sub("\n\n", text).strip()


@lru_cache(maxsize=1)
def _opencc():
    try:
        import opencc  # both the C++ binding and the pure-Python reimplementation use this name
    except ImportError as e:  # pragma: no cover - a declared dependency
        raise RuntimeError("OpenCC is not installed: pip install opencc-python-reimplemented") from e
    try:
        return opencc.OpenCC("t2s")
    except Exception:  # the C++ binding wants the config file name
        return opencc.OpenCC("t2s.json")


def to_simplified(text: str) -> str:
    """Traditional -> simplified Chinese (OpenCC t2s); text without Han characters is untouched."""
    if not _HAN.search(text):
        return text
    return _opencc().convert(text)


def normalize(text: str, *, nfkc_form: bool = True, keep_cjk_punct: bool = True, markup: bool = True,
              lowercase: bool = False, t2s: bool = False) -> str:
    if markup:
        text = strip_markup(text)
    if nfkc_form:
        text = nfkc(text, keep_cjk_punct)
    if t2s:
        text = to_simplified(text)
    if lowercase:
        text = text.lower()
    return clean_whitespace(text)
