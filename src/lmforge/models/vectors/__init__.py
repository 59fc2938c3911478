"""Word vectors: word2vec (skip-gram, CBOW), GloVe and fastText subwords, with gensim-compatible files.

    from lmforge.models.vectors import VectorsConfig, train_files, WordVectors
    wv, stats = train_files(["corpus.txt"], VectorsConfig(model="skipgram", dim=100), "out/vectors")
    WordVectors.load("out/vectors").most_similar("king")

Training runs numba kernels (the ``vectors`` extra); reading, writing and querying need only numpy.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import numpy as np

from ...errors import InputError
from .config import VectorsConfig
from .corpus import Corpus, build_corpus, iter_sentences, tokenize
from .io import detect_format, read_vectors, write_vectors
from .keyed import WordVectors, save_subwords

__all__ = ["VectorsConfig", "Corpus", "build_corpus", "iter_sentences", "tokenize", "WordVectors", "TrainStats",
           "train", "train_files", "save_model", "cooccurrence", "read_vectors", "write_vectors", "detect_format",
           "load_vectors", "embedding_from_vectors"]

_LAZY = {"train", "cooccurrence", "TrainStats"}  # numba loads only when training


def __getattr__(name: str):
    if name in _LAZY:
        from . import trainer as _trainer

        return getattr(_trainer, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


EXTRA_FILES = {"word2vec_binary": "vectors.bin", "glove": "vectors.glove.txt"}


def save_model(wv: WordVectors, out_dir: str | Path, cfg: VectorsConfig, stats=None) -> Path:
    """A vectors directory: vectors.txt (word2vec text), config.json, train_stats.json, extras, subwords."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    wv.save(out / "vectors.txt", "word2vec")
    for fmt in cfg.extra_formats:
        wv.save(out / EXTRA_FILES[fmt], fmt)
    if wv.subwords is not None:
        save_subwords(out, wv.subwords)
    (out / "config.json").write_text(json.dumps(cfg.model_dump(), indent=2) + "\n", encoding="utf-8")
    if stats is not None:
        (out / "train_stats.json").write_text(json.dumps(stats.to_dict(), indent=2) + "\n", encoding="utf-8")
    return out


def train_files(files: list[str | Path], cfg: VectorsConfig, out_dir: str | Path | None = None,
                progress: Callable[[float], None] | None = None):
    """Read + tokenise ``files``, train, and (with ``out_dir``) save the vectors directory.

    Returns (WordVectors, TrainStats)."""
    from .trainer import train
    source = ", ".join(map(str, files[:3])) + (" ..." if len(files) > 3 else "")
    corpus = build_corpus(iter_sentences(files, cfg), cfg, source=source)
    wv, stats = train(corpus, cfg, progress)
    if out_dir is not None:
        save_model(wv, out_dir, cfg, stats)
    return wv, stats


def load_vectors(path: str | Path, limit: int | None = None) -> tuple[list[str], np.ndarray]:
    """(words, float32 matrix) from a word2vec text/binary or GloVe file, or a vectors directory."""
    wv = WordVectors.load(path, limit=limit)
    return wv.words, wv.vectors


def embedding_from_vectors(path_or_dir: str | Path, vocab: list[str], freeze: bool = True,
                           padding_idx: int | None = None):
    """An ``nn.Embedding`` for ``vocab`` initialised from pretrained vectors.

    Words the file lacks get a fastText vector when the directory has subwords, else a small random
    row (std 0.1 x the pretrained rows' std), so a classifier can still train them when not frozen;
    ``padding_idx`` rows are zero. Lookup tries the word, then its lowercase form.
    """
    import torch

    wv = WordVectors.load(path_or_dir)
    if not vocab:
        raise InputError("embedding_from_vectors: empty vocabulary", "pass the classifier's vocabulary")
    std = float(wv.vectors.std()) or 1.0
    gen = np.random.default_rng(0)
    weight = np.empty((len(vocab), wv.dim), dtype=np.float32)
    found = 0
    for i, word in enumerate(vocab):
        key = word if word in wv.index else word.lower()
        if key in wv.index or wv.has_vector(key):
            weight[i] = wv.vector(key)
            found += key in wv.index
        else:
            weight[i] = gen.normal(0.0, 0.1 * std, wv.dim)
    if padding_idx is not None:
        weight[padding_idx] = 0.0
    emb = torch.nn.Embedding.from_pretrained(torch.from_numpy(weight), freeze=freeze, padding_idx=padding_idx)
    emb.coverage = found / len(vocab)  # share of the vocabulary found in the file, for logs
    return emb
