"""EDA (Wei & Zou, 2019): synonym replacement, random insertion, random swap, random deletion.

Rates follow the paper: with ``n`` words, SR replaces ``max(1, alpha_sr·n)`` words by a synonym, RI
inserts ``max(1, alpha_ri·n)`` synonyms of words of the sentence at random places, RS swaps
``max(1, alpha_rs·n)`` pairs of words, RD deletes each word with probability ``p_rd`` (at least one,
never all). ``eda`` cycles through the four (one operation per copy, starting at a random one).
English synonyms come from WordNet, Chinese ones from Cilin over jieba words (or any ``Lexicon``,
e.g. word-vector neighbours). Stop words are not replaced and one-character Chinese words get no
synonyms (too ambiguous). Entities are never touched; punctuation stays in place.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from ....text.stopwords import stopwords
from .base import Augmenter, Options
from .lexicons import Lexicon, lexicon_for
from .units import View

OPERATIONS = ("synonym", "insert", "swap", "delete")


@dataclass
class EDAOptions(Options):
    alpha_sr: float = 0.1  # share of words replaced by a synonym
    alpha_ri: float = 0.1  # share of words' worth of synonyms inserted
    alpha_rs: float = 0.1  # share of words' worth of swaps
    p_rd: float = 0.1  # probability that a word is deleted
    min_chars_zh: int = 2  # shorter Chinese words have no synonyms and are no synonyms
    keep_stopwords: bool = True  # never replace a stop word or insert a synonym of one


def match_case(src: str, word: str) -> str:
    """``word`` written the way ``src`` is: "Film" for "Movie", "FILM" for "MOVIE"."""
    if len(src) > 1 and src.isupper():
        return word.upper()
    if src[:1].isupper():
        return word[:1].upper() + word[1:]
    return word


def _usable(syn: str, lang: str) -> bool:
    if lang == "zh":
        return all(c.isalpha() for c in syn)  # no idioms with "，" or "…" in them
    return all(c.isalpha() or c in " -'" for c in syn)


class EDA(Augmenter):
    """One of the EDA operations (``method`` synonym|insert|swap|delete) or all four in turn (``eda``)."""

    def __init__(self, method: str = "eda", n: int = 1, seed: int = 0, lang: str = "auto",
                 options: dict | None = None, lexicon: Lexicon | dict[str, Lexicon] | None = None,
                 wordnet_dir: str | None = None, cilin: str | None = None):
        super().__init__(n, seed, lang)
        if method not in ("eda", *OPERATIONS):
            from ....errors import ConfigError

            raise ConfigError(f"unknown EDA method '{method}'", f"use eda or one of {', '.join(OPERATIONS)}")
        self.method = method
        self.opts = EDAOptions.parse(options, method)
        self._lexicons: dict[str, Lexicon] = {}
        if isinstance(lexicon, dict):
            self._lexicons.update(lexicon)
        elif lexicon is not None:
            self._lexicons = {"en": lexicon, "zh": lexicon}
        self.wordnet_dir, self.cilin = wordnet_dir, cilin
        self._memo: dict[tuple[str, str], list[str]] = {}

    def lexicon(self, lang: str) -> Lexicon:
        if lang not in self._lexicons:
            self._lexicons[lang] = lexicon_for(lang, self.wordnet_dir, self.cilin)
        return self._lexicons[lang]

    def edit(self, view: View, rng: random.Random, k: int) -> View | None:
        op = OPERATIONS[k % len(OPERATIONS)] if self.method == "eda" else self.method
        done = getattr(self, f"_{op}")(view, rng)
        if done:
            self.stats.counters[f"op:{op}"] += 1
        return view if done else None

    # -- helpers ------------------------------------------------------------------------------
    def _synonyms(self, view: View, word: str) -> list[str]:
        """Usable synonyms of ``word``, memoised: the same words recur across sentences and, for
        random insertion, across the insertions into one sentence (5x faster on Chinese reviews)."""
        key = (view.lang, word)
        syns = self._memo.get(key)
        if syns is None:
            syns = self._memo[key] = self._lookup(view, word)
        return syns

    def _lookup(self, view: View, word: str) -> list[str]:
        if self.opts.keep_stopwords and word.lower() in stopwords(view.lang):
            return []
        if len(word) < (self.opts.min_chars_zh if view.lang == "zh" else 2):  # "s" of "'s" is no word
            return []
        syns = self.lexicon(view.lang).synonyms(word)
        if view.lang == "zh":
            syns = [s for s in syns if len(s) >= self.opts.min_chars_zh]
        return [s for s in syns if _usable(s, view.lang)]

    def _candidates(self, view: View) -> list[tuple[int, list[str]]]:
        out = []
        for i in view.words():
            syns = self._synonyms(view, view.units[i].text)
            if syns:
                out.append((i, syns))
        return out

    # -- operations ---------------------------------------------------------------------------
    def _synonym(self, view: View, rng: random.Random) -> bool:
        cands = self._candidates(view)
        if not cands:
            return False
        rng.shuffle(cands)
        m = max(1, int(self.opts.alpha_sr * len(view.words())))
        for i, syns in cands[:m]:
            view.replace_word(i, match_case(view.units[i].text, rng.choice(syns)))
        return True

    def _insert(self, view: View, rng: random.Random) -> bool:
        """Synonyms of the sentence's words at random places, all chosen on the sentence as it was
        (one pass: recomputing both lists after every insertion made long texts quadratic)."""
        m = max(1, int(self.opts.alpha_ri * len(view.words())))
        cands, places = self._candidates(view), view.insert_positions()
        if not cands or not places:
            return False
        picks = [(rng.choice(places), rng.choice(rng.choice(cands)[1])) for _ in range(m)]
        for p, word in sorted(picks, key=lambda x: x[0], reverse=True):  # right to left: indices stay valid
            right = view.units[p].text if p < len(view.units) else ""
            view.insert_word(p, match_case(right, word) if p == 0 and right[:1].isupper() else word)
        return True

    def _swap(self, view: View, rng: random.Random) -> bool:
        words = view.words()
        if len(words) < 2:
            return False
        m = max(1, int(self.opts.alpha_rs * len(words)))
        changed = False
        for _ in range(m):
            i, j = rng.sample(words, 2)
            changed |= view.units[i].text != view.units[j].text
            view.swap_words(i, j)
        return changed

    def _delete(self, view: View, rng: random.Random) -> bool:
        words = [i for i in view.words() if view.can_delete(i)]
        if len(view.words()) < 2 or not words:
            return False
        chosen = [i for i in words if rng.random() < self.opts.p_rd]
        if not chosen:
            chosen = [rng.choice(words)]
        if len(chosen) == len(view.words()):  # never delete every word
            chosen.remove(rng.choice(chosen))
        for i in sorted(chosen, reverse=True):
            if view.can_delete(i):
                view.delete_word(i)
        return True
