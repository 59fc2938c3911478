"""Character-level noise: the typos people make, so a model learns to read past them.

English (Latin-script words): a QWERTY neighbour instead of a letter, a dropped letter, a doubled
letter, two letters transposed. Chinese: a character replaced by a common character with the same
pinyin (what a pinyin input method offers next), tones ignored unless ``tone=true``. The candidate
characters are the ``pool`` most frequent in jieba's dictionary (rare characters are not typos);
pinyin comes from ``pypinyin``. Only words outside entities change, so NER spans keep their text.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from ....errors import InputError
from ....text.scripts import CJK_RE
from .base import Augmenter, Options
from .units import View

_ROWS = ("qwertyuiop", "asdfghjkl", "zxcvbnm")


def _keyboard() -> dict[str, str]:
    """Each letter's neighbours on a QWERTY keyboard (same row, and the touching keys above/below)."""
    pos = {c: (r, i) for r, row in enumerate(_ROWS) for i, c in enumerate(row)}
    out = {}
    for c, (r, i) in pos.items():
        near = []
        for d, row in ((-1, r - 1), (0, r), (1, r + 1)):
            if not 0 <= row < len(_ROWS):
                continue
            # rows are staggered: a key touches i-1, i (row above: i, i+1; row below: i-1, i)
            cols = (i - 1, i + 1) if d == 0 else (i, i + 1) if d < 0 else (i - 1, i)
            near += [_ROWS[row][j] for j in cols if 0 <= j < len(_ROWS[row])]
        out[c] = "".join(near)
    return out


KEYBOARD = _keyboard()


@dataclass
class NoiseOptions(Options):
    p: float = 0.1  # share of words (English) or characters (Chinese) that get a typo (at least one)
    keyboard: float = 0.4  # relative weights of the English typo kinds
    drop: float = 0.2
    repeat: float = 0.2
    transpose: float = 0.2
    tone: bool = False  # Chinese: only characters with the same tone too
    pool: int = 3500  # Chinese: the most frequent characters that may replace one


@lru_cache(maxsize=4)
def homophones(pool: int = 3500, tone: bool = False) -> dict[str, list[str]]:
    """pinyin -> the ``pool`` commonest characters with that pinyin, most frequent first."""
    try:
        from pypinyin import Style, lazy_pinyin
    except ImportError:
        raise InputError("Chinese character noise needs pypinyin", "pip install 'pypinyin>=0.50'") from None
    import jieba

    freq: Counter = Counter()
    with open(Path(jieba.__file__).parent / "dict.txt", encoding="utf-8") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 2 and parts[1].isdigit():
                for ch in parts[0]:
                    if CJK_RE.match(ch):
                        freq[ch] += int(parts[1])
    style = Style.TONE3 if tone else Style.NORMAL
    groups: dict[str, list[str]] = {}
    for ch, _ in freq.most_common(pool):
        groups.setdefault(lazy_pinyin(ch, style=style)[0], []).append(ch)
    return groups


def pinyin_of(ch: str, tone: bool = False) -> str:
    from pypinyin import Style, lazy_pinyin

    return lazy_pinyin(ch, style=Style.TONE3 if tone else Style.NORMAL)[0]


def typo(word: str, rng: random.Random, weights: dict[str, float]) -> str:
    """``word`` with one typo at a random letter; unchanged if it has no letter to change."""
    letters = [i for i, c in enumerate(word) if c.lower() in KEYBOARD]
    if not letters:
        return word
    kinds = [k for k, w in weights.items() if w > 0]
    kind = rng.choices(kinds, [weights[k] for k in kinds])[0]
    i = rng.choice(letters)
    c = word[i]
    if kind == "drop" and len(word) > 2:
        return word[:i] + word[i + 1:]
    if kind == "repeat":
        return word[:i] + c + word[i:]
    if kind == "transpose" and i + 1 < len(word) and word[i + 1] != c and word[i + 1].isalpha():
        return word[:i] + word[i + 1] + c + word[i + 2:]
    new = rng.choice(KEYBOARD[c.lower()])
    return word[:i] + (new.upper() if c.isupper() else new) + word[i + 1:]


class CharNoise(Augmenter):
    method = "noise"

    def __init__(self, n: int = 1, seed: int = 0, lang: str = "auto", options: dict | None = None):
        super().__init__(n, seed, lang)
        self.opts = NoiseOptions.parse(options, self.method)
        o = self.opts
        self.weights = {"keyboard": o.keyboard, "drop": o.drop, "repeat": o.repeat, "transpose": o.transpose}
        if not any(w > 0 for w in self.weights.values()):
            from ....errors import ConfigError

            raise ConfigError("every typo kind has weight 0", "set keyboard, drop, repeat or transpose above 0")

    def edit(self, view: View, rng: random.Random, k: int) -> View | None:
        if view.lang == "zh":
            return self._pinyin(view, rng)
        words = [i for i in view.words() if sum(c.lower() in KEYBOARD for c in view.units[i].text) >= 2]
        if not words:
            return None
        m = max(1, round(self.opts.p * len(view.words())))
        for i in rng.sample(words, min(m, len(words))):
            view.replace_word(i, typo(view.units[i].text, rng, self.weights))
        return view

    def _pinyin(self, view: View, rng: random.Random) -> View | None:
        groups = homophones(self.opts.pool, self.opts.tone)
        spots = []  # (unit, char index, candidates)
        for i in view.words():
            for j, ch in enumerate(view.units[i].text):
                if CJK_RE.match(ch):
                    cands = [c for c in groups.get(pinyin_of(ch, self.opts.tone), ()) if c != ch]
                    if cands:
                        spots.append((i, j, cands))
        if not spots:
            return None
        n_chars = sum(len(view.units[i].text) for i in view.words())
        m = max(1, round(self.opts.p * n_chars))
        for i, j, cands in rng.sample(spots, min(m, len(spots))):
            t = view.units[i].text
            view.replace_word(i, t[:j] + rng.choice(cands[:20]) + t[j + 1:])
        self.stats.counters["chars_replaced"] += min(m, len(spots))
        return view
