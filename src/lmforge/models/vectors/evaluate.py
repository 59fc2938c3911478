"""The standard evaluation sets (English: Google analogies, WordSim-353, SimLex-999; Chinese: CA8)."""

from __future__ import annotations

import os
from pathlib import Path

from ...errors import InputError
from ...text import is_cjk
from .keyed import WordVectors

SUITES = {
    "en": {"analogies": ["vectors/analogy_en/questions-words.txt"],
           "similarity": ["vectors/wordsim/wordsim353.tsv", "vectors/wordsim/simlex999.txt"]},
    "zh": {"analogies": ["vectors/analogy_zh_ca8/CA8/morphological.txt", "vectors/analogy_zh_ca8/CA8/semantic.txt",
                         "vectors/analogy_zh_ca8/CA_translated/ca_translated.txt"],
           "similarity": []},
}


def datasets_dir(path: str | Path | None = None) -> Path:
    """--datasets, else $LMFORGE_DATASETS, else ../shared/datasets (the project's setting)."""
    return Path(path or os.environ.get("LMFORGE_DATASETS") or "../shared/datasets")


def guess_language(wv: WordVectors) -> str:
    return "zh" if is_cjk("".join(wv.words[:2000])) else "en"


def standard_suite(lang: str, root: Path) -> tuple[list[Path], list[Path]]:
    """(analogy files, word-pair files) of a language's suite; missing files are an InputError."""
    suite = SUITES[lang]
    files = [root / p for p in suite["analogies"] + suite["similarity"]]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise InputError(f"evaluation data not found: {missing[0]}",
                         "set --datasets (or LMFORGE_DATASETS) to the shared datasets folder, or pass "
                         "--analogies/--similarity files")
    return [root / p for p in suite["analogies"]], [root / p for p in suite["similarity"]]


def evaluate(wv: WordVectors, analogies: list[Path], similarity: list[Path], restrict_vocab: int = 300_000) -> dict:
    """{file name: result} for analogy files (accuracy) and word-pair files (Spearman)."""
    out: dict[str, dict] = {}
    for path in analogies:
        out[Path(path).name] = {"kind": "analogy", **wv.evaluate_analogies(path, restrict_vocab)}
    for path in similarity:
        out[Path(path).name] = {"kind": "similarity", **wv.evaluate_word_pairs(path, restrict_vocab)}
    return out
