"""Synonym sources for EDA, read from local files (no runtime downloads).

- English: WordNet 3.0 from Debian's ``wordnet-base`` (``/usr/share/wordnet/data.{noun,verb,adj,adv}``),
  parsed directly: the synonyms of a word are the other lemmas of every synset it belongs to.
- Chinese: HIT Tongyici Cilin (Extended), ``CODE WORD WORD ...`` lines; only ``=`` lines are synonym
  groups (``#`` lines are related words of one class, ``@`` lines a single word), and a word's synonyms
  are the union of its ``=`` groups (codes are reused in the file, so groups are keyed by line).
- Either language: nearest neighbours in word vectors trained by ``lmforge vectors train``.

Lookups are exact (lower-cased for English): replacing "dogs" with a lemma of "dog" would change the
grammar of the sentence, so inflected forms simply have no synonyms.
"""

from __future__ import annotations

import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Protocol

import numpy as np

from ....errors import InputError

WORDNET_DIR = "/usr/share/wordnet"
WORDNET_FILES = ("data.noun", "data.verb", "data.adj", "data.adv")
CILIN_REL = Path("lexicons") / "cilin" / "cilin_ex.txt"
_ADJ_MARKER = re.compile(r"\((?:a|p|ip)\)$")


class Lexicon(Protocol):
    def synonyms(self, word: str) -> list[str]: ...


class _Groups:
    """Synonym groups and the groups of each word; ``synonyms`` keeps file order, no duplicates."""

    def __init__(self, groups: list[tuple[str, ...]], lower: bool):
        self.groups = groups
        self.lower = lower
        self.index: dict[str, list[int]] = {}
        for g, words in enumerate(groups):
            for w in words:
                self.index.setdefault(w.lower() if lower else w, []).append(g)

    def __len__(self) -> int:
        return len(self.index)

    def __contains__(self, word: str) -> bool:
        return (word.lower() if self.lower else word) in self.index

    def synonyms(self, word: str) -> list[str]:
        key = word.lower() if self.lower else word
        seen: dict[str, None] = {}
        for g in self.index.get(key, ()):
            for w in self.groups[g]:
                if (w.lower() if self.lower else w) != key:
                    seen.setdefault(w, None)
        return list(seen)


class WordNet(_Groups):
    """English synonyms from WordNet's data files (synset = one line: offset, lexfile, pos, lemmas...)."""

    def __init__(self, directory: str | Path | None = None):
        self.directory = Path(directory or os.environ.get("LMFORGE_WORDNET") or WORDNET_DIR)
        groups = []
        for name in WORDNET_FILES:
            path = self.directory / name
            if not path.exists():
                raise InputError(f"WordNet file not found: {path}",
                                 "install Debian's wordnet-base (apt-get install wordnet-base) or set LMFORGE_WORDNET "
                                 "to a directory with data.noun, data.verb, data.adj and data.adv")
            with open(path, encoding="utf-8", errors="replace") as f:
                for lineno, line in enumerate(f, 1):
                    if line.startswith(" "):  # the licence header
                        continue
                    parts = line.split(" ", 4 + 2 * 255)
                    try:
                        n = int(parts[3], 16)
                    except (IndexError, ValueError):
                        raise InputError(f"{path}:{lineno}: not a WordNet data line",
                                         "reinstall wordnet-base; the file looks damaged") from None
                    words = [_ADJ_MARKER.sub("", w).replace("_", " ") for w in parts[4: 4 + 2 * n: 2]]
                    if len(words) > 1:
                        groups.append(tuple(words))
        super().__init__(groups, lower=True)


class Cilin(_Groups):
    """Chinese synonyms from the ``=`` lines of Tongyici Cilin (Extended)."""

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path else default_cilin()
        if not self.path.exists():
            raise InputError(f"Cilin file not found: {self.path}",
                             f"pass its path (--cilin PATH, data.augment.cilin), set LMFORGE_CILIN, or set "
                             f"LMFORGE_DATASETS to the folder holding {CILIN_REL}")
        groups = []
        with open(self.path, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                parts = line.split()  # str.split: U+3000 inside a line separates words too
                if not parts:
                    continue
                code = parts[0]
                if len(code) != 8 or code[-1] not in "=#@":
                    raise InputError(f"{self.path}:{lineno}: not a Cilin line (CODE= WORD ...)",
                                     "use the UTF-8 cilin_ex.txt from the shared datasets")
                if code[-1] == "=" and len(parts) > 2:
                    groups.append(tuple(dict.fromkeys(parts[1:])))
        super().__init__(groups, lower=False)


def default_cilin() -> Path:
    """$LMFORGE_CILIN, else $LMFORGE_DATASETS (default ../shared/datasets)/lexicons/cilin/cilin_ex.txt."""
    if os.environ.get("LMFORGE_CILIN"):
        return Path(os.environ["LMFORGE_CILIN"])
    return Path(os.environ.get("LMFORGE_DATASETS") or "../shared/datasets") / CILIN_REL


class VectorNeighbors:
    """Synonyms as the ``k`` nearest words (cosine at least ``min_sim``) in a word-vector table.

    Neighbours in distributional space are often related rather than synonymous (antonyms too), so
    ``min_sim`` is kept high; give it the arrays ``lmforge.models.vectors.load_vectors`` returns.
    """

    def __init__(self, words: list[str], matrix: np.ndarray, k: int = 5, min_sim: float = 0.6):
        self.words = list(words)
        self.row = {w: i for i, w in enumerate(self.words)}
        m = np.asarray(matrix, dtype=np.float32)
        self.unit = m / np.maximum(np.linalg.norm(m, axis=1, keepdims=True), 1e-8)
        self.k, self.min_sim = k, min_sim
        self._cache: dict[str, list[str]] = {}

    def synonyms(self, word: str) -> list[str]:
        if word not in self._cache:
            i = self.row.get(word)
            if i is None:
                self._cache[word] = []
            else:
                sims = self.unit @ self.unit[i]
                sims[i] = -1.0
                top = np.argsort(-sims, kind="stable")[: self.k]
                self._cache[word] = [self.words[j] for j in top if sims[j] >= self.min_sim]
        return self._cache[word]


@lru_cache(maxsize=4)
def wordnet(directory: str | None = None) -> WordNet:
    """One parsed WordNet per process (a second or two to read)."""
    return WordNet(directory)


@lru_cache(maxsize=4)
def cilin(path: str | None = None) -> Cilin:
    return Cilin(path)


def lexicon_for(lang: str, wordnet_dir: str | None = None, cilin_path: str | None = None) -> Lexicon:
    return cilin(cilin_path) if lang == "zh" else wordnet(wordnet_dir)
