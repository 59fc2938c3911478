"""Language identification, offline: Unicode script first, then lingua for Latin-script text.

Han text is Chinese (Japanese if it has kana), Hangul is Korean, and so on — exact and free. For
Latin script a cheap English function-word check settles most English text; the rest goes to
lingua (its n-gram models ship inside the pip package, nothing is downloaded). Texts with fewer
than ``min_chars`` letters are 'und': no model identifies two words reliably.
"""

from __future__ import annotations

import re
from functools import lru_cache

from ...text.stopwords import EN
from ..config import LangIdConfig
from ..document import Document
from .base import Step

_SCRIPTS = [
    ("zh", re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")),
    ("ja", re.compile(r"[\u3040-\u30ff]")),
    ("ko", re.compile(r"[\uac00-\ud7af\u1100-\u11ff]")),
    ("cyrl", re.compile(r"[\u0400-\u04ff]")),
    ("ar", re.compile(r"[\u0600-\u06ff]")),
    ("el", re.compile(r"[\u0370-\u03ff]")),
    ("he", re.compile(r"[\u0590-\u05ff]")),
    ("hi", re.compile(r"[\u0900-\u097f]")),
    ("th", re.compile(r"[\u0e00-\u0e7f]")),
]
_LATIN = re.compile(r"[A-Za-z\u00c0-\u024f]")
_WORD = re.compile(r"[a-z']+")
# English function words that are not also common words of other Latin-script languages
EN_MARKERS = EN - frozenset("a am an in is was so also will me over under on die once nor".split())
NOT_EN = frozenset("der die das und ist nicht ein eine le la les et est une des el los las y es por para il "
                   "che di och att het een van de en".split())


@lru_cache(maxsize=8)
def _lingua(candidates: tuple[str, ...], low_accuracy: bool = False):
    from lingua import IsoCode639_1, Language, LanguageDetectorBuilder

    langs = []
    for c in candidates:
        code = getattr(IsoCode639_1, c.upper(), None)
        if code is not None:
            langs.append(Language.from_iso_code_639_1(code))
    if len(langs) < 2:
        langs = [Language.ENGLISH, Language.GERMAN]
    builder = LanguageDetectorBuilder.from_languages(*langs)
    # low-accuracy mode uses trigrams only: loads in 0.1 s and is accurate on long text
    return (builder.with_low_accuracy_mode() if low_accuracy else builder).build()


def detect(text: str, candidates: tuple[str, ...] = ("en", "de", "fr", "es"), min_chars: int = 20
           ) -> tuple[str, float]:
    """(ISO 639-1 code or 'und', confidence in [0, 1])."""
    sample = text[:1000]
    latin = len(_LATIN.findall(sample))
    if sample.isascii():  # the common case: no other script to count
        script, n, counts = "latin", 0, {}
    else:
        han = len(_SCRIPTS[0][1].findall(sample))
        if han > 2 * latin:  # Chinese (or Japanese): only kana can change the answer
            counts = {"zh": han, "ja": len(_SCRIPTS[1][1].findall(sample))}
        else:
            counts = {name: len(rx.findall(sample)) for name, rx in _SCRIPTS}
        script, n = max(counts.items(), key=lambda kv: kv[1])
    if n > latin:
        if script == "zh" and counts["ja"] > 0.1 * n:
            script = "ja"
        if script == "cyrl":
            return _lingua_detect(sample, ("ru", "uk", "bg", "sr", "be", "mk")) if n >= min_chars else ("und", 0.0)
        return script, round(n / max(1, n + latin), 3)
    if latin < min_chars:
        return "und", 0.0
    words = _WORD.findall(sample.lower())
    if words:
        hits = sum(w in EN_MARKERS for w in words)
        other = sum(w in NOT_EN for w in words)
        if hits >= 2 and hits / len(words) >= 0.15 and other < hits / 4:
            return "en", round(min(1.0, 0.5 + hits / len(words)), 3)
    return _lingua_detect(sample, candidates, low_accuracy=latin >= 120)


def _lingua_detect(sample: str, candidates: tuple[str, ...], low_accuracy: bool = False) -> tuple[str, float]:
    vals = _lingua(candidates, low_accuracy).compute_language_confidence_values(sample)
    if not vals:
        return "und", 0.0
    top = vals[0]
    return top.language.iso_code_639_1.name.lower(), round(top.value, 3)


class LangId(Step):
    """Tags ``meta['lang']``; with ``languages`` set, keeps those and drops the rest as ``lang:<code>``."""

    name = "langid"

    def __init__(self, cfg: LangIdConfig, languages: list[str] | None):
        super().__init__()
        self.cfg = cfg
        self.keep = {lang.lower() for lang in languages} if languages else None
        self.candidates = tuple(dict.fromkeys([*(languages or []), *cfg.candidates]))

    def process(self, doc: Document) -> Document | str:
        lang, conf = detect(doc.text, self.candidates, self.cfg.min_chars)
        doc.meta["lang"] = lang
        doc.meta["lang_score"] = conf
        self.stats.counters[f"lang:{lang}"] += 1
        if self.keep is None or lang in self.keep:
            return doc
        if lang == "und" and self.cfg.keep_undetermined and self.keep - {"zh", "ja", "ko"}:
            return doc  # short Latin-script text, kept when a Latin-script language is wanted
        return f"lang:{lang}"
