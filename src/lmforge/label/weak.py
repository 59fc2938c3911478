"""Weak labeling: labeling functions, their analysis table, and a label model over their votes.

A labeling function (LF) maps a text to a label or abstains. Four kinds:

- ``keyword``: a label when any word of a list occurs (whole words for Latin script, substrings
  for CJK words, which have no spaces around them);
- ``regex``: a label when any pattern matches;
- ``python``: ``"module:function"`` or ``"path/to/file.py:function"``, called on each text,
  returning a label or None (``batch: true``: called once with the list of texts);
- ``model``: any predictor ``texts -> [{"label": .., "score": ..}, ...]`` (what
  ``lmforge.tasks.predict.predict_texts`` returns for a fine-tuned model), abstaining below
  ``threshold``. This module never loads models: whoever loads the YAML passes a
  ``predictor_factory(model_dir) -> predictor`` (the CLI builds one from ``predict_texts``).

Declared in YAML::

    labels: ["0", "1"]
    functions:
      - {name: pos_words, kind: keyword, label: "1", keywords: [great, wonderful, 好]}
      - {name: not_good, kind: regex, label: "0", patterns: ["\\\\bnot (good|funny)\\\\b"]}
      - {name: mine, kind: python, function: "my_lfs:exclaims"}
      - {name: sst2_model, kind: model, model: runs/sst2/finetune/pretrained/model, threshold: 0.9}

or in Python (``keyword_lf``, ``regex_lf``, ``python_lf``, ``model_lf``). ``apply_lfs`` gives the
label matrix (class indices, -1 = abstain); ``analyze`` the per-function table (coverage, overlap,
conflict, and with gold labels correct / incorrect / empirical accuracy, as snorkel's LFAnalysis);
``label_model.DawidSkene`` and ``label_model.majority_vote`` combine the votes.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Literal, Sequence, Union

import numpy as np
from pydantic import Field

from ..config import StrictModel, load_yaml, validate
from ..errors import ConfigError, InputError
from ..text.scripts import is_cjk_char
from .label_model import ABSTAIN, DawidSkene, majority_proba, majority_vote  # noqa: F401 (re-exported)

Predictor = Callable[[list[str]], list[dict]]


@dataclass
class LabelingFunction:
    """``fn(texts) -> [label or None]``; ``emits`` are the labels it can give where known."""

    name: str
    kind: str
    fn: Callable[[list[str]], list]
    emits: list[str] = field(default_factory=list)
    errors: int = 0  # texts it raised on (it abstains there; the other functions still vote)
    first_error: str | None = None

    def failed(self, where: str, e: Exception, n: int = 1) -> None:
        self.errors += n
        if self.first_error is None:
            self.first_error = f"{where}: {type(e).__name__}: {e}"

    def __call__(self, texts: Sequence[str]) -> list:
        from ..errors import LmforgeError

        try:
            out = self.fn(list(texts))
        except LmforgeError:
            raise
        except Exception as e:  # a user's function or model: abstain here, report it by name
            self.failed(f"on a batch of {len(texts)} texts", e, len(texts))
            return [None] * len(texts)
        if len(out) != len(texts):
            raise InputError(f"labeling function '{self.name}' returned {len(out)} labels for {len(texts)} texts",
                             "return one label (or None) per text")
        return out


def _word_pattern(word: str) -> str:
    e = re.escape(word)
    return e if any(is_cjk_char(c) for c in word) else rf"(?<!\w){e}(?!\w)"


def keyword_lf(name: str, label: str, keywords: Sequence[str], case_sensitive: bool = False) -> LabelingFunction:
    if not keywords:
        raise ConfigError(f"labeling function '{name}': empty keyword list", "give at least one keyword")
    rx = re.compile("|".join(_word_pattern(w) for w in sorted(keywords, key=len, reverse=True)),
                    0 if case_sensitive else re.IGNORECASE)
    return LabelingFunction(name, "keyword", lambda texts: [label if rx.search(t) else None for t in texts], [label])


def regex_lf(name: str, label: str, patterns: Sequence[str], case_sensitive: bool = False) -> LabelingFunction:
    try:
        rxs = [re.compile(p, 0 if case_sensitive else re.IGNORECASE) for p in patterns]
    except re.error as e:
        raise ConfigError(f"labeling function '{name}': bad regular expression: {e}", "fix the pattern") from None
    if not rxs:
        raise ConfigError(f"labeling function '{name}': no patterns", "give at least one pattern")
    return LabelingFunction(name, "regex", lambda texts: [label if any(r.search(t) for r in rxs) else None
                                                          for t in texts], [label])


def load_callable(spec: str) -> Callable:
    """``module:function`` (importable) or ``path/file.py:function``."""
    mod_name, sep, attr = spec.rpartition(":")
    if not sep or not mod_name or not attr:
        raise ConfigError(f"python labeling function '{spec}' is not 'module:function'", "e.g. my_lfs:has_exclamation")
    try:
        if mod_name.endswith(".py"):
            path = Path(mod_name)
            if not path.exists():
                raise ConfigError(f"python labeling function file not found: {path}", "check the path")
            mod_spec = importlib.util.spec_from_file_location(f"_lmforge_lf_{path.stem}", path)
            module = importlib.util.module_from_spec(mod_spec)
            mod_spec.loader.exec_module(module)
        else:
            module = importlib.import_module(mod_name)
    except ImportError as e:
        raise ConfigError(f"cannot import '{mod_name}' for labeling function '{spec}': {e}",
                          "put the module on PYTHONPATH or give a path/to/file.py") from None
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise ConfigError(f"'{attr}' in {mod_name} is not a function", f"define def {attr}(text): ...")
    return fn


def python_lf(name: str, fn: Callable | str, batch: bool = False) -> LabelingFunction:
    f = load_callable(fn) if isinstance(fn, str) else fn
    if batch:
        return LabelingFunction(name, "python", lambda texts: list(f(texts)))
    lf = LabelingFunction(name, "python", lambda texts: [])

    def each(texts: list[str]) -> list:
        out = []
        for i, t in enumerate(texts):
            try:
                out.append(f(t))
            except Exception as e:  # one bad text costs one vote, not the run
                lf.failed(f"text {i + 1} ({t[:40]!r})", e)
                out.append(None)
        return out

    lf.fn = each
    return lf


def failure_lines(lfs: Sequence[LabelingFunction]) -> list[str]:
    """One warning per function that raised, by name."""
    return [f"labeling function '{lf.name}' raised on {lf.errors} text(s) and abstained there; first: "
            f"{lf.first_error}" for lf in lfs if lf.errors]


def model_lf(name: str, predictor: Predictor, threshold: float = 0.0,
             label_map: dict[str, str | None] | None = None) -> LabelingFunction:
    """A model's prediction as a vote when its score is at least ``threshold``; ``label_map``
    renames model labels to the project's (a model label mapped to None abstains)."""

    def fn(texts: list[str]) -> list:
        out = []
        for p in predictor(texts):
            lab = str(p["label"])
            if label_map is not None and lab in label_map:
                lab = label_map[lab]
            out.append(lab if lab is not None and float(p.get("score", 1.0)) >= threshold else None)
        return out

    return LabelingFunction(name, "model", fn)


# ----------------------------------------------------------------------------- YAML


class KeywordSpec(StrictModel):
    name: str
    kind: Literal["keyword"]
    label: str
    keywords: list[str] = Field(..., min_length=1)
    case_sensitive: bool = False


class RegexSpec(StrictModel):
    name: str
    kind: Literal["regex"]
    label: str
    patterns: list[str] = Field(..., min_length=1)
    case_sensitive: bool = False


class PythonSpec(StrictModel):
    name: str
    kind: Literal["python"]
    function: str = Field(..., description="module:function or path/file.py:function (a relative path is "
                          "read from the YAML file's folder)")
    batch: bool = False


class ModelSpec(StrictModel):
    name: str
    kind: Literal["model"]
    model: str = Field(..., description="a fine-tuned lmforge model directory")
    threshold: float = Field(0.0, ge=0, le=1)
    label_map: dict[str, str | None] | None = None


class LabelingConfig(StrictModel):
    labels: list[str] = Field(..., min_length=2, description="the label set, in class-index order")
    functions: list[Union[KeywordSpec, RegexSpec, PythonSpec, ModelSpec]] = Field(..., min_length=1)


def _label_strings(data: dict) -> dict:
    """YAML reads ``label: 1`` as an int; labels are names."""
    data = dict(data)
    if isinstance(data.get("labels"), list):
        data["labels"] = [str(x) for x in data["labels"]]
    fns = []
    for f in data.get("functions") or []:
        if isinstance(f, dict):
            f = dict(f)
            if "label" in f and f["label"] is not None:
                f["label"] = str(f["label"])
            if isinstance(f.get("keywords"), list):
                f["keywords"] = [str(k) for k in f["keywords"]]
            if isinstance(f.get("label_map"), dict):
                f["label_map"] = {str(k): (None if v is None else str(v)) for k, v in f["label_map"].items()}
        fns.append(f)
    if "functions" in data:
        data["functions"] = fns
    return data


def build_lfs(cfg: LabelingConfig, predictor_factory: Callable[[str], Predictor] | None = None,
              base_dir: Path | None = None) -> list[LabelingFunction]:
    names = [s.name for s in cfg.functions]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ConfigError(f"labeling function names repeated: {dup}", "give every function its own name")
    out = []
    for s in cfg.functions:
        if isinstance(s, (KeywordSpec, RegexSpec)) and s.label not in cfg.labels:
            raise ConfigError(f"labeling function '{s.name}' emits '{s.label}', not in labels {cfg.labels}",
                              "fix the label or add it to labels")
        if isinstance(s, KeywordSpec):
            out.append(keyword_lf(s.name, s.label, s.keywords, s.case_sensitive))
        elif isinstance(s, RegexSpec):
            out.append(regex_lf(s.name, s.label, s.patterns, s.case_sensitive))
        elif isinstance(s, PythonSpec):
            spec = s.function
            mod, _, attr = spec.rpartition(":")
            if base_dir is not None and not Path(mod).is_absolute():
                if mod.endswith(".py"):
                    spec = f"{base_dir / mod}:{attr}"
                elif (base_dir / f"{mod.replace('.', '/')}.py").exists():  # a module beside the YAML file
                    spec = f"{base_dir / (mod.replace('.', '/') + '.py')}:{attr}"
            out.append(python_lf(s.name, spec, s.batch))
        else:
            if predictor_factory is None:
                raise ConfigError(f"labeling function '{s.name}' needs a model, and no model loader was given",
                                  "run it through `lmforge label weak`, or pass predictor_factory")
            out.append(model_lf(s.name, predictor_factory(s.model), s.threshold, s.label_map))
    return out


def load_lfs(path: str | Path, predictor_factory: Callable[[str], Predictor] | None = None
             ) -> tuple[list[str], list[LabelingFunction]]:
    """(labels, labeling functions) from a YAML file."""
    cfg = validate(LabelingConfig, _label_strings(load_yaml(path)), str(path))
    return cfg.labels, build_lfs(cfg, predictor_factory, Path(path).parent)


# ----------------------------------------------------------------------------- apply + analysis


def apply_lfs(lfs: Sequence[LabelingFunction], texts: Sequence[str], labels: Sequence[str]) -> np.ndarray:
    """(n, m) label matrix of class indices into ``labels``, -1 where a function abstains."""
    index = {y: i for i, y in enumerate(labels)}
    L = np.full((len(texts), len(lfs)), ABSTAIN, dtype=np.int64)
    for j, lf in enumerate(lfs):
        for i, y in enumerate(lf(texts)):
            if y is None:
                continue
            k = index.get(str(y))
            if k is None:
                raise InputError(f"labeling function '{lf.name}' returned '{y}', not one of {list(labels)}",
                                 "return a declared label or None to abstain")
            L[i, j] = k
    return L


def analyze(L: np.ndarray, names: Sequence[str], labels: Sequence[str], gold=None) -> list[dict]:
    """One row per function: polarity (labels it gave), coverage (share of rows it labels),
    overlaps (share it labels together with another function), conflicts (share it labels where
    another function gives a different label); with ``gold`` (class indices, -1 = unknown):
    correct, incorrect and empirical accuracy over the rows it labels. Shares are of all rows."""
    L = np.asarray(L)
    n = max(L.shape[0], 1)
    voted = L >= 0
    n_votes = voted.sum(1)
    lo = np.where(voted, L, np.iinfo(np.int64).max).min(1)
    hi = np.where(voted, L, -1).max(1)
    conflicted = voted.any(1) & (lo != hi)
    rows = []
    for j, name in enumerate(names):
        v = voted[:, j]
        row = {"name": name, "polarity": [labels[k] for k in sorted(set(L[v, j].tolist()))],
               "coverage": float(v.sum() / n), "overlaps": float((v & (n_votes > 1)).sum() / n),
               "conflicts": float((v & conflicted).sum() / n)}
        if gold is not None:
            g = np.asarray(gold)
            known = v & (g >= 0)
            correct = int((L[known, j] == g[known]).sum())
            row.update(correct=correct, incorrect=int(known.sum()) - correct,
                       emp_acc=correct / int(known.sum()) if known.any() else float("nan"))
        rows.append(row)
    return rows


def totals(L: np.ndarray) -> dict:
    """Coverage of any function, share of rows with 2+ votes, share with a conflict."""
    L = np.asarray(L)
    voted = L >= 0
    n = max(L.shape[0], 1)
    lo = np.where(voted, L, np.iinfo(np.int64).max).min(1)
    hi = np.where(voted, L, -1).max(1)
    return {"coverage": float(voted.any(1).sum() / n), "overlap": float((voted.sum(1) > 1).sum() / n),
            "conflict": float((voted.any(1) & (lo != hi)).sum() / n)}


def format_table(rows: list[dict]) -> str:
    """The analysis as a markdown table."""
    gold = "emp_acc" in rows[0] if rows else False
    head = ["function", "polarity", "coverage", "overlaps", "conflicts"] + (["correct", "incorrect", "emp. acc."]
                                                                            if gold else [])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["name"], ",".join(r["polarity"]), f"{r['coverage']:.3f}", f"{r['overlaps']:.3f}",
                 f"{r['conflicts']:.3f}"]
        if gold:
            acc = r["emp_acc"]
            cells += [str(r["correct"]), str(r["incorrect"]), "-" if acc != acc else f"{acc:.3f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def combine(L: np.ndarray, n_classes: int, method: Literal["dawid-skene", "majority"] = "dawid-skene"
            ) -> np.ndarray:
    """(n, K) probabilities from the votes: the Dawid-Skene posterior, or vote shares."""
    if method == "majority":
        return majority_proba(L, n_classes)
    if method != "dawid-skene":
        raise ConfigError(f"unknown label model '{method}'", "use dawid-skene or majority")
    return DawidSkene(n_classes).fit(L).predict_proba(L)


def label_rows(ids: Sequence[str], texts: Sequence[str], L: np.ndarray, probs: np.ndarray, labels: Sequence[str],
               output: Literal["hard", "probs"] = "hard", keep_uncovered: bool = False) -> list[dict]:
    """Training rows ``{"id", "text", "label"}`` (+ ``"probs": {label: p}`` for probabilistic
    output). Rows no function voted on are left out unless ``keep_uncovered``."""
    covered = (np.asarray(L) >= 0).any(1)
    out = []
    for i, (rid, text) in enumerate(zip(ids, texts)):
        if not covered[i] and not keep_uncovered:
            continue
        row = {"id": rid, "text": text, "label": labels[int(probs[i].argmax())]}
        if output == "probs":
            row["probs"] = {y: round(float(p), 6) for y, p in zip(labels, probs[i])}
        out.append(row)
    return out


def compare_on_dev(L_fit: np.ndarray, L_dev: np.ndarray, gold, n_classes: int, seed: int = 0) -> dict:
    """Dawid-Skene (fit without labels on ``L_fit``) against majority vote on a labeled dev set.

    Both are scored on the same dev rows, those at least one function voted on (``coverage``);
    majority-vote ties are broken at random (``mv_ties`` counts them). ``accuracy_all`` scores
    every dev row: Dawid-Skene labels uncovered rows too (abstaining everywhere is evidence), and
    majority vote gives them the most common majority label of ``L_fit``."""
    gold = np.asarray(gold)
    covered = (np.asarray(L_dev) >= 0).any(1)
    ds = DawidSkene(n_classes).fit(L_fit)
    ds_pred = ds.predict(L_dev, cover_all=True)
    mv_abst = majority_vote(L_dev, n_classes, "abstain")
    mv_pred = majority_vote(L_dev, n_classes, "random", seed)
    fit_mv = majority_vote(L_fit, n_classes, "abstain")
    fallback = int(np.bincount(fit_mv[fit_mv >= 0], minlength=n_classes).argmax()) if (fit_mv >= 0).any() else 0
    mv_all = np.where(mv_pred >= 0, mv_pred, fallback)

    def acc(pred, rows):
        return float((pred[rows] == gold[rows]).mean()) if rows.any() else float("nan")

    return {"n": int(len(gold)), "coverage": float(covered.mean()), "mv_ties": int(((mv_abst < 0) & covered).sum()),
            "dawid_skene": {"accuracy_covered": acc(ds_pred, covered), "accuracy_all": acc(ds_pred, np.ones_like(covered)),
                            "iterations": ds.n_iter_, "prior": ds.prior_.round(4).tolist(),
                            "estimated_accuracy": ds.accuracies().round(4).tolist()},
            "majority_vote": {"accuracy_covered": acc(mv_pred, covered),
                              "accuracy_all": acc(mv_all, np.ones_like(covered))}}
