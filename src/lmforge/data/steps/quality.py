"""Quality filters: Gopher quality + repetition, C4 and FineWeb line rules, length, spam, mash, links.

Language-aware: Chinese (and other CJK) text is judged by characters, never by space-separated
words. Defaults are loosened from the web-tuned literature values where those would drop clean
prose of any genre — short review sentences, dialogue-heavy novel paragraphs, Chinese classics
(see docs/data.md for each deviation and why).
"""

from __future__ import annotations

import re
from collections import Counter

from ...text.stopwords import GOPHER
from ..config import QualityConfig
from ..document import Document
from .base import Step

_HAN = re.compile(r"[\u3400-\u9fff\uf900-\ufaff\u3040-\u30ff\uac00-\ud7af]")
_URL = re.compile(r"(?:https?://|www\.)\S+")
_BULLET = re.compile(r"^\s*(?:[•\-*·▪►◦‣–]|\d+[.)])\s")
_ELLIPSIS = ("...", "…")
_TERMINAL = (".", "!", "?", '"', "'", "。", "！", "？", "…", "”", "」", "』", "）", ")", "：", ":", ";", "；")
_ROWS = ("qwertyuiop", "asdfghjkl", "zxcvbnm")
_KEY_RUNS = {row[i:i + 5] for row in _ROWS for i in range(len(row) - 4)} | \
            {row[::-1][i:i + 5] for row in _ROWS for i in range(len(row) - 4)}
# keyboard mash: a word with no vowel, a run of 6 consonants ('lengths' has 5), or 5 neighbouring
# keys of one keyboard row
_MASH = re.compile(r"\b(?:[bcdfghjklmnpqrstvwxz]{4,}|[a-z]*(?:[bcdfghjklmnpqrstvwxz]{6}|"
                   + "|".join(sorted(_KEY_RUNS)) + r")[a-z]*)\b")
_LATIN4 = re.compile(r"\b[a-z]{4,}\b")
_ALNUM = re.compile(r"[^\W_]")
_SPACE = re.compile(r"\s+")
_LATIN_LETTER = re.compile(r"[A-Za-z]")
_C4_POLICY = ("terms of use", "privacy policy", "cookie policy", "uses cookies", "use of cookies",
              "use cookies", "accept cookies", "enable javascript", "javascript")
_SPAM = ("click here", "buy now", "order now", "act now", "free shipping", "limited time offer", "best price",
         "viagra", "casino", "earn money", "make money fast", "work from home", "100% free", "subscribe now",
         "sign up now", "you are a winner", "bitcoin", "lowest price", "call now", "special offer", "cheap pills",
         "免费领取", "点击进入", "加微信", "代开发票", "日赚", "月入过万")
# function characters of modern and classical Chinese: any real Chinese sentence has a few
_ZH_FUNCTION = set("的了是在不有和也之而其以于为这那我你他她它们曰乃者所矣焉乎哉兮亦皆又与及因此彼即则便就将把被都来去上下中无着过"
                   "一人说道得个")


def is_cjk_text(text: str) -> bool:
    han = len(_HAN.findall(text[:2000]))
    return han > 0 and han >= len(_LATIN_LETTER.findall(text[:2000])) / 4


def _dup(items: list[str]) -> tuple[int, int]:
    seen: set[str] = set()
    n = chars = 0
    for it in items:
        if it in seen:
            n += 1
            chars += len(it)
        else:
            seen.add(it)
    return n, chars


def _top_ngram_chars(units: list[str], n: int, sep: str) -> int:
    grams = Counter(sep.join(units[i:i + n]) for i in range(len(units) - n + 1))
    if not grams:
        return 0
    gram, count = grams.most_common(1)[0]
    return len(gram) * count if count > 1 else 0


def _dup_ngram_chars(units: list[str], n: int, sep: str) -> int:
    seen: set[str] = set()
    chars = i = 0
    while i < len(units) - n + 1:
        gram = sep.join(units[i:i + n])
        if gram in seen:
            chars += len(gram)
            i += n
        else:
            seen.add(gram)
            i += 1
    return chars


def repetition_reason(text: str, units: list[str], sep: str, cfg: QualityConfig, scale: int = 1) -> str | None:
    """Gopher repetition rules; returns the sub-rule that fired or None.

    ``scale`` multiplies n-gram sizes: for CJK the units are characters, and a Chinese word is about
    two characters, so a word 2-gram compares with a character 4-gram.
    """
    paras = [p for p in re.split(r"\n{2,}", text) if p.strip()]
    lines = [ln for ln in text.split("\n") if ln.strip()]
    total = max(1, len(text))
    if len(paras) > 1:
        n, chars = _dup(paras)
        if n / len(paras) > cfg.max_dup_para_frac:
            return "dup_para_frac"
        if chars / total > cfg.max_dup_para_char_frac:
            return "dup_para_chars"
    if len(lines) > 1:
        n, chars = _dup(lines)
        if n / len(lines) > cfg.max_dup_line_frac:
            return "dup_line_frac"
        if chars / total > cfg.max_dup_line_char_frac:
            return "dup_line_chars"
    if len(units) < cfg.repetition_min_units:
        return None
    unit_chars = max(1, sum(len(u) for u in units) + len(sep) * max(0, len(units) - 1))
    for n, frac in sorted(cfg.top_ngram.items()):
        if len(units) >= 2 * n * scale and _top_ngram_chars(units, n * scale, sep) / unit_chars > frac:
            return f"top_{n}gram"
    for n, frac in sorted(cfg.dup_ngram.items()):
        if len(units) >= 2 * n * scale and _dup_ngram_chars(units, n * scale, sep) / unit_chars > frac:
            return f"dup_{n}gram"
    return None


class Quality(Step):
    name = "quality"

    def __init__(self, cfg: QualityConfig):
        super().__init__()
        self.cfg = cfg

    def process(self, doc: Document) -> Document | str:
        c = self.cfg
        text = doc.text
        lang = doc.meta.get("lang")
        cjk = lang in ("zh", "ja", "ko") if lang not in (None, "und") else is_cjk_text(text)
        if c.c4:
            reason, text = self._c4(text)
            if reason:
                return reason
        nonspace = len(_SPACE.sub("", text))
        if not nonspace:
            return "empty"
        alnum = _ALNUM.findall(text)
        if nonspace >= 20 and len(alnum) / nonspace < c.min_alnum_ratio:
            return "quality:symbols"
        if "www." in text or "://" in text:
            if sum(len(m) for m in _URL.findall(text)) / nonspace > c.max_url_ratio:
                return "quality:links"
        if cjk:
            units = alnum
            sep = ""
            if len(_HAN.findall(text)) < c.min_cjk_chars:
                return "length"
            if len(units) >= 50 and sum(ch in _ZH_FUNCTION for ch in units) < c.min_stopwords:
                return "quality:gopher_stopwords"
        else:
            words = text.split()
            units, sep = words, " "
            if len(words) < c.min_words:
                return "length"
            reason = self._gopher(text, words)
            if reason:
                return reason
        if len(units) > c.max_words:
            return "length:long"
        if c.spam and self._spam(text, len(units)):
            return "quality:spam"
        if c.fineweb:
            reason = self._fineweb(text)
            if reason:
                return reason
        if c.repetition:
            rule = repetition_reason(text, units, sep, c, scale=2 if cjk else 1)
            if rule:
                self.stats.counters[f"repetition:{rule}"] += 1
                return "quality:gopher_repetition"
        if text != doc.text:
            doc.text = text
        return doc

    def _gopher(self, text: str, words: list[str]) -> str | None:
        c = self.cfg
        tokens = [w for w in words if any(ch.isalnum() for ch in w)]  # punctuation tokens aside
        n = len(tokens)
        if n < c.min_words:
            return "length"
        if n >= c.stats_min_words:
            mean = sum(len(w) for w in tokens) / n
            if not c.mean_word_len[0] <= mean <= c.mean_word_len[1]:
                return "quality:gopher_word_len"
            symbols = text.count("#") + text.count("...") + text.count("…")
            if symbols / n > c.max_symbol_ratio:
                return "quality:gopher_symbols"
            if sum(1 for w in tokens if any(ch.isalpha() for ch in w)) / n < c.min_alpha_words:
                return "quality:gopher_alpha"
        lines = [ln for ln in text.split("\n") if ln.strip()]
        if len(lines) >= 3:
            if sum(bool(_BULLET.match(ln)) for ln in lines) / len(lines) > c.max_bullet_lines:
                return "quality:gopher_bullets"
            if sum(ln.rstrip().endswith(_ELLIPSIS) for ln in lines) / len(lines) > c.max_ellipsis_lines:
                return "quality:gopher_ellipsis"
        if n >= c.stopwords_min_words and sum(w.lower().strip(".,;:!?\"'()") in GOPHER for w in tokens) < c.min_stopwords:
            return "quality:gopher_stopwords"
        low = text.lower()
        latin = len(_LATIN4.findall(low))
        if latin >= 4 and len(_MASH.findall(low)) / latin > c.max_mash_ratio:
            return "quality:mash"
        return None

    def _c4(self, text: str) -> tuple[str | None, str]:
        low = text.lower()
        if "lorem ipsum" in low:
            return "quality:c4_lorem_ipsum", text
        if not any(p in low for p in _C4_POLICY) and not self.cfg.c4_terminal_punct:
            return None, text
        kept = []
        for line in text.split("\n"):
            ll = line.lower()
            if any(p in ll for p in _C4_POLICY):
                self.stats.counters["c4:lines_removed"] += 1
                continue
            if self.cfg.c4_terminal_punct and line.strip() and not line.rstrip().endswith(_TERMINAL):
                self.stats.counters["c4:lines_removed"] += 1
                continue
            kept.append(line)
        out = "\n".join(kept).strip()
        return (None, out) if out else ("quality:c4_lines", text)

    def _fineweb(self, text: str) -> str | None:
        c = self.cfg
        lines = unwrap([ln.strip() for ln in text.split("\n") if ln.strip()])
        if len(lines) < c.fineweb_min_lines:
            return None
        punct = sum(ln.endswith(_TERMINAL) for ln in lines) / len(lines)
        if punct < c.fineweb_line_punct:
            return "quality:fineweb_punct"
        # short lines are a menu or a list only when they do not end like verse or sentences do
        soft = sum(ln.endswith(_TERMINAL + (",", "，", "、", "-", "—")) for ln in lines) / len(lines)
        if sum(len(ln) <= 30 for ln in lines) / len(lines) > c.fineweb_short_line and soft < 0.5:
            return "quality:fineweb_short_lines"
        _, dup_chars = _dup(lines)
        if dup_chars / max(1, len(text.replace("\n", ""))) > c.fineweb_char_dup:
            return "quality:fineweb_dup_lines"
        return None

    def _spam(self, text: str, n_units: int) -> bool:
        low = text.lower()
        hits = sum(low.count(p) for p in _SPAM)
        if hits >= 3 or (hits >= 2 and n_units < 150):
            return True
        words = [w for w in text.split() if w.isalpha() and len(w) > 1]
        return len(words) >= 10 and sum(w.isupper() for w in words) / len(words) > 0.8


def unwrap(lines: list[str]) -> list[str]:
    """Join hard-wrapped lines (Gutenberg, mail): a line near the wrap width that does not end a
    sentence continues on the next line. Line rules then judge sentences, not the wrap column."""
    if len(lines) < 2:
        return lines
    width = max(len(ln) for ln in lines)
    if width < 50:
        return lines
    out: list[str] = []
    cur = ""
    for ln in lines:
        cur = f"{cur} {ln}" if cur else ln
        if len(ln) < 0.75 * width or ln.endswith(_TERMINAL):
            out.append(cur)
            cur = ""
    if cur:
        out.append(cur)
    return out
