"""Quality filters: Gopher quality + repetition, C4 and FineWeb line rules, length, spam, mash, links.

Language-aware: Chinese (and other CJK) text is judged by characters, never by space-separated
words. Defaults are loosened from the web-tuned literature values where those would drop clean
prose of any genre — short review sentences, dialogue-heavy novel paragraphs, Chinese classics
(see docs/data.md for each deviation and why).
"""

from __future__ import annotations

import re

import numpy as np

from ...text.scripts import CJK_RE as _HAN
from ...text.scripts import is_cjk
from ...text.stopwords import GOPHER
from ..config import QualityConfig
from ..document import Document
from .base import Step

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
_SYMBOL = re.compile(r"[^\w\s]|_")
_ALNUM_RUN = re.compile(r"[^\W_]+")
_CAPS_WORD = re.compile(r"\b[A-Z]{2,}\b")
_GOPHER_RE = re.compile(r"\b(?:" + "|".join(sorted(GOPHER)) + r")\b", re.IGNORECASE)
_WORDLIKE = re.compile(r"\S*[^\W_]\S*")
_ALPHA_WORD = re.compile(r"\S*[^\W\d_]\S*")
_SPACE = re.compile(r"\s+")
_C4_POLICY = ("terms of use", "privacy policy", "cookie policy", "uses cookies", "use of cookies",
              "use cookies", "accept cookies", "enable javascript", "javascript")
_SPAM = ("click here", "buy now", "order now", "act now", "free shipping", "limited time offer", "best price",
         "viagra", "casino", "earn money", "make money fast", "work from home", "100% free", "subscribe now",
         "sign up now", "you are a winner", "bitcoin", "lowest price", "call now", "special offer", "cheap pills",
         "免费领取", "点击进入", "加微信", "代开发票", "日赚", "月入过万")
# function characters of modern and classical Chinese: any real Chinese sentence has a few
_ZH_FUNCTION = set("的了是在不有和也之而其以于为这那我你他她它们曰乃者所矣焉乎哉兮亦皆又与及因此彼即则便就将把被都来去上下中无着过"
                   "一人说道得个")


_ZH_FUNCTION_RE = re.compile("[" + "".join(sorted(_ZH_FUNCTION)) + "]")


def _count_upto(rx: re.Pattern, text: str, k: int) -> int:
    """Matches of ``rx`` in ``text``, counting no further than ``k``."""
    n = 0
    for _ in rx.finditer(text):
        n += 1
        if n >= k:
            break
    return n


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


_MULT = np.uint64(0x9E3779B97F4A7C15)


def unit_arrays(units: list[str] | str) -> tuple[np.ndarray, np.ndarray]:
    """(hashes, lengths) of the units: a list of words, or a string whose characters are the units.

    Python's ``hash`` is fine here: only equality inside one document matters.
    """
    if isinstance(units, str):
        h = np.frombuffer(units.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64) * _MULT
        return h, np.ones(len(h), dtype=np.int64)
    h = np.array([hash(u) for u in units], dtype=np.int64).view(np.uint64)
    return h, np.fromiter(map(len, units), dtype=np.int64, count=len(units))


def _max_count(g: np.ndarray) -> int:
    """Occurrences of the most frequent value (a sort and a compare; cheaper than np.unique)."""
    srt = np.sort(g)
    eq = srt[1:] == srt[:-1]
    if not eq.any():
        return 1
    edges = np.flatnonzero(np.diff(np.concatenate(([0], eq.view(np.int8), [0]))))
    return int((edges[1::2] - edges[0::2]).max()) + 1


def ngram_repetition(units: list[str] | str, sizes: list[int], top_limits: dict[int, float] | None = None
                     ) -> dict[int, tuple[float, float]]:
    """For each n: (chars of the most frequent repeated n-gram x its count, chars covered by
    n-grams that occurred earlier), both as fractions of the characters in ``units``.

    Vectorised with numpy: unit hashes are combined into rolling n-gram hashes, so a 10k-word
    document costs a few array operations per n. Where an upper bound already proves the top
    n-gram fraction is within ``top_limits[n]``, the bound is returned instead of the exact value.
    """
    h, lens = unit_arrays(units)
    m_units = len(h)
    cum = np.concatenate([[0], np.cumsum(lens)])
    total = max(1, int(cum[-1]))
    out: dict[int, tuple[float, float]] = {}
    g = h.copy()
    with np.errstate(over="ignore"):
        for n in range(2, max(sizes) + 1):
            g = g[:-1] * _MULT + h[n - 1:]
            if n not in sizes or len(g) == 0:
                continue
            m = len(g)
            gram_chars = cum[n:n + m] - cum[:m]
            cmax = _max_count(g)
            if cmax < 2:  # no n-gram occurs twice: nothing repeated at all
                out[n] = (0.0, 0.0)
                continue
            bound = cmax * int(gram_chars.max()) / total
            need_dup = top_limits is None or n not in top_limits
            if not need_dup and bound <= top_limits[n]:
                out[n] = (bound, 0.0)
                continue
            _, first, inverse, counts = np.unique(g, return_index=True, return_inverse=True, return_counts=True)
            best = np.flatnonzero(counts == counts.max())
            k = int(best[np.argmin(first[best])])  # ties: the earliest n-gram, whatever the hashes
            top = int(counts[k] * gram_chars[first[k]])
            starts = np.flatnonzero(first[inverse.reshape(-1)] != np.arange(m))
            d = np.zeros(m_units + 1, dtype=np.int64)
            np.add.at(d, starts, 1)
            np.add.at(d, starts + n, -1)
            dup = int(lens[np.cumsum(d)[:m_units] > 0].sum())
            out[n] = (top / total, dup / total)
    return out


def repetition_reason(text: str, units: list[str] | str, cfg: QualityConfig, scale: int = 1) -> str | None:
    """Gopher repetition rules; returns the sub-rule that fired or None.

    ``scale`` multiplies n-gram sizes: for CJK the units are characters, and a Chinese word is about
    two characters, so a word 2-gram compares with a character 4-gram.
    """
    multiline = "\n" in text
    paras = [p for p in re.split(r"\n{2,}", text) if p.strip()] if multiline else [text]
    lines = [ln for ln in text.split("\n") if ln.strip()] if multiline else [text]
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
    top = [n for n in sorted(cfg.top_ngram) if len(units) >= 2 * n * scale]
    dup = [n for n in sorted(cfg.dup_ngram) if len(units) >= 2 * n * scale]
    rep = ngram_repetition(units, [n * scale for n in top] + [n * scale for n in dup[:1]],
                           top_limits={n * scale: cfg.top_ngram[n] for n in top})
    for n in top:
        if rep[n * scale][0] > cfg.top_ngram[n]:
            return f"top_{n}gram"
    if not dup:
        return None
    # a repeated (n+1)-gram contains repeated n-grams, so coverage only shrinks as n grows: when the
    # smallest n is under every threshold, the larger ones need not be computed
    first = rep[dup[0] * scale][1]
    if first > cfg.dup_ngram[dup[0]]:
        return f"dup_{dup[0]}gram"
    if first <= min(cfg.dup_ngram[n] for n in dup):
        return None
    rep = ngram_repetition(units, [n * scale for n in dup[1:]])
    for n in dup[1:]:
        if rep[n * scale][1] > cfg.dup_ngram[n]:
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
        cjk = lang in ("zh", "ja", "ko") if lang not in (None, "und") else is_cjk(text)
        if c.c4:
            reason, text = self._c4(text)
            if reason:
                return reason
        nonspace = len(_SPACE.sub("", text))
        if not nonspace:
            return "empty"
        symbols = len(_SYMBOL.findall(text))
        if nonspace >= 20 and (nonspace - symbols) / nonspace < c.min_alnum_ratio:
            return "quality:symbols"
        if "www." in text or "://" in text:
            if sum(len(m) for m in _URL.findall(text)) / nonspace > c.max_url_ratio:
                return "quality:links"
        units: list[str] | str
        if cjk:
            units = "".join(_ALNUM_RUN.findall(text))  # characters are the units
            if _count_upto(_HAN, text, c.min_cjk_chars) < c.min_cjk_chars:
                return "length"
            if len(units) >= 50 and _count_upto(_ZH_FUNCTION_RE, units, c.min_stopwords) < c.min_stopwords:
                return "quality:gopher_stopwords"
        else:
            units = _WORDLIKE.findall(text)  # punctuation tokens are not words
            reason = self._gopher(text, units)
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
            rule = repetition_reason(text, units, c, scale=2 if cjk else 1)
            if rule:
                self.stats.counters[f"repetition:{rule}"] += 1
                return "quality:gopher_repetition"
        if text != doc.text:
            doc.text = text
        return doc

    def _gopher(self, text: str, tokens: list[str]) -> str | None:
        c = self.cfg
        n = len(tokens)
        if n < c.min_words:
            return "length"
        if n >= c.stats_min_words:
            mean = len("".join(tokens)) / n
            if not c.mean_word_len[0] <= mean <= c.mean_word_len[1]:
                return "quality:gopher_word_len"
            symbols = text.count("#") + text.count("...") + text.count("…")
            if symbols / n > c.max_symbol_ratio:
                return "quality:gopher_symbols"
            if len(_ALPHA_WORD.findall(text)) / n < c.min_alpha_words:
                return "quality:gopher_alpha"
        lines = [ln for ln in text.split("\n") if ln.strip()]
        if len(lines) >= 3:
            if sum(bool(_BULLET.match(ln)) for ln in lines) / len(lines) > c.max_bullet_lines:
                return "quality:gopher_bullets"
            if sum(ln.rstrip().endswith(_ELLIPSIS) for ln in lines) / len(lines) > c.max_ellipsis_lines:
                return "quality:gopher_ellipsis"
        if n >= c.stopwords_min_words and _count_upto(_GOPHER_RE, text, c.min_stopwords) < c.min_stopwords:
            return "quality:gopher_stopwords"
        low = text[:5000].lower()  # a sample is enough for a ratio
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
        if text.count("\n") < c.fineweb_min_lines - 1:
            return None
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
        if not _CAPS_WORD.search(text):
            return False
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
