"""The recipe's ``tokenizer:`` section."""

from __future__ import annotations

from typing import Literal

from pydantic import field_validator

from ..config import StrictModel

Kind = Literal["byte_bpe", "bpe", "wordpiece", "unigram", "char"]
Family = Literal["gpt", "bert", "seq2seq"]
TxtSplit = Literal["paragraph", "line", "file"]


class TokenizerConfig(StrictModel):
    """How to train the tokenizer and which special tokens the model family needs.

    ``family`` decides the special tokens: gpt -> ``<|endoftext|>`` (eos, bos and pad);
    bert -> ``[PAD] [UNK] [CLS] [SEP] [MASK]``; seq2seq -> ``<pad> <s> </s> <unk>``.
    ``special_tokens`` replaces that list; roles are recognised by the usual names.
    """

    kind: Kind = "byte_bpe"
    vocab_size: int = 8192
    min_frequency: int = 2
    family: Family = "gpt"
    special_tokens: list[str] | None = None
    lowercase: bool = False
    files: list[str] | None = None
    max_train_docs: int | None = None
    txt_split: TxtSplit = "paragraph"
    """How a .txt file becomes documents: paragraphs (blank-line separated), lines, or the whole file."""

    @field_validator("vocab_size")
    @classmethod
    def _vocab_size(cls, v: int) -> int:
        if not 8 <= v <= 4_000_000:
            raise ValueError("vocab_size must be between 8 and 4,000,000")
        return v

    @field_validator("min_frequency")
    @classmethod
    def _min_frequency(cls, v: int) -> int:
        if v < 1:
            raise ValueError("min_frequency must be at least 1")
        return v

    @field_validator("max_train_docs")
    @classmethod
    def _max_docs(cls, v: int | None) -> int | None:
        if v is not None and v < 1:
            raise ValueError("max_train_docs must be at least 1 (or null for all)")
        return v

    @field_validator("special_tokens")
    @classmethod
    def _specials(cls, v: list[str] | None) -> list[str] | None:
        if v is not None:
            if any(not t for t in v):
                raise ValueError("special_tokens must not contain empty strings")
            if len(set(v)) != len(v):
                raise ValueError("special_tokens has duplicates")
        return v

    def input_paths(self) -> list[str]:
        """Files this stage reads beyond the data stage's output (hashed for caching)."""
        return list(self.files or [])
