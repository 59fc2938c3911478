"""Which script a text is in: the one place lmforge decides "is this Chinese (CJK) text?".

Data filters, dedup, segmentation, tokenizers, metrics and tasks all need to know whether to count
characters or space-separated words; one definition keeps them consistent. A text is CJK when at
least ``CJK_SHARE`` of its letters (among the first ``SAMPLE`` characters) are CJK ideographs,
kana or hangul: mixed Chinese/English text with some Latin product names still counts as Chinese.
"""

from __future__ import annotations

import re

# Han ideographs (ext. A, basic, compatibility), kana, hangul syllables
IDEOGRAPHS = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u3040-\u30ff\uac00-\ud7af"
# plus CJK punctuation and full-width forms: characters that take no spaces around them
CJK_CHARS = IDEOGRAPHS + "\u3000-\u303f\uff00-\uffef"
CJK_RE = re.compile(f"[{IDEOGRAPHS}]")
CJK_CHAR_RE = re.compile(f"^[{CJK_CHARS}]$")
LATIN_RE = re.compile(r"[A-Za-z\u00c0-\u024f]")
CJK_SHARE = 0.2
SAMPLE = 2000


def cjk_count(text: str) -> int:
    return len(CJK_RE.findall(text))


def is_cjk(text: str, min_share: float = CJK_SHARE, sample: int = SAMPLE) -> bool:
    """True when CJK characters make up at least ``min_share`` of the letters of ``text[:sample]``."""
    head = text[:sample]
    cjk = cjk_count(head)
    return cjk > 0 and cjk >= min_share * (cjk + len(LATIN_RE.findall(head)))


def is_cjk_char(ch: str) -> bool:
    """One character that is written without spaces around it (ideograph, kana, CJK punctuation)."""
    return bool(CJK_CHAR_RE.match(ch))
