"""Token classification (NER): CoNLL column files and character-per-line BIO files (Chinese).

An example keeps its tokens (words, or characters), the text made from them (words joined by one
space, characters without one) and each token's character offsets into that text. The model labels
the first sub-token of each word (-100 elsewhere); an optional CRF runs over those first sub-tokens,
i.e. over words. Predictions are entity spans with character offsets, plus one tag per token in the
file's scheme, so seqeval scores them against the file's own tags (``eval_mode`` strict or
conlleval, see eval/ner_metrics.py).

Gold entities are what seqeval finds in the file's tags in the chosen mode; the model is trained
on those entities re-tagged in ``train_scheme`` (IOB2 or BIOES), whatever the file's scheme. So an
``I-`` tag after ``O`` in an IOB2 file (counted as a warning) is no entity in strict mode and opens
one in conlleval mode, in training as in scoring.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field

from ..config import StrictModel
from ..errors import ConfigError, InputError
from ..models.heads import TokenClassifier
from .base import Task, WarningCounter, attention_mask, pad_batch, register, require_examples

_CJK = re.compile(r"[\u3000-\u303f\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff00-\uffef]")
_WORD = re.compile(r"\w+(?:[-'’.]\w+)*|[^\w\s]", re.UNICODE)
_PREFIXES = {"IOB2": ("B", "I"), "BIOES": ("B", "I", "E", "S")}
_FILE_LETTERS = {"IOB2": "BI", "IOB1": "BI", "BIOES": "BIES"}


class Holdout(StrictModel):
    """Every ``every``-th sentence of a training file, counting from ``offset``, is held out."""

    every: int = Field(10, ge=2)
    offset: int = Field(0, ge=0)


class NERConfig(StrictModel):
    kind: Literal["ner"] = "ner"
    format: Literal["auto", "words", "chars"] = Field(
        "auto", description="words: text = tokens joined by spaces; chars: one character per token, joined "
                            "without spaces (Chinese); auto: chars when every token is one character, mostly CJK")
    token_column: int = Field(0, description="column of the token (0 = first)")
    tag_column: int = Field(-1, description="column of the tag (-1 = last)")
    delimiter: str | None = Field(None, description="column separator; unset: a tab if the line has one, "
                                  "else any whitespace")
    scheme: Literal["IOB2", "IOB1", "BIOES"] = Field("IOB2", description="the file's tag scheme (CoNLL-2003's "
                                                     "original eng.* files are IOB1)")
    eval_mode: Literal["strict", "conlleval"] = Field("strict", description="seqeval strict (entities must be "
                                                      "well-formed in the scheme) or conlleval (lenient)")
    train_scheme: Literal["IOB2", "BIOES"] = Field("IOB2", description="tags the model learns")
    max_len: int = Field(256, ge=8, description="sub-tokens per sentence incl. specials; words past it are "
                         "predicted O (a counted warning)")
    dropout: float = Field(0.1, ge=0, lt=1)
    crf: bool = Field(False, description="a CRF layer over words")
    constrained: bool = Field(True, description="decode with Viterbi forbidding invalid transitions "
                              "(O -> I-X); softmax and CRF models alike")
    holdout: Holdout | None = Field(None, description="hold sentences of the training file out for testing: "
                                    "finetune reads the rest; reading the same file after training (evaluate) "
                                    "gives the held-out sentences")
    holdout_part: Literal["auto", "rest", "heldout", "all"] = Field(
        "auto", description="which part of a file `holdout` applies to (auto: see holdout)")


@register
class NER(Task):
    kind = "ner"
    headline = ("entity_f1", "precision", "recall")

    def __init__(self, cfg: NERConfig, state: dict | None = None):
        super().__init__(cfg, state)
        self.warnings = WarningCounter()
        self._train_files: list[str] = []

    @property
    def labels(self) -> list[str]:
        return self.state["labels"]

    # -- data ---------------------------------------------------------------------------------
    def read(self, path) -> list[dict]:
        path = str(path)
        if not Path(path).is_file():
            raise InputError(f"NER file not found: {path}", "check finetune.data.* / --data")
        sentences = self._read_columns(path)
        require_examples(sentences, path)
        chars = self._is_chars(sentences)
        sentences = self._select(sentences, path)
        out = []
        for line, tokens, tags in sentences:
            self._check_tags(tags, path, line)
            out.append(_example(f"{Path(path).name}:{line}", tokens, "" if chars else " ", tags=tags, line=line))
        return out

    def _read_columns(self, path: str) -> list[tuple[int, list[str], list[str]]]:
        """(first line, tokens, tags) per sentence; blank lines and -DOCSTART- lines separate them."""
        from ..data.io import DecodeError, open_text

        cfg = self.cfg
        sentences, tokens, tags, start = [], [], [], 0
        n_cols, first = None, 0
        try:
            stream, _ = open_text(path)
        except DecodeError as e:
            if Path(path).stat().st_size == 0:
                return []
            raise InputError(f"{path}: cannot decode the file ({e})", "save it as UTF-8 text") from None
        lineno = 0
        try:
            with stream:
                for lineno, raw in enumerate(stream, 1):
                    line = raw.rstrip("\r\n")
                    if not line.strip():
                        cols = []
                    elif cfg.delimiter is not None:
                        cols = line.split(cfg.delimiter)
                    else:
                        cols = line.split("\t") if "\t" in line else line.split()
                    if not cols or cols[0] == "-DOCSTART-":
                        if tokens:
                            sentences.append((start, tokens, tags))
                            tokens, tags = [], []
                        continue
                    if n_cols is None:
                        n_cols, first = len(cols), lineno
                        if n_cols < 2:
                            raise InputError(f"{path}:{lineno}: one column; an NER line needs a token and a tag",
                                             "write `token<TAB>tag` (or CoNLL's `token POS chunk tag`) per line")
                    elif len(cols) != n_cols:
                        raise InputError(f"{path}:{lineno}: {len(cols)} columns, but line {first} has {n_cols}",
                                         "give every token line the same columns (a space inside a token? set "
                                         "finetune.task.delimiter, e.g. '\\t')")
                    try:
                        tok, tag = cols[cfg.token_column], cols[cfg.tag_column].strip()
                    except IndexError:
                        raise InputError(f"{path}:{lineno}: no column {cfg.token_column}/{cfg.tag_column} in "
                                         f"{n_cols} columns", "fix finetune.task.token_column/tag_column") from None
                    if not _valid_tag(tag, cfg.scheme):
                        raise InputError(f"{path}:{lineno}: tag {tag!r} is not a {cfg.scheme} tag",
                                         f"use O or {'/'.join(_FILE_LETTERS[cfg.scheme])}-TYPE tags, or set "
                                         "finetune.task.scheme / tag_column to match the file")
                    if not tokens:
                        start = lineno
                    tokens.append(tok)
                    tags.append(tag)
        except UnicodeDecodeError as e:
            raise InputError(f"{path}:{lineno + 1}: undecodable bytes ({e.reason})", "save the file as UTF-8") from None
        if tokens:
            sentences.append((start, tokens, tags))
        return sentences

    def _is_chars(self, sentences) -> bool:
        if self.cfg.format != "auto":
            return self.cfg.format == "chars"
        sample = [t for _, toks, _ in sentences[:500] for t in toks]
        return all(len(t) == 1 for t in sample) and sum(bool(_CJK.match(t)) for t in sample) > len(sample) / 2

    def _select(self, sentences, path: str):
        """Apply ``holdout``: the training part before fitting, the held-out part afterwards."""
        h, part = self.cfg.holdout, self.cfg.holdout_part
        if h is None or part == "all":
            return sentences
        if part == "auto":
            from ..runs import file_sha256

            sha = file_sha256(path)
            if "labels" not in self.state:
                part = "rest"
                self._train_files.append(sha)
            elif sha in self.state.get("holdout_files", []):
                part = "heldout"
            else:
                return sentences
        keep = [s for i, s in enumerate(sentences) if (i % h.every == h.offset % h.every) == (part == "heldout")]
        if not keep:
            raise InputError(f"{path}: holdout every={h.every} offset={h.offset} leaves no {part} sentences "
                             f"of {len(sentences)}", "lower finetune.task.holdout.every")
        return keep

    def _check_tags(self, tags: list[str], path: str, line: int) -> None:
        """Count I-/E- tags that continue no entity (IOB2/BIOES); IOB1 starts entities with I-."""
        if self.cfg.scheme == "IOB1":
            return
        prev = "O"
        for k, t in enumerate(tags):
            if t[0] in "IE" and (prev == "O" or prev[0] in "ES" or prev[2:] != t[2:]):
                how = "not an entity (seqeval strict)" if self.cfg.eval_mode == "strict" else \
                    "starts an entity (conlleval)"
                self.warnings.add(f"I- tag with no entity before it: {how}", f"{path}:{line + k}")
            prev = t

    def fit(self, examples: list[dict]) -> None:
        types = sorted({s[0] for e in examples for s in self._gold_spans(e)})
        if not types:
            raise InputError("the training data has no entities", "check finetune.task.scheme/tag_column")
        pre = _PREFIXES[self.cfg.train_scheme]
        self.state["labels"] = ["O"] + [f"{p}-{t}" for t in types for p in pre]
        self.state["types"] = types
        self.state["chars"] = bool(examples and examples[0].get("sep") == "")
        if self.cfg.holdout is not None:
            self.state["holdout_files"] = sorted(set(self._train_files))

    def check(self, examples: list[dict], path: str) -> list[str]:
        known = set(self.state.get("types", []))
        seen = Counter(s[0] for e in examples if "tags" in e for s in self._gold_spans(e))
        unseen = sorted(set(seen) - known)
        if unseen:
            n = sum(seen[t] for t in unseen)
            return [f"{path}: {n} entities of types never seen in training: {unseen[:10]} (they count as misses)"]
        return []

    def example(self, value, i: int = 0) -> dict:
        """Raw text (or {"tokens": [...]} / {"text": ...}) -> an example; characters for Chinese models."""
        if isinstance(value, dict) and "tokens" in value:
            return _example(str(value.get("id", i)), [str(t) for t in value["tokens"]],
                            "" if self.state.get("chars") else " ")
        text = str(value.get("text", "")) if isinstance(value, dict) else str(value)
        rid = str(value.get("id", i)) if isinstance(value, dict) else str(i)
        if self.state.get("chars"):
            spans = [(m.start(), m.end()) for m in re.finditer(r"\S", text)]
        else:
            spans = [(m.start(), m.end()) for m in _WORD.finditer(text)]
        return {"id": rid, "text": text, "tokens": [text[a:b] for a, b in spans], "offsets": spans}

    def _gold_spans(self, example: dict) -> list[tuple[str, int, int]]:
        from ..eval.ner_metrics import spans_from_tags

        return spans_from_tags(example["tags"], self.cfg.scheme, self.cfg.eval_mode)

    def encode(self, example: dict, tok) -> dict:
        words = example["tokens"]
        enc = tok.encode_full(words, is_split_into_words=True, add_special_tokens=True, max_length=self.cfg.max_len) \
            if words else None
        ids = enc.ids if enc is not None else []
        index = {y: j for j, y in enumerate(self.labels)}
        target = [-100] * len(words)  # raw input (predict): no tags, no loss
        if "tags" in example:
            target = [index["O"]] * len(words)
            for typ, a, b in self._gold_spans(example):
                for k, tag in enumerate(_tags_for(typ, b - a, self.cfg.train_scheme)):
                    target[a + k] = index.get(tag, -100)  # a type never seen in training: no loss there
        first, kept, labels = [], [], [-100] * len(ids)
        seen: set[int] = set()
        for pos, w in enumerate(enc.word_ids if enc is not None else []):
            if w is None or w in seen or (enc.sequence_ids[pos] not in (0, None)):
                continue
            seen.add(w)
            first.append(pos)
            kept.append(w)
            labels[pos] = target[w]
        if len(kept) < len(words):
            missing = {w for _, w in enc.missing_words} if enc is not None else set(range(len(words)))
            if len(kept) + len(missing) < len(words):
                self.warnings.add(f"sentence longer than max_len={self.cfg.max_len} sub-tokens: words past it are "
                                  "predicted O (raise finetune.task.max_len up to the model's context)", example["id"])
            if missing:
                self.warnings.add("words with no sub-token (e.g. a lone control character): predicted O",
                                  example["id"])
        if not ids:
            ids = [tok.pad_id or 0]
            labels = [-100]
        return {"input_ids": ids, "labels": labels, "first": first, "words": kept,
                "word_labels": [target[w] for w in kept], "n_words": len(words),
                "offsets": [list(o) for o in example["offsets"]], "text": example["text"]}

    def collate(self, features: list[dict], tok) -> dict[str, torch.Tensor]:
        seqs = [f["input_ids"] for f in features]
        firsts = [f["first"] for f in features]
        batch = {"input_ids": pad_batch(seqs, tok.pad_id or 0), "attention_mask": attention_mask(seqs),
                 "labels": pad_batch([f["labels"] for f in features], -100),
                 "first": pad_batch(firsts, 0), "word_mask": attention_mask(firsts).bool(),
                 "word_labels": pad_batch([f["word_labels"] for f in features], -100)}
        if all("teacher" in f for f in features):  # distillation: the teacher's per-word logits (tasks/distill.py)
            rows = torch.zeros(len(features), batch["first"].shape[1], len(self.labels))
            for b, f in enumerate(features):
                if f["teacher"]:
                    rows[b, : len(f["teacher"])] = torch.tensor(f["teacher"])
            batch["teacher"] = rows
            batch["teacher_mask"] = pad_batch([f["teacher_mask"] for f in features], 0).bool()
        return batch

    # -- model --------------------------------------------------------------------------------
    def build_model(self, body, tok) -> TokenClassifier:
        ctx = getattr(body.config, "block_size", None)  # recurrent bodies have no fixed context
        if ctx is not None and self.cfg.max_len > ctx:
            raise ConfigError(f"finetune.task.max_len={self.cfg.max_len} is longer than the body's context "
                              f"({ctx} positions)", f"set finetune.task.max_len to at most {ctx}")
        return TokenClassifier(body, self.labels, self.cfg.dropout, self.cfg.crf)

    def _word_emissions(self, model, batch) -> tuple[torch.Tensor, TokenClassifier]:
        em = model(batch["input_ids"], batch["attention_mask"]).float()  # (B, T, C)
        idx = batch["first"].unsqueeze(-1).expand(-1, -1, em.shape[-1])
        return em, em.gather(1, idx)  # (B, W, C): the first sub-token of each word

    def loss(self, model, batch):
        """Token cross-entropy (or the CRF's NLL) over labelled words; while a student trains, plus
        the KL to the teacher's per-word logits on the emissions (a CRF's too: its transition scores
        have no per-word teacher counterpart)."""
        head = getattr(model, "module", model)
        em, words = self._word_emissions(model, batch)
        labels, wl = batch["labels"], batch["word_labels"]
        if head.crf is None:
            loss = F.cross_entropy(em.flatten(0, 1), labels.flatten(), ignore_index=-100, reduction="sum")
            count = int((labels != -100).sum())
        else:
            loss = head.crf.nll(words, wl.clamp_min(0), batch["word_mask"] & (wl != -100)).sum()
            count = int((wl != -100).sum())
        distill = getattr(self, "distill", None)  # (temperature, alpha) while a student trains
        if distill is not None and "teacher" in batch and model.training:
            from .distill import distill_loss

            keep = (batch["teacher_mask"] & batch["word_mask"] & (wl != -100)).to(words.device)
            loss = distill_loss(words[keep], batch["teacher"].to(words.device)[keep], loss, count, *distill)
        return loss, count

    def count(self, batch) -> int:
        return int((batch["labels"] != -100).sum())

    @torch.no_grad()
    def predict(self, model, batch, tok, features) -> list[dict]:
        from ..eval.ner_metrics import spans_from_tags
        from ..models.crf import scheme_constraints, viterbi

        head = getattr(model, "module", model)
        _, words = self._word_emissions(model, batch)
        mask = batch["word_mask"]
        allowed = scheme_constraints(self.labels, self.cfg.train_scheme) if self.cfg.constrained else None
        if head.crf is not None:
            paths = head.crf.decode(words, mask, allowed)
        elif allowed is not None:
            paths = viterbi(words.log_softmax(-1), mask, allowed=allowed)
        else:
            paths = [row[: int(m.sum())] for row, m in zip(words.argmax(-1).tolist(), mask)]
        probs = words.softmax(-1).cpu().numpy()
        out = []
        for b, (f, path) in enumerate(zip(features, paths)):
            tags, conf = ["O"] * f["n_words"], [1.0] * f["n_words"]
            for k, (w, j) in enumerate(zip(f["words"], path)):
                tags[w], conf[w] = self.labels[j], float(probs[b, k, j])
            spans = spans_from_tags(tags, self.cfg.train_scheme, self.cfg.eval_mode)
            ents = [_entity(t, a, z, f["offsets"], f["text"], score=float(np.mean(conf[a:z]))) for t, a, z in spans]
            out.append({"entities": ents, "tags": _tags_from_spans(spans, f["n_words"], self.cfg.scheme)})
        return out

    # -- scoring ------------------------------------------------------------------------------
    def metrics(self, predictions: list[dict], examples: list[dict]) -> dict:
        from ..eval.ner_metrics import entity_metrics

        return entity_metrics([e["tags"] for e in examples], [p["tags"] for p in predictions],
                              self.cfg.scheme, self.cfg.eval_mode)

    def subset_scores(self, predictions, examples, index_sets):
        """Micro P/R/F1 from per-sentence (tp, predicted, gold) entity counts: one seqeval-equivalent
        extraction, then sums per resample."""
        from ..eval.ner_metrics import entity_counts

        counts = entity_counts([e["tags"] for e in examples], [p["tags"] for p in predictions],
                               self.cfg.scheme, self.cfg.eval_mode)
        out: dict[str, list[float]] = {h: [] for h in self.headline}
        for idx in index_sets:
            tp, n_pred, n_true = (int(x) for x in counts[np.asarray(idx)].sum(0))
            p = tp / n_pred if n_pred else 0.0
            r = tp / n_true if n_true else 0.0
            out["precision"].append(p)
            out["recall"].append(r)
            out["entity_f1"].append(2 * p * r / (p + r) if p + r else 0.0)
        return out

    def reference(self, example: dict):
        if "tags" not in example:
            return None
        return [_entity(t, a, z, example["offsets"], example["text"]) for t, a, z in self._gold_spans(example)]

    def example_errors(self, prediction: dict, example: dict) -> dict | None:
        gold = {(e["type"], e["start"], e["end"]): e for e in self.reference(example) or []}
        pred = {(e["type"], e["start"], e["end"]): e for e in prediction["entities"]}
        if gold.keys() == pred.keys():
            return None
        return {"id": example["id"], "text": example["text"],
                "missed": [gold[k] for k in gold if k not in pred],
                "spurious": [pred[k] for k in pred if k not in gold]}


# -------------------------------------------------------------------------------------------------


def _example(rid: str, tokens: list[str], sep: str, **extra) -> dict:
    """Tokens, the text they make (joined by ``sep``) and each token's character span in it."""
    offsets, pos = [], 0
    for k, t in enumerate(tokens):
        if k:
            pos += len(sep)
        offsets.append((pos, pos + len(t)))
        pos += len(t)
    return {"id": rid, "text": sep.join(tokens), "tokens": list(tokens), "offsets": offsets, "sep": sep, **extra}


def _entity(typ: str, a: int, z: int, offsets, text: str, score: float | None = None) -> dict:
    start, end = offsets[a][0], offsets[z - 1][1]
    ent = {"type": typ, "start": start, "end": end, "text": text[start:end], "token_start": a, "token_end": z}
    if score is not None:
        ent["score"] = round(score, 4)
    return ent


def _valid_tag(tag: str, scheme: str) -> bool:
    return tag == "O" or (len(tag) > 2 and tag[0] in _FILE_LETTERS[scheme] and tag[1] == "-")


def _tags_for(typ: str, n: int, scheme: str) -> list[str]:
    """Tags of one entity of ``n`` tokens in IOB2 or BIOES."""
    if scheme == "BIOES":
        return [f"S-{typ}"] if n == 1 else [f"B-{typ}"] + [f"I-{typ}"] * (n - 2) + [f"E-{typ}"]
    return [f"B-{typ}"] + [f"I-{typ}"] * (n - 1)


def _tags_from_spans(spans: list[tuple[str, int, int]], n: int, scheme: str) -> list[str]:
    """Well-formed tags in the file's scheme for entity spans (IOB1: B- only where an entity follows
    another of the same type)."""
    tags = ["O"] * n
    prev_end, prev_type = -1, None
    for typ, a, z in spans:
        if scheme == "IOB1":
            tags[a:z] = [f"I-{typ}"] * (z - a)
            if a == prev_end and prev_type == typ:
                tags[a] = f"B-{typ}"
        else:
            tags[a:z] = _tags_for(typ, z - a, "BIOES" if scheme == "BIOES" else "IOB2")
        prev_end, prev_type = z, typ
    return tags


CONFIG = NERConfig
