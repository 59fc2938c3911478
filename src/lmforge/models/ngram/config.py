"""N-gram settings and the text -> sentence -> token rules they imply.

One sentence is one non-empty line (the convention of KenLM's ``lmplz`` and SRILM), so a model
trained here and one built by ``lmplz`` from the same file see the same events. Tokens never hold
whitespace: ARPA files separate words by it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Callable, Iterator, Literal, Optional

from pydantic import Field

from ...config import StrictModel
from ...errors import InputError

UNK, BOS, EOS = "<unk>", "<s>", "</s>"
SPACE = "\u2581"  # "▁" stands for a run of whitespace in character models (as in SentencePiece)
_WS = re.compile(r"\s+")


class NgramConfig(StrictModel):
    """Settings of ``lmforge ngram train``; every field can be set as ``key=value``."""

    order: int = Field(3, ge=1, le=6, description="n of the n-gram model, 1-6")
    unit: Literal["word", "char"] = Field("word", description="words, or characters (Chinese: one per 字)")
    segmenter: Literal["whitespace", "rules", "jieba", "auto"] = Field(
        "whitespace", description="word units: split on whitespace (pre-tokenized text, as KenLM), English rules, "
                                  "jieba (Chinese), or auto-detect per line")
    smoothing: Literal["kneser_ney", "katz", "add_k"] = Field(
        "kneser_ney", description="interpolated modified Kneser-Ney, Katz back-off, or add-k (baseline)")
    k: float = Field(1.0, gt=0, description="add_k: pseudo-count added to every n-gram")
    lowercase: bool = False
    min_count: int = Field(1, ge=1, description="words seen fewer times become <unk> (1 keeps all)")
    max_vocab: Optional[int] = Field(None, ge=3, description="keep only the most frequent words (with <unk>, <s>, </s>)")
    discount_fallback: tuple[float, float, float] = Field(
        (0.5, 1.0, 1.5), description="KN discounts D1, D2, D3+ used when count-of-counts cannot give valid ones "
                                     "(tiny or artificial data; same default as lmplz --discount_fallback)")
    chunk_tokens: int = Field(1_000_000, ge=1000, description="tokens counted per batch (bounds working memory)")


def make_tokenizer(cfg: NgramConfig) -> Callable[[str], list[str]]:
    """The function that turns one line into tokens for ``cfg`` (used for training and querying alike)."""
    lower = cfg.lowercase
    if cfg.unit == "char":
        def chars(line: str) -> list[str]:
            line = line.lower() if lower else line
            return list(SPACE.join(line.split()))
        return chars
    if cfg.segmenter == "whitespace":
        return (lambda line: line.lower().split()) if lower else str.split
    from ...text import segment, tokenize_en, tokenize_zh

    seg = {"rules": tokenize_en, "jieba": tokenize_zh, "auto": segment}[cfg.segmenter]

    def words(line: str) -> list[str]:
        toks = seg(line.lower() if lower else line)
        return [_WS.sub(SPACE, t) for t in toks if t.strip()]
    return words


TEXT_SUFFIXES = (".txt", ".text", ".md", ".tokens", ".raw")


DOCUMENT_SUFFIXES = (".jsonl", ".jsonl.gz", ".jsonl.zst", ".json", ".ndjson", ".parquet")


def is_plain_text(path: Path) -> bool:
    """True for a file read line by line as it is; False for .jsonl/.parquet documents. Missing -> InputError."""
    if not path.is_file():
        raise InputError(f"input file not found: {path}", "check the path")
    return not path.name.lower().endswith(DOCUMENT_SUFFIXES)


def check_not_binary(path: Path) -> None:
    with open(path, "rb") as f:
        if b"\0" in f.read(4096):
            raise InputError(f"{path}: looks like a binary file, not text", "pass UTF-8 .txt or .jsonl files")


def iter_lines(path: str | Path) -> Iterator[tuple[int, str]]:
    """(line number, text) of every non-empty line; .jsonl/.parquet documents are split into lines.

    For jsonl the number is the record's line; a document's own lines share it.
    """
    path = Path(path)
    if not is_plain_text(path):
        from ...tokenizer.corpus import iter_documents

        for i, doc in enumerate(iter_documents(path), 1):
            for line in doc.split("\n"):
                if line.strip():
                    yield i, line
        return
    check_not_binary(path)
    try:
        with open(path, encoding="utf-8", newline="") as f:
            for lineno, line in enumerate(f, 1):
                if line.strip():
                    yield lineno, line.rstrip("\r\n")
    except UnicodeDecodeError:  # decoding runs ahead of the lines read: find the line from the bytes
        data = path.read_bytes()
        try:
            data.decode("utf-8")
            bad = len(data)
        except UnicodeDecodeError as err:
            bad = err.start
        head = data[:bad]
        lineno = head.count(b"\n") + head.count(b"\r") - head.count(b"\r\n") + 1
        raise InputError(f"{path}:{lineno}: not valid UTF-8",
                         "convert it (e.g. iconv -f latin1 -t utf-8) first") from None
