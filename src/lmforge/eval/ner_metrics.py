"""Entity-level NER metrics with seqeval, and our own span extraction that agrees with it.

Two modes, named so they are not mixed up:

- ``strict``: seqeval ``mode="strict"`` with the scheme class. An entity counts only if it is
  well-formed in that scheme (IOB2: starts with B-; BIOES: B-..E- or S-). ``I-PER`` after ``O`` is
  no entity in IOB2.
- ``conlleval``: seqeval's default mode, which reproduces the CoNLL-2000 ``conlleval`` script: it is
  lenient, any tag that changes type or follows ``O`` opens a chunk, so ``I-PER`` after ``O`` is a
  PER entity. The scheme does not matter here (conlleval reads B/I/E/S tags alike).

``spans_from_tags`` is a small re-implementation of both extractions (tested against seqeval on
random, ill-formed sequences). It lets bootstrap resampling recount entities per sentence instead of
rerunning seqeval a thousand times; ``entity_metrics`` itself calls seqeval.
"""

from __future__ import annotations

from collections import Counter
from typing import Callable

import numpy as np

from ..errors import InputError

SCHEMES = {"IOB2": "IOB2", "IOB1": "IOB1", "BIOES": "IOBES", "IOBES": "IOBES"}
MODES = ("strict", "conlleval")
_ALLOWED = {"IOB2": set("BIO"), "IOB1": set("BIO"), "IOBES": set("BIOES")}


def _scheme(scheme: str) -> str:
    key = scheme.upper()
    if key not in SCHEMES:
        raise InputError(f"unknown tagging scheme {scheme!r}", f"use one of {sorted(set(SCHEMES))}")
    return SCHEMES[key]


def _mode(mode: str) -> str:
    if mode not in MODES:
        raise InputError(f"unknown NER evaluation mode {mode!r}", f"use one of {list(MODES)}")
    return mode


# ----------------------------------------------------------------------------- strict (per scheme)


def _split(tag: str) -> tuple[str, str]:
    """'B-PER' -> ('B', 'PER'); a tag without a type gets '_' as seqeval does."""
    return tag[0], tag[1:].strip("-") or "_"


def _strict_start(scheme: str, prev: tuple[str, str], cur: tuple[str, str]) -> bool:
    (pp, pt), (cp, ct) = prev, cur
    if scheme == "IOB2":
        return cp == "B"
    if scheme == "IOBES":
        return cp in "BS"
    # IOB1: I opens a chunk unless it continues one of the same type; B only splits two same-type chunks
    if cp == "I":
        return pp in "OB" or (pp == "I" and pt != ct)
    return cp == "B" and pp in "IB" and pt == ct


def _strict_inside(scheme: str, prev: tuple[str, str], cur: tuple[str, str]) -> bool:
    (pp, pt), (cp, ct) = prev, cur
    if pt != ct:
        return False
    if scheme == "IOBES":
        return pp in "BI" and cp in "IE"
    return pp in "BI" and cp == "I"


def _strict_end(scheme: str, prev: tuple[str, str], cur: tuple[str, str]) -> bool:
    """Is ``prev`` a legal last token of a chunk, given the token after it?"""
    (pp, pt), (cp, ct) = prev, cur
    if scheme == "IOB2":
        return pp in "BI"  # whatever follows; the inside rule already stopped at the right place
    if scheme == "IOBES":
        return pp in "ES"
    # IOB1 (seqeval's table): B followed by B of another type is not a legal end
    if pp == "B" and cp == "B":
        return pt == ct
    return pp in "BI"


def _strict_spans(tags: list[str], scheme: str) -> list[tuple[str, int, int]]:
    allowed = _ALLOWED[scheme]
    toks = []
    for i, t in enumerate(tags):
        if not t or t[0] not in allowed:
            raise InputError(f"tag {t!r} at token {i} is not valid in the {scheme} scheme",
                             f"use tags starting with one of {sorted(allowed)}, or pick the scheme the data uses")
        toks.append(_split(t))
    toks.append(("O", "_"))  # a virtual O closes the last chunk
    spans, i, prev = [], 0, ("O", "_")
    while i < len(toks):
        if _strict_start(scheme, prev, toks[i]):
            j = i + 1
            while _strict_inside(scheme, toks[j - 1], toks[j]):
                j += 1
            if _strict_end(scheme, toks[j - 1], toks[j]):
                spans.append((toks[i][1], i, j))
            i = j  # a rejected chunk's tokens are not re-read as starts (seqeval does the same)
        else:
            i += 1
        prev = toks[i - 1]
    return spans


# ----------------------------------------------------------------------------- conlleval (lenient)


def _lenient_split(tag: str) -> tuple[str, str]:
    return tag[0], tag[1:].split("-", maxsplit=1)[-1] or "_"


def _lenient_spans(tags: list[str]) -> list[tuple[str, int, int]]:
    """conlleval's startOfChunk/endOfChunk rules (as ported in seqeval's ``get_entities``)."""
    spans, begin = [], 0
    prev_tag, prev_type = "O", ""
    for i, chunk in enumerate(list(tags) + ["O"]):
        tag, type_ = _lenient_split(chunk)
        end = (prev_tag in "ES" or (prev_tag in "BI" and tag in "BSO")
               or (prev_tag not in ("O", ".") and prev_type != type_))
        start = (tag in "BS" or (prev_tag in "ESO" and tag in "EI")
                 or (tag not in ("O", ".") and prev_type != type_))
        if end:
            spans.append((prev_type, begin, i))
        if start:
            begin = i
        prev_tag, prev_type = tag, type_
    return spans


def spans_from_tags(tags: list[str], scheme: str = "IOB2", mode: str = "strict") -> list[tuple[str, int, int]]:
    """Entities as (type, start, end) token indices, end exclusive, as seqeval finds them in ``mode``."""
    if _mode(mode) == "conlleval":
        return _lenient_spans(tags)
    return _strict_spans(list(tags), _scheme(scheme))


# ----------------------------------------------------------------------------- metrics


def _check(true_tags: list[list[str]], pred_tags: list[list[str]]) -> None:
    if len(true_tags) != len(pred_tags):
        raise InputError(f"{len(true_tags)} gold sentences but {len(pred_tags)} predicted",
                         "predict exactly one tag sequence per gold sentence")
    for i, (t, p) in enumerate(zip(true_tags, pred_tags)):
        if len(t) != len(p):
            raise InputError(f"sentence {i}: {len(t)} gold tags but {len(p)} predicted",
                             "predict one tag per gold token (align sub-word predictions to words first)")


def entity_metrics(true_tags: list[list[str]], pred_tags: list[list[str]], scheme: str = "IOB2",
                   mode: str = "strict") -> dict:
    """Micro entity P/R/F1 and per-type scores with seqeval, in the named ``mode`` (see module doc)."""
    from seqeval.metrics import classification_report
    from seqeval import scheme as seqeval_scheme

    _check(true_tags, pred_tags)
    scheme_name, mode = _scheme(scheme), _mode(mode)
    true_tags, pred_tags = [list(s) for s in true_tags], [list(s) for s in pred_tags]
    if mode == "strict":
        for which, seqs in (("gold", true_tags), ("predicted", pred_tags)):
            for i, s in enumerate(seqs):
                try:
                    _strict_spans(s, scheme_name)
                except InputError as e:
                    raise InputError(f"{which} sentence {i}: {e.message}", e.hint) from None
        kwargs = {"mode": "strict", "scheme": getattr(seqeval_scheme, scheme_name)}
    else:
        kwargs = {}
    n_true = sum(len(spans_from_tags(s, scheme_name, mode)) for s in true_tags)
    n_pred = sum(len(spans_from_tags(s, scheme_name, mode)) for s in pred_tags)
    out = {"precision": 0.0, "recall": 0.0, "entity_f1": 0.0, "per_type": {}, "n_sentences": len(true_tags),
           "n_true": n_true, "n_pred": n_pred, "scheme": scheme_name, "mode": mode}
    if n_true == 0 and n_pred == 0:
        return out  # seqeval cannot report on no entities at all
    rep = classification_report(true_tags, pred_tags, output_dict=True, zero_division=0, **kwargs)
    micro = rep.pop("micro avg")
    for key in ("macro avg", "weighted avg"):
        rep.pop(key, None)
    out.update(precision=float(micro["precision"]), recall=float(micro["recall"]),
               entity_f1=float(micro["f1-score"]))
    out["per_type"] = {t: {"precision": float(v["precision"]), "recall": float(v["recall"]),
                           "f1": float(v["f1-score"]), "support": int(v["support"])} for t, v in sorted(rep.items())}
    return out


def entity_counts(true_tags: list[list[str]], pred_tags: list[list[str]], scheme: str = "IOB2",
                  mode: str = "strict") -> np.ndarray:
    """Per-sentence (true positives, predicted, gold) entity counts, shape (N, 3): sufficient for micro F1."""
    _check(true_tags, pred_tags)
    rows = []
    for t, p in zip(true_tags, pred_tags):
        ts, ps = Counter(spans_from_tags(t, scheme, mode)), Counter(spans_from_tags(p, scheme, mode))
        rows.append((sum((ts & ps).values()), sum(ps.values()), sum(ts.values())))
    return np.array(rows, dtype=np.int64).reshape(-1, 3)


def entity_f1_fn(true_tags: list[list[str]], pred_tags: list[list[str]], scheme: str = "IOB2",
                 mode: str = "strict") -> Callable[[np.ndarray], float]:
    """``fn(indices) -> micro entity F1`` over those sentences, for ``stats.bootstrap_metric``."""
    counts = entity_counts(true_tags, pred_tags, scheme, mode)

    def fn(indices: np.ndarray) -> float:
        tp, n_pred, n_true = counts[indices].sum(0)
        return float(2 * tp / (n_pred + n_true)) if n_pred + n_true else 0.0

    return fn
