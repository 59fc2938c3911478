"""Augmentation steps: one document in, the original plus labelled, provenance-marked copies out.

Methods: ``eda`` (all four EDA operations in turn) or one of them (``synonym``, ``insert``, ``swap``,
``delete``); ``noise`` (typos, same-pinyin characters); ``contextual`` (masked-LM substitution, given a
fill-mask callable); ``backtranslate`` (given two translate callables). See docs/augmentation.md.
"""

from __future__ import annotations

from typing import Any

from ....errors import ConfigError
from .backtranslate import BackTranslate, Translate
from .base import Augmenter
from .contextual import Contextual, FillMask, MLMFiller
from .eda import EDA, OPERATIONS
from .lexicons import Cilin, Lexicon, VectorNeighbors, WordNet
from .noise import CharNoise

METHODS = ("eda", *OPERATIONS, "noise", "contextual", "backtranslate")
MODEL_FREE = ("eda", *OPERATIONS, "noise")


def build_augmenter(method: str, n: int = 1, seed: int = 0, lang: str = "auto", options: dict[str, Any] | None = None,
                    *, lexicon: Lexicon | dict | None = None, wordnet_dir: str | None = None, cilin: str | None = None,
                    fill: FillMask | None = None, forward: Translate | None = None,
                    backward: Translate | None = None, batch_size: int = 16) -> Augmenter:
    """The step for ``method``; model-backed methods need their callables (``fill``, ``forward``/``backward``)."""
    if method in ("eda", *OPERATIONS):
        return EDA(method, n, seed, lang, options, lexicon=lexicon, wordnet_dir=wordnet_dir, cilin=cilin)
    if method == "noise":
        return CharNoise(n, seed, lang, options)
    if method == "contextual":
        if fill is None:
            raise ConfigError("contextual augmentation needs a masked LM", "pass --model DIR (a BERT with its MLM head)")
        return Contextual(fill, n, seed, lang, options, batch_size=batch_size)
    if method == "backtranslate":
        if forward is None or backward is None:
            raise ConfigError("back-translation needs two translation models",
                              "pass --forward DIR (e.g. en->de) and --backward DIR (de->en)")
        return BackTranslate(forward, backward, n, seed, lang, options, batch_size=batch_size)
    raise ConfigError(f"unknown augmentation method '{method}'", f"use one of {', '.join(METHODS)}")


__all__ = [
    "EDA",
    "METHODS",
    "MODEL_FREE",
    "Augmenter",
    "BackTranslate",
    "CharNoise",
    "Cilin",
    "Contextual",
    "FillMask",
    "Lexicon",
    "MLMFiller",
    "Translate",
    "VectorNeighbors",
    "WordNet",
    "build_augmenter",
]
