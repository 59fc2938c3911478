"""The ``vectors:`` config: one flat pydantic model, so ``key=value`` overrides reach every knob."""

from __future__ import annotations

from typing import Literal

from pydantic import field_validator, model_validator

from ...config import StrictModel

Model = Literal["skipgram", "cbow", "glove"]


class VectorsConfig(StrictModel):
    """How to read the corpus and train word vectors.

    ``model``: skipgram / cbow (word2vec with negative sampling) or glove. ``subwords: true`` turns
    skipgram/cbow into fastText: a word's input vector is the mean of its own row and its hashed
    character n-gram rows (``min_n``..``max_n``, ``bucket`` rows), so unseen words get vectors too.
    Defaults follow gensim 4 / word2vec.c (dim 100, window 5, min_count 5, sample 1e-3, negative 5).
    """

    model: Model = "skipgram"
    dim: int = 100
    window: int = 5
    """Maximum distance; word2vec samples the actual window per word in [1, window] (dynamic windows)."""
    min_count: int = 5
    max_vocab: int | None = None
    """Keep only the most frequent N words (after min_count)."""
    epochs: int | None = None
    """Passes over the corpus; default 5 (word2vec, as gensim) or 25 (glove)."""
    alpha: float | None = None
    """Start learning rate; default 0.025 (skipgram), 0.05 (cbow, as word2vec.c), 0.05 (glove, AdaGrad)."""
    min_alpha: float = 0.0001
    """word2vec learning rate at the end of training (linear decay)."""
    threads: int = 2
    seed: int = 1
    # word2vec
    negative: int = 5
    ns_exponent: float = 0.75
    sample: float = 0.001
    """Subsampling threshold for frequent words (0 turns it off)."""
    cbow_mean: bool = True
    # fastText subwords
    subwords: bool = False
    min_n: int = 3
    max_n: int = 6
    bucket: int = 200_000
    # GloVe
    x_max: float = 100.0
    power: float = 0.75
    """GloVe weighting f(x) = min(1, (x / x_max) ** power)."""
    # corpus
    language: Literal["auto", "en", "zh"] = "auto"
    """auto: each document is checked for Chinese characters (lmforge.text.is_cjk)."""
    zh_segmentation: Literal["words", "chars"] = "words"
    """Chinese text as jieba words or as single characters."""
    lowercase: bool = True
    drop_punct: bool = True
    """Drop tokens that hold no letter or digit."""
    txt_split: Literal["paragraph", "line", "file"] = "paragraph"
    """How .txt files become sentences (a window never crosses one): paragraphs, lines, or whole files."""
    max_sentence_length: int = 10_000
    """Longer sentences are cut, as gensim and word2vec.c do."""
    extra_formats: list[Literal["word2vec_binary", "glove"]] = []
    """Besides vectors.txt (word2vec text): vectors.bin (word2vec binary) and/or vectors.glove.txt."""

    @field_validator("dim", "window", "threads", "min_count", "max_sentence_length", "bucket")
    @classmethod
    def _positive(cls, v: int, info) -> int:
        if v < 1:
            raise ValueError(f"{info.field_name} must be at least 1")
        return v

    @field_validator("negative")
    @classmethod
    def _negative(cls, v: int) -> int:
        if v < 1:
            raise ValueError("negative must be at least 1 (hierarchical softmax is not implemented)")
        return v

    @field_validator("sample", "min_alpha")
    @classmethod
    def _non_negative(cls, v: float, info) -> float:
        if v < 0:
            raise ValueError(f"{info.field_name} must be >= 0")
        return v

    @model_validator(mode="after")
    def _check(self) -> "VectorsConfig":
        if self.epochs is not None and self.epochs < 1:
            raise ValueError("epochs must be at least 1")
        if self.alpha is not None and self.alpha <= 0:
            raise ValueError("alpha must be > 0")
        if not 1 <= self.min_n <= self.max_n:
            raise ValueError("need 1 <= min_n <= max_n")
        if self.subwords and self.model == "glove":
            raise ValueError("subwords are for skipgram/cbow (fastText), not glove")
        return self

    @property
    def start_alpha(self) -> float:
        if self.alpha is not None:
            return self.alpha
        return 0.025 if self.model == "skipgram" else 0.05

    @property
    def n_epochs(self) -> int:
        if self.epochs is not None:
            return self.epochs
        return 25 if self.model == "glove" else 5
