"""Extractive-QA scores: SQuAD's exact match and token F1, and CMRC 2018's rules for Chinese.

English (SQuAD v1.1 official script): lowercase, drop ASCII punctuation, drop the articles a/an/the,
squeeze spaces; F1 is bag-of-tokens overlap; each question takes its best gold answer.

Chinese (CMRC 2018 official script): lowercase, drop punctuation (Chinese and ASCII), every CJK
character is one segment and other words stay whole; F1 is the longest *contiguous* common run of
segments (the script's ``find_lcs``) over the prediction's and the gold's segment counts. Two
deliberate differences from that script, both documented in the tests: all Unicode punctuation and
symbols are dropped (the script's list misses ASCII ``, . ! ? ( )``), and exact match compares
segments, so spaces between Chinese characters do not matter.

Unanswerable questions (SQuAD v2 rule): gold ``[]`` and an empty prediction score EM = F1 = 1; any
non-empty prediction scores 0. With ``lang=None`` the Chinese rules apply when CJK characters are at
least half of the gold answers' word-like units.
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections import Counter
from typing import Sequence

import numpy as np

from .textmetrics import cjk_share, word_units

_PUNCT = set(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(s: str) -> str:
    """SQuAD v1.1 ``normalize_answer``: lower, remove punctuation, articles and extra whitespace."""
    s = "".join(ch for ch in s.lower() if ch not in _PUNCT)
    return " ".join(_ARTICLES.sub(" ", s).split())


def _is_punct(ch: str) -> bool:
    return unicodedata.category(ch)[0] in "PS"


def zh_segments(s: str) -> list[str]:
    """CMRC 2018 ``mixed_segmentation`` (punctuation removed): CJK characters one by one, words whole."""
    s = "".join(" " if _is_punct(ch) else ch for ch in s.lower().strip())
    return word_units(s)


def _is_zh(lang: str | None, texts: Sequence[str]) -> bool:
    if lang is not None:
        return lang in ("zh", "ja", "ko", "cjk")
    return cjk_share(texts) >= 0.5


def _longest_common_run(a: list[str], b: list[str]) -> int:
    """Length of the longest common contiguous run of segments (CMRC's ``find_lcs``)."""
    best, prev = 0, [0] * (len(b) + 1)
    for x in a:
        cur = [0] * (len(b) + 1)
        for j, y in enumerate(b, 1):
            if x == y:
                cur[j] = prev[j - 1] + 1
                best = max(best, cur[j])
        prev = cur
    return best


def _f1_tokens(pred: list[str], gold: list[str], contiguous: bool) -> float:
    if not pred or not gold:
        return float(pred == gold)  # SQuAD v2: both empty is a match, one empty is not
    same = _longest_common_run(pred, gold) if contiguous else sum((Counter(pred) & Counter(gold)).values())
    if same == 0:
        return 0.0
    p, r = same / len(pred), same / len(gold)
    return 2 * p * r / (p + r)


def _golds(golds: str | Sequence[str]) -> list[str]:
    golds = [golds] if isinstance(golds, str) else list(golds)
    return golds or [""]  # unanswerable: the only right answer is no answer


def _em_f1(pred: str, golds: list[str], zh: bool) -> tuple[float, float]:
    if zh:
        ps = zh_segments(pred)
        gs = [zh_segments(g) for g in golds]
        return float(any(ps == g for g in gs)), max(_f1_tokens(ps, g, contiguous=True) for g in gs)
    pn = normalize_answer(pred)
    gn = [normalize_answer(g) for g in golds]
    return float(pn in gn), max(_f1_tokens(pn.split(), g.split(), contiguous=False) for g in gn)


def exact_match(pred: str, golds: str | Sequence[str], lang: str | None = None) -> float:
    """1.0 if the normalised prediction equals a normalised gold answer, else 0.0."""
    golds = _golds(golds)
    return _em_f1(pred, golds, _is_zh(lang, golds if any(golds) else [pred]))[0]


def f1(pred: str, golds: str | Sequence[str], lang: str | None = None) -> float:
    """Best F1 (0-1) of the prediction against any gold answer."""
    golds = _golds(golds)
    return _em_f1(pred, golds, _is_zh(lang, golds if any(golds) else [pred]))[1]


def squad_per_example(preds: dict[str, str], golds: dict[str, Sequence[str]], lang: str | None = None) -> dict:
    """Per-question EM and F1 (0/1 and 0-1 arrays, in ``ids`` order) for bootstrap intervals.

    Every gold question is scored; a missing prediction counts as "no answer" (right only for an
    unanswerable question). The language is decided once for the whole set, so an English name in a
    Chinese dataset is scored by the Chinese rules like the rest.
    """
    ids = list(golds)
    zh = _is_zh(lang, [g for i in ids for g in _golds(golds[i])])
    em, f = np.zeros(len(ids)), np.zeros(len(ids))
    for k, qid in enumerate(ids):
        em[k], f[k] = _em_f1(preds.get(qid, ""), _golds(golds[qid]), zh)
    has_ans = np.array([any(_golds(golds[i])) for i in ids], dtype=bool)
    return {"ids": ids, "exact_match": em, "f1": f, "has_answer": has_ans, "lang": "zh" if zh else "en",
            "missing": sum(1 for i in ids if i not in preds)}


def squad_metrics(preds: dict[str, str], golds: dict[str, Sequence[str]], lang: str | None = None) -> dict:
    """Corpus EM and F1 in 0-100 (means over gold questions), with has-answer/no-answer splits."""
    per = squad_per_example(preds, golds, lang)
    em, f, has = per["exact_match"], per["f1"], per["has_answer"]
    n = len(em)
    out = {"exact_match": float(em.mean() * 100) if n else 0.0, "f1": float(f.mean() * 100) if n else 0.0,
           "n": n, "missing": per["missing"], "lang": per["lang"]}
    if n and not has.all():
        for name, mask in (("has_ans", has), ("no_ans", ~has)):
            out[f"{name}_n"] = int(mask.sum())
            if mask.any():
                out[f"{name}_exact_match"] = float(em[mask].mean() * 100)
                out[f"{name}_f1"] = float(f[mask].mean() * 100)
    return out
