"""Corpus -> vocabulary + one int32 array of word ids with sentence starts.

Tokenising happens once; the trainers then walk flat numpy arrays (what numba wants), never Python
lists of strings. Words under ``min_count`` are dropped from the stream, as gensim and word2vec.c do.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from ...errors import InputError
from ...text import is_cjk, tokenize_en, tokenize_zh
from .config import VectorsConfig


def tokenize(text: str, cfg: VectorsConfig) -> list[str]:
    """Words of one document as the config asks (jieba words or characters for Chinese)."""
    lang = cfg.language if cfg.language != "auto" else ("zh" if is_cjk(text) else "en")
    if lang == "zh":
        toks = [c for c in text if not c.isspace()] if cfg.zh_segmentation == "chars" else tokenize_zh(text)
    else:
        toks = tokenize_en(text)
    if cfg.lowercase:
        toks = [t.lower() for t in toks]
    if cfg.drop_punct:
        toks = [t for t in toks if any(ch.isalnum() for ch in t)]
    return toks


def iter_sentences(paths: list[str | Path], cfg: VectorsConfig) -> Iterator[list[str]]:
    """Tokenised sentences of txt/jsonl/parquet files (the tokenizer module's readers)."""
    from ...tokenizer.corpus import expand_inputs, iter_documents

    for path in expand_inputs(paths):
        for text in iter_documents(path, cfg.txt_split):
            toks = tokenize(text, cfg)
            if toks:
                yield toks


@dataclass
class Corpus:
    """The training stream: ``ids[starts[k]:starts[k+1]]`` is sentence k (in-vocabulary words only)."""

    words: list[str]
    counts: np.ndarray  # (V,) int64, descending
    ids: np.ndarray  # (N,) int32
    starts: np.ndarray  # (S + 1,) int64
    raw_words: int  # tokens read, out-of-vocabulary ones included (what words/s counts)

    @property
    def retained_words(self) -> int:
        return int(self.ids.size)


def build_corpus(sentences: Iterable[list[str]], cfg: VectorsConfig, source: str = "corpus") -> Corpus:
    """Count, prune to ``min_count``/``max_vocab`` and encode, in one pass over the tokens."""
    index: dict[str, int] = {}
    raw = array("i")
    lengths = array("q")
    counts: list[int] = []
    for sent in sentences:
        for tok in sent:
            i = index.get(tok)
            if i is None:
                i = index[tok] = len(counts)
                counts.append(0)
            counts[i] += 1
            raw.append(i)
        lengths.append(len(sent))
    if not raw:
        raise InputError(f"{source}: no words to train on (empty corpus)",
                         "pass non-empty text files (txt, jsonl with 'text', parquet)")
    count = np.asarray(counts, dtype=np.int64)
    order = np.argsort(-count, kind="stable")  # frequent first, ties in order of appearance
    order = order[count[order] >= cfg.min_count]
    if cfg.max_vocab is not None:
        order = order[: cfg.max_vocab]
    if order.size == 0:
        raise InputError(f"{source}: no word occurs at least min_count={cfg.min_count} times "
                         f"({len(counts)} distinct words, {len(raw)} tokens)", "lower min_count=, or give more text")
    remap = np.full(len(counts), -1, dtype=np.int32)
    remap[order] = np.arange(order.size, dtype=np.int32)
    by_id = list(index)
    words = [by_id[i] for i in order]
    mapped = remap[np.frombuffer(raw, dtype=np.int32)]
    keep = mapped >= 0
    # sentence k keeps sum(keep) of its tokens; cut long ones at max_sentence_length
    bounds = np.concatenate([[0], np.cumsum(np.frombuffer(lengths, dtype=np.int64))])
    kept_before = np.concatenate([[0], np.cumsum(keep)])
    new_len = kept_before[bounds[1:]] - kept_before[bounds[:-1]]
    pieces = []
    m = cfg.max_sentence_length
    for n in new_len[new_len > 0]:
        pieces.extend([m] * (int(n) // m) + ([int(n) % m] if n % m else []))
    starts = np.concatenate([[0], np.cumsum(np.asarray(pieces, dtype=np.int64))]).astype(np.int64)
    return Corpus(words, count[order], mapped[keep].astype(np.int32), starts, int(len(raw)))
