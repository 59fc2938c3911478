"""The data stage's schema: the recipe's ``data:`` section and ``lmforge data process --config``.

Every section has defaults, so ``data: {inputs: [examples/data/raw]}`` alone runs the recommended
pipeline. Thresholds come from the literature (Gopher, C4, FineWeb) but are loosened where those
web-tuned values would throw away clean prose, short sentences or Chinese text (see docs/data.md).
"""

from __future__ import annotations

import glob
from pathlib import Path
from typing import Literal

from pydantic import Field

from ..config import StrictModel


class ReadConfig(StrictModel):
    format: Literal["auto", "txt", "jsonl", "csv", "tsv", "parquet", "html", "warc", "conll"] = "auto"
    unit: Literal["file", "paragraph", "line"] = "paragraph"  # how .txt files become documents
    text_field: str = "text"  # jsonl/parquet/csv column holding the text
    id_field: str = "id"
    max_chars: int = 1_000_000  # a longer record is an error, not a document
    html_min_chars: int = 20  # trafilatura's own floor (250) would lose short pages


class NormalizeConfig(StrictModel):
    enabled: bool = True
    nfkc: bool = True
    keep_cjk_punct: bool = True  # NFKC would turn '，' into ','; Chinese text keeps its punctuation
    strip_markup: bool = True
    lowercase: bool = False
    t2s: bool = False  # traditional -> simplified Chinese with OpenCC
    remove_stopwords: bool = False  # classic-NLP only: changes the text
    lemmatize: bool = False  # classic-NLP only (English rules)


class LangIdConfig(StrictModel):
    enabled: bool = True
    min_chars: int = 20  # shorter Latin-script texts are 'und' (undetermined): no model is reliable
    keep_undetermined: bool = True
    # Latin-script languages lingua chooses among (plus the requested ones); each costs model
    # loading time on the first short ambiguous text, so the default is the common few
    candidates: list[str] = Field(default_factory=lambda: ["en", "de", "fr", "es", "it", "pt", "nl"])


class QualityConfig(StrictModel):
    enabled: bool = True
    min_words: int = 3  # words for space-separated languages; CJK counts characters
    min_cjk_chars: int = 5
    max_words: int = 200_000
    mean_word_len: tuple[float, float] = (2.0, 12.0)  # Gopher uses (3, 10) on web pages
    max_symbol_ratio: float = 0.1  # '#' and '...' per word (Gopher)
    max_bullet_lines: float = 0.9
    max_ellipsis_lines: float = 0.3
    min_alpha_words: float = 0.7  # Gopher: 0.8 (numbers-heavy prose like WikiText is fine); counted over tokens with a letter or digit, so tokenized
    # punctuation (", ``, --) does not count against a sentence
    stats_min_words: int = 20  # ratio rules (symbols, ellipsis, alpha) need this many words to mean anything
    stopwords_min_words: int = 50  # the Gopher stop-word rule only judges texts at least this long
    min_stopwords: int = 2
    min_alnum_ratio: float = 0.6  # symbol soup: letters+digits per non-space char
    max_url_ratio: float = 0.3  # link lists: chars inside URLs
    max_mash_ratio: float = 0.5  # keyboard mash: words with no vowel or long consonant runs
    repetition: bool = True
    repetition_min_units: int = 50  # n-gram repetition on a 12-word sentence is chance, not spam
    max_dup_line_frac: float = 0.3
    max_dup_para_frac: float = 0.3
    max_dup_line_char_frac: float = 0.2
    max_dup_para_char_frac: float = 0.2
    top_ngram: dict[int, float] = Field(default_factory=lambda: {2: 0.2, 3: 0.18, 4: 0.16})
    dup_ngram: dict[int, float] = Field(default_factory=lambda: {5: 0.15, 6: 0.14, 7: 0.13, 8: 0.12,
                                                                  9: 0.11, 10: 0.10})
    c4: bool = True  # lorem ipsum, javascript/cookie/policy lines
    c4_terminal_punct: bool = False  # C4 drops lines without terminal punctuation: off, kills poems
    fineweb: bool = True
    fineweb_min_lines: int = 5  # line statistics mean nothing on a 2-line text
    fineweb_line_punct: float = 0.12
    fineweb_short_line: float = 0.67
    fineweb_char_dup: float = 0.1  # FineWeb: 0.01; novels repeat short dialogue lines
    spam: bool = True


class PIIConfig(StrictModel):
    enabled: bool = True
    kinds: list[str] = Field(default_factory=lambda: ["email", "phone", "ip", "credit_card", "cn_id"])


class DedupConfig(StrictModel):
    exact: bool = True
    near: bool = True
    threshold: float = 0.7  # target Jaccard; bands x rows are derived from it
    num_perm: int = 128
    ngram: int = 5  # word n-grams; CJK text uses character n-grams of the same size
    paragraph: bool = False  # drop paragraphs already seen in earlier documents
    seed: int = 1


class SegmentConfig(StrictModel):
    enabled: bool = False  # word segmentation for classic models: meta['tokens']
    replace_text: bool = False  # or write the space-joined tokens as the text
    stopwords: bool = False


class AugmentConfig(StrictModel):
    """Copies of each kept document after dedup (so copies are not deduplicated away); docs/augmentation.md.

    Model-backed methods (contextual, backtranslate) need a predictor: use ``lmforge augment``."""

    enabled: bool = False
    method: Literal["eda", "synonym", "insert", "swap", "delete", "noise"] = "eda"
    n: int = Field(1, ge=1, le=64)  # copies per document
    seed: int = 0
    lang: Literal["auto", "en", "zh"] = "auto"
    options: dict[str, float | int | bool] = Field(default_factory=dict)  # per-method rates, e.g. alpha_sr: 0.2
    wordnet_dir: str | None = None  # default /usr/share/wordnet (Debian wordnet-base)
    cilin: str | None = None  # default $LMFORGE_DATASETS/lexicons/cilin/cilin_ex.txt


class SplitConfig(StrictModel):
    val_fraction: float = Field(0.1, ge=0, lt=1)
    test_fraction: float = Field(0.0, ge=0, lt=1)
    seed: int = 0
    mode: Literal["random", "stratified", "grouped"] = "random"
    label_field: str = "label"  # meta key for stratified splits
    group_field: str | None = None  # meta key for grouped splits (near-dup clusters are always grouped)
    # augmented copies (meta.augmented_from) always go to the side of their source, in every mode
    group_threshold: float = 0.7


class OutputConfig(StrictModel):
    format: Literal["jsonl", "jsonl.gz", "jsonl.zst", "parquet"] = "jsonl.gz"


class DataStageConfig(StrictModel):
    """The ``data:`` section of a recipe."""

    inputs: list[str] = Field(default_factory=list)
    languages: list[str] | None = None
    read: ReadConfig = Field(default_factory=ReadConfig)
    normalize: NormalizeConfig = Field(default_factory=NormalizeConfig)
    langid: LangIdConfig = Field(default_factory=LangIdConfig)
    quality: QualityConfig = Field(default_factory=QualityConfig)
    pii: PIIConfig = Field(default_factory=PIIConfig)
    dedup: DedupConfig = Field(default_factory=DedupConfig)
    segment: SegmentConfig = Field(default_factory=SegmentConfig)
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    split: SplitConfig = Field(default_factory=SplitConfig)
    output: OutputConfig = Field(default_factory=OutputConfig)
    executor: Literal["local", "ray"] = "local"
    workers: int = 0  # 0 = one per CPU core
    shard_mb: float = 0  # input MB per shard; 0 = total / (2 x workers), between 4 and 64
    ray_address: str | None = None
    progress: bool = False

    def input_paths(self) -> list[str]:
        """Files and directories to hash for caching (globs expanded)."""
        out: list[str] = []
        for item in self.inputs:
            if any(c in item for c in "*?["):
                out.extend(sorted(glob.glob(item, recursive=True)))
            else:
                out.append(str(Path(item)))
        return out
