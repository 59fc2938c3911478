"""Text-generation metrics: BLEU and chrF (sacrebleu), ROUGE (our own), and length statistics.

BLEU/chrF come from sacrebleu so the numbers and their signatures are the ones papers quote; a
Chinese target gets sacrebleu's ``zh`` tokenizer (picked from ``lang`` or from the references' share
of CJK characters) because 13a would treat a whole Chinese sentence as one word.

ROUGE is implemented here because rouge-score drops every non-ASCII character, so it scores Chinese
output 0. Our tokenizer is rouge-score's on ASCII text (lowercase, non-alphanumerics to spaces,
Porter stemming of words longer than 3 characters) and keeps CJK characters as one token each and
other scripts' words whole. Stemming uses nltk's PorterStemmer when nltk is installed; without nltk
the result says ``"stemmer": False``. ``lang="en"`` reproduces rouge-score exactly, non-ASCII dropped.
"""

from __future__ import annotations

import re
from collections import Counter
from functools import lru_cache
from typing import Callable, Sequence

import numpy as np

from ..errors import InputError

# Han (incl. extension A, compatibility, extensions B-F), kana, Hangul syllables
_CJK_CLASS = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af\U00020000-\U0002ebef"
_KANA_RE = re.compile("[\u3040-\u30ff]")
_HANGUL_RE = re.compile("[\uac00-\ud7af]")
_ASCII_WORD_RE = re.compile(r"^[a-z0-9]+$")
CJK_THRESHOLD = 0.5


@lru_cache(maxsize=None)
def _cjk_res() -> tuple[re.Pattern, re.Pattern]:
    """(one CJK character, word unit) patterns, compiled on first use: the big character class
    takes ~0.05 s to compile, too much for every ``import``."""
    return (re.compile(f"[{_CJK_CLASS}]"),
            re.compile(f"[{_CJK_CLASS}]|[^\\W_{_CJK_CLASS}]+"))  # one CJK char, or a run of other letters/digits


def word_units(text: str) -> list[str]:
    """CJK characters one by one and runs of other letters/digits; punctuation and spaces dropped."""
    return _cjk_res()[1].findall(text)


def cjk_share(texts: Sequence[str]) -> float:
    """Share of CJK characters among word-like units (a CJK character, or a run of other letters/digits).

    Counting a Latin word as one unit, like one Chinese character, keeps a Chinese text that quotes
    a few English terms Chinese; punctuation does not count.
    """
    total = cjk = 0
    for t in texts:
        units = word_units(t)
        total += len(units)
        cjk += sum(1 for u in units if len(u) == 1 and _cjk_res()[0].match(u))
    return cjk / total if total else 0.0


def detect_lang(texts: Sequence[str]) -> str | None:
    """'zh', 'ja' or 'ko' when CJK characters are at least half of the word-like units, else None."""
    if cjk_share(texts) < CJK_THRESHOLD:
        return None
    joined = "".join(texts)
    kana, hangul = len(_KANA_RE.findall(joined)), len(_HANGUL_RE.findall(joined))
    if hangul > kana and hangul > 0:
        return "ko"
    return "ja" if kana > 0 else "zh"


def _ref_lists(hyps: Sequence[str], refs: Sequence[str] | Sequence[Sequence[str]]) -> list[list[str]]:
    """One list of references per hypothesis (``refs`` may give one string per hypothesis)."""
    if isinstance(hyps, str) or isinstance(refs, str):
        raise InputError("hyps and refs must be lists of strings, not a single string", "wrap it in a list")
    if len(hyps) != len(refs):
        raise InputError(f"{len(hyps)} hypotheses but {len(refs)} references",
                         "give one reference (or one list of references) per hypothesis")
    if len(hyps) == 0:
        raise InputError("no hypotheses to score", "check that the prediction file is not empty")
    out = [[r] if isinstance(r, str) else list(r) for r in refs]
    for i, rs in enumerate(out):
        if not rs or not all(isinstance(r, str) for r in rs):
            raise InputError(f"example {i}: references must be a non-empty list of strings", "fix the reference file")
    return out


# ----------------------------------------------------------------------------- sacrebleu


def _bleu_tokenize(lang: str | None) -> str:
    if lang == "zh":
        return "zh"
    if lang in ("ja", "ko"):
        try:  # sacrebleu's recommended tokenizers need MeCab; characters are the fallback
            import MeCab  # noqa: F401

            return f"{lang}-mecab"
        except ImportError:
            return "char"
    return "13a"


def _streams(ref_lists: list[list[str]]) -> list[list[str | None]]:
    """Per-hypothesis reference lists -> sacrebleu's reference streams (None where one has fewer)."""
    k = max(len(r) for r in ref_lists)
    return [[r[j] if j < len(r) else None for r in ref_lists] for j in range(k)]


def _sacre(metric_name: str, hyps, refs, tokenize, lang, **kwargs):
    from sacrebleu.metrics import BLEU, CHRF

    ref_lists = _ref_lists(hyps, refs)
    lang = lang or detect_lang([r for rs in ref_lists for r in rs])
    if metric_name == "bleu":
        tokenize = tokenize or _bleu_tokenize(lang)
        metric = BLEU(tokenize=tokenize, **kwargs)
    else:
        metric = CHRF(**kwargs)
    return metric, list(hyps), _streams(ref_lists), lang, tokenize


def bleu(hyps: list[str], refs: list[str] | list[list[str]], tokenize: str | None = None,
         lang: str | None = None, **kwargs) -> dict:
    """Corpus BLEU (0-100) with its sacrebleu signature; extra kwargs go to ``sacrebleu.metrics.BLEU``."""
    metric, hyps, streams, lang, tokenize = _sacre("bleu", hyps, refs, tokenize, lang, **kwargs)
    s = metric.corpus_score(hyps, streams)
    return {"bleu": float(s.score), "signature": str(metric.get_signature()), "precisions": [float(p) for p in s.precisions],
            "bp": float(s.bp), "sys_len": int(s.sys_len), "ref_len": int(s.ref_len), "tokenize": tokenize,
            "lang": lang, "n": len(hyps)}


def chrf(hyps: list[str], refs: list[str] | list[list[str]], tokenize: str | None = None,
         lang: str | None = None, word_order: int = 0, **kwargs) -> dict:
    """Corpus chrF (0-100; ``word_order=2`` is chrF++) with its signature.

    chrF works on characters, so it needs no tokenizer and suits Chinese as is; ``tokenize`` is
    accepted for symmetry with ``bleu`` and must be None.
    """
    if tokenize is not None:
        raise InputError("chrF has no tokenizer option", "drop tokenize= for chrf (it scores character n-grams)")
    metric, hyps, streams, lang, _ = _sacre("chrf", hyps, refs, None, lang, word_order=word_order, **kwargs)
    s = metric.corpus_score(hyps, streams)
    return {"chrf": float(s.score), "signature": str(metric.get_signature()), "lang": lang, "n": len(hyps)}


def _stats_fn(metric, hyps, streams) -> Callable[[np.ndarray], float]:
    stats = np.asarray(metric._extract_corpus_statistics(hyps, streams), dtype=np.float64)

    def fn(indices: np.ndarray) -> float:
        return float(metric._compute_score_from_stats(stats[indices].sum(0).tolist()).score)

    return fn


def bleu_fn(hyps: list[str], refs: list[str] | list[list[str]], tokenize: str | None = None,
            lang: str | None = None, **kwargs) -> Callable[[np.ndarray], float]:
    """``fn(indices) -> corpus BLEU`` of that subset, from per-sentence statistics computed once.

    For ``stats.bootstrap_metric`` / ``paired_bootstrap``: the same trick as sacrebleu's own paired
    bootstrap, so a thousand resamples cost a thousand sums, not a thousand re-tokenisations.
    """
    metric, hyps, streams, _, _ = _sacre("bleu", hyps, refs, tokenize, lang, **kwargs)
    return _stats_fn(metric, hyps, streams)


def chrf_fn(hyps: list[str], refs: list[str] | list[list[str]], lang: str | None = None,
            word_order: int = 0, **kwargs) -> Callable[[np.ndarray], float]:
    """``fn(indices) -> corpus chrF`` of that subset (see ``bleu_fn``)."""
    metric, hyps, streams, _, _ = _sacre("chrf", hyps, refs, None, lang, word_order=word_order, **kwargs)
    return _stats_fn(metric, hyps, streams)


# ----------------------------------------------------------------------------- ROUGE


@lru_cache(maxsize=1)
def _porter():
    try:
        from nltk.stem import porter
    except ImportError:
        return None
    return porter.PorterStemmer()  # rouge-score's choice (NLTK_EXTENSIONS mode)


@lru_cache(maxsize=200_000)
def _stem(word: str) -> str:
    return _porter().stem(word)


def tokenize(text: str, lang: str | None = None, stem: bool = False) -> list[str]:
    """ROUGE tokens: rouge-score's rules on ASCII, one token per CJK character, other words whole.

    ``lang="en"`` is rouge-score exactly (non-ASCII dropped). Only ASCII words longer than 3
    characters are stemmed, as rouge-score does.
    """
    text = text.lower()
    if lang == "en":
        tokens = re.sub(r"[^a-z0-9]+", " ", text).split()
    else:
        tokens = word_units(text)
    if stem:
        tokens = [_stem(t) if len(t) > 3 and _ASCII_WORD_RE.match(t) else t for t in tokens]
    return tokens


def _f(hit: int, n_pred: int, n_ref: int) -> float:
    p, r = hit / max(n_pred, 1), hit / max(n_ref, 1)
    return 2 * p * r / (p + r) if p + r > 0 else 0.0


def _ngram_f(ref: list[str], hyp: list[str], n: int) -> float:
    rc = Counter(tuple(ref[i:i + n]) for i in range(len(ref) - n + 1))
    hc = Counter(tuple(hyp[i:i + n]) for i in range(len(hyp) - n + 1))
    return _f(sum((rc & hc).values()), sum(hc.values()), sum(rc.values()))


def _lcs_table(a: list[str], b: list[str]) -> list[list[int]]:
    t = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i, x in enumerate(a, 1):
        row, up = t[i], t[i - 1]
        for j, y in enumerate(b, 1):
            row[j] = up[j - 1] + 1 if x == y else (row[j - 1] if row[j - 1] > up[j] else up[j])
    return t


def _lcs_len(a: list[str], b: list[str]) -> int:
    """LCS length, bit-parallel (Allison-Dix / Hyyro): one big-int step per token of ``b``."""
    full = (1 << len(a)) - 1
    masks: dict[str, int] = {}
    for i, x in enumerate(a):
        masks[x] = masks.get(x, 0) | (1 << i)
    v = full
    for y in b:
        u = v & masks.get(y, 0)
        v = ((v + u) | (v - u)) & full
    return len(a) - v.bit_count()


def _lcs_indices(ref: list[str], hyp: list[str]) -> set[int]:
    """Indices into ``ref`` of one LCS, breaking ties like rouge-score's backtrack (for parity)."""
    t = _lcs_table(ref, hyp)
    i, j, out = len(ref), len(hyp), set()
    while i > 0 and j > 0:
        if ref[i - 1] == hyp[j - 1]:
            out.add(i - 1)
            i, j = i - 1, j - 1
        elif t[i][j - 1] > t[i - 1][j]:
            j -= 1
        else:
            i -= 1
    return out


def _lcs_f(ref: list[str], hyp: list[str]) -> float:
    if not ref or not hyp:
        return 0.0
    return _f(_lcs_len(ref, hyp), len(hyp), len(ref))


def _lcsum_f(ref_sents: list[list[str]], hyp_sents: list[list[str]]) -> float:
    """Summary-level union LCS (ROUGE paper 3.2), token hits clipped by counts as ROUGE-1.5.5 does."""
    m, n = sum(map(len, ref_sents)), sum(map(len, hyp_sents))
    if not m or not n:
        return 0.0
    ref_cnt = Counter(t for s in ref_sents for t in s)
    hyp_cnt = Counter(t for s in hyp_sents for t in s)
    hits = 0
    for r in ref_sents:
        union = sorted(set().union(*(_lcs_indices(r, h) for h in hyp_sents)))
        for tok in (r[i] for i in union):
            if ref_cnt[tok] > 0 and hyp_cnt[tok] > 0:
                hits += 1
                ref_cnt[tok] -= 1
                hyp_cnt[tok] -= 1
    return _f(hits, n, m)


ROUGE_TYPES = ("rouge1", "rouge2", "rougeL", "rougeLsum")


def rouge_per_example(hyps: list[str], refs: list[str] | list[list[str]], lang: str | None = None,
                      use_stemmer: bool = True) -> dict[str, np.ndarray]:
    """Per-example ROUGE F-measures in [0, 1] (best reference per type), for bootstrap intervals.

    ``rougeLsum`` splits summaries into sentences on newlines, as rouge-score does.
    """
    ref_lists = _ref_lists(hyps, refs)
    stem = use_stemmer and _porter() is not None
    lang = lang if lang == "en" else None  # only "en" changes the tokenizer; CJK is always per character

    def tok(s: str) -> list[str]:
        return tokenize(s, lang, stem)

    out = {k: np.zeros(len(hyps)) for k in ROUGE_TYPES}
    for i, (h, rs) in enumerate(zip(hyps, ref_lists)):
        ht = tok(h)
        hs = [tok(s) for s in h.split("\n") if s]
        best = dict.fromkeys(ROUGE_TYPES, 0.0)
        for r in rs:
            rt = tok(r)
            scores = {"rouge1": _ngram_f(rt, ht, 1), "rouge2": _ngram_f(rt, ht, 2), "rougeL": _lcs_f(rt, ht),
                      "rougeLsum": _lcsum_f([tok(s) for s in r.split("\n") if s], hs)}
            for k, v in scores.items():
                best[k] = max(best[k], v)
        for k in ROUGE_TYPES:
            out[k][i] = best[k]
    return out


def rouge(hyps: list[str], refs: list[str] | list[list[str]], lang: str | None = None,
          use_stemmer: bool = True) -> dict:
    """Mean ROUGE-1/2/L/Lsum F-measure over examples, 0-100 (the number papers report)."""
    per = rouge_per_example(hyps, refs, lang, use_stemmer)
    out: dict = {k: float(v.mean() * 100) for k, v in per.items()}
    out.update(stemmer=bool(use_stemmer and _porter() is not None),
               tokenizer="rouge-score" if lang == "en" else "rouge-score+cjk-chars", n=len(hyps))
    return out


# ----------------------------------------------------------------------------- lengths


def length_stats(hyps: list[str], refs: list[str] | list[list[str]]) -> dict:
    """Mean/median lengths of outputs and references, and their ratio, in ROUGE tokens.

    Tokens are words, or characters for CJK text (see ``tokenize``); with several references an
    example's reference length is their mean. ``ratio`` is total output over total reference length
    (BLEU's brevity penalty starts below 1).
    """
    ref_lists = _ref_lists(hyps, refs)
    hl = [len(tokenize(h)) for h in hyps]
    rl = [float(np.mean([len(tokenize(r)) for r in rs])) for rs in ref_lists]
    return {"hyp_mean": float(np.mean(hl)), "hyp_median": float(np.median(hl)),
            "ref_mean": float(np.mean(rl)), "ref_median": float(np.median(rl)),
            "ratio": float(sum(hl) / sum(rl)) if sum(rl) else float("inf"),
            "empty_hyps": int(sum(1 for n in hl if n == 0)), "n": len(hyps)}
