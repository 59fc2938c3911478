"""Text utilities shared by the data pipeline and the classic models."""

from .lemma import lemmatize, lemmatize_tokens
from .normalize import clean_whitespace, nfkc, normalize, strip_markup, to_simplified
from .segment import is_cjk, segment, tokenize_en, tokenize_zh
from .stopwords import stopwords

__all__ = ["normalize", "nfkc", "strip_markup", "clean_whitespace", "to_simplified", "segment", "tokenize_en",
           "tokenize_zh", "is_cjk", "stopwords", "lemmatize", "lemmatize_tokens"]
