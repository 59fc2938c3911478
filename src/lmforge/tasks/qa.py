"""Extractive question answering (SQuAD-style), English and Chinese, on any body.

Reads SQuAD-format JSON (``{"data": [{"title", "paragraphs": [{"context", "qas": [...]}]}]}``: SQuAD
v1.1/v2.0, CMRC 2018, DRCD) and flat JSONL (one ``{"id", "question", "context", "answers"}`` per
line, answers as a list of ``{"text", "answer_start"}`` or Hugging Face's ``{"text": [...],
"answer_start": [...]}``). A context longer than the model's window is cut into overlapping
document-stride windows, all kept in ONE feature per question; the answer is the best span over
every window (n-best start/end logits, SQuAD's post-processing), or "no answer" when the null score
wins by ``null_threshold`` (SQuAD v2, with ``allow_unanswerable``).

Offsets that do not match their answer text are repaired by searching the text nearest the given
offset (CMRC 2018 has 193 answers with ``answer_start`` -1, mostly a final "。" the context does not
have); each repair is a counted warning, and a question none of whose answers can be found in its
context is an error naming the file and the question id.

``holdout`` keeps every n-th article of the training file for testing: reading for training skips
them, and a fine-tuned model reading that same file again (``lmforge evaluate``, the evaluate stage)
reads only them. So train and test can be one file, split by article rather than by question.
"""

from __future__ import annotations

import hashlib
import json
import random
import unicodedata
import zlib
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field, model_validator

from ..config import StrictModel
from ..errors import ConfigError, InputError
from ..models.heads import SpanExtractor
from .base import Task, WarningCounter, attention_mask, pad_batch, register, require_examples


class HoldOut(StrictModel):
    """Articles ``i`` (0-based, in file order) with ``i % every == offset`` are held out."""

    every: int = Field(5, ge=2)
    offset: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _offset_in_range(self):
        if self.offset >= self.every:
            raise ValueError(f"holdout.offset={self.offset} must be below holdout.every={self.every}")
        return self


class QAConfig(StrictModel):
    kind: Literal["qa"] = "qa"
    max_len: int = Field(384, ge=16, description="tokens per window (question + context + specials)")
    doc_stride: int = Field(128, ge=0, description="tokens consecutive windows of one context share")
    max_query_len: int = Field(64, ge=1, description="longer questions are cut to this many tokens")
    max_answer_len: int = Field(30, ge=1, description="longest answer span, in tokens")
    n_best: int = Field(20, ge=1, description="start/end candidates per window")
    nbest_output: int = Field(5, ge=0, description="candidates listed in each prediction's nbest")
    max_windows_train: int | None = Field(None, ge=1, description="train on at most this many windows per "
                                          "question (those holding the answer first); unset = all")
    allow_unanswerable: bool = Field(False, description="SQuAD v2: predict no answer when the null score wins")
    null_threshold: float = Field(0.0, description="no answer when null score - best span score > this")
    lang: Literal["auto", "en", "zh"] = Field("auto", description="metric rules; auto: Chinese when most "
                                              "gold answers are CJK (character-level F1)")
    holdout: HoldOut | None = Field(None, description="hold out every n-th article of the training file "
                                    "for testing, e.g. {every: 5, offset: 0}")
    holdout_part: Literal["auto", "rest", "heldout", "all"] = Field(
        "auto", description="which articles `holdout` reads (auto: the rest before fitting, the held-out ones "
        "of the training file afterwards, all of any other file)")

    @model_validator(mode="after")
    def _room_for_context(self):
        room = self.max_len - self.max_query_len - 3  # [CLS] q [SEP] c [SEP]
        if room <= self.doc_stride:
            raise ValueError(f"max_len={self.max_len} leaves {room} context tokens after a {self.max_query_len}-token "
                             f"question, not more than doc_stride={self.doc_stride}: raise max_len or lower "
                             "doc_stride/max_query_len")
        return self


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _strip_punct(s: str) -> str:
    """The text without surrounding whitespace and punctuation (CMRC answers end in "。" the context lacks)."""
    def edge(ch: str) -> bool:
        return ch.isspace() or unicodedata.category(ch)[0] == "P"

    a, b = 0, len(s)
    while a < b and edge(s[a]):
        a += 1
    while b > a and edge(s[b - 1]):
        b -= 1
    return s[a:b]


def _nearest(context: str, text: str, start: int | None) -> int:
    """The occurrence of ``text`` in ``context`` nearest ``start`` (the first if no offset), or -1."""
    best, pos = -1, context.find(text)
    while pos != -1:
        if start is None or start < 0:
            return pos
        if best == -1 or abs(pos - start) < abs(best - start):
            best = pos
        pos = context.find(text, pos + 1)
    return best


def locate_answer(context: str, text: str, start: int | None) -> tuple[int, int, str] | None:
    """(start, end, how) of the answer's characters in ``context``; how is "exact" (offset right),
    "moved" (the text found nearest the given offset) or "trimmed" (found without surrounding
    spaces/punctuation); None when the text is not in the context at all."""
    if not text:
        return None
    if isinstance(start, int) and start >= 0 and context[start: start + len(text)] == text:
        return start, start + len(text), "exact"
    pos = _nearest(context, text, start)
    if pos >= 0:
        return pos, pos + len(text), "moved"
    core = _strip_punct(text)
    if core and core != text:
        pos = _nearest(context, core, start)
        if pos >= 0:
            return pos, pos + len(core), "trimmed"
    return None


def _answers(raw, where: str) -> list[tuple[str, int | None]]:
    """[(text, answer_start)] from SQuAD's list of dicts or Hugging Face's dict of lists."""
    if raw is None:
        return []
    if isinstance(raw, dict):  # {"text": [...], "answer_start": [...]}
        texts, starts = raw.get("text", []), raw.get("answer_start", [])
        if isinstance(texts, str):
            texts, starts = [texts], [starts]
        starts = list(starts) + [None] * (len(texts) - len(starts))
        return [(str(t), s if isinstance(s, int) else None) for t, s in zip(texts, starts)]
    if not isinstance(raw, list):
        raise InputError(f"{where}: 'answers' must be a list of {{text, answer_start}}, got {type(raw).__name__}",
                         "use SQuAD's format: \"answers\": [{\"text\": ..., \"answer_start\": ...}]")
    out = []
    for a in raw:
        if isinstance(a, str):
            out.append((a, None))
        elif isinstance(a, dict) and "text" in a:
            s = a.get("answer_start")
            out.append((str(a["text"]), s if isinstance(s, int) else None))
        else:
            raise InputError(f"{where}: an answer without 'text': {a!r:.80}",
                             "every answer needs a text (and answer_start, its character offset)")
    return out


@register
class QA(Task):
    kind = "qa"
    headline = ("exact_match", "f1")

    def __init__(self, cfg: QAConfig, state: dict | None = None):
        super().__init__(cfg, state)
        self.warnings = WarningCounter()
        self.unk = [0, 0]  # [unknown, all] context tokens encoded (first window's tokens counted once)
        self._notes: dict[str, str] = {}

    # -- data ---------------------------------------------------------------------------------
    def read(self, path) -> list[dict]:
        p = Path(path)
        if not p.exists():
            raise InputError(f"QA file not found: {p}", "check finetune.data paths")
        text = p.read_text(encoding="utf-8-sig")
        if not text.strip():
            raise InputError(f"{p}: the file is empty", "point the recipe at a SQuAD-format JSON or JSONL file")
        if p.suffix == ".jsonl" or _is_jsonl(text):
            articles = self._jsonl_articles(text, p)
        else:
            articles = self._squad_articles(text, p)
        keep = self._article_filter(p, len(articles))
        out: list[dict] = []
        for i, rows in enumerate(articles):
            if keep(i):
                for where, rec in rows:
                    ex = self._example(rec, where, p)
                    ex["article"] = i
                    out.append(ex)
        return require_examples(out, p)

    def _squad_articles(self, text: str, p: Path) -> list[list[tuple[str, dict]]]:
        try:
            blob = json.loads(text)
        except json.JSONDecodeError as e:
            raise InputError(f"{p}:{e.lineno}: not valid JSON ({e.msg})", "fix the file, or give JSONL with .jsonl") from None
        if isinstance(blob, dict) and "question" in blob and "context" in blob:  # one flat record
            return self._jsonl_articles(text.replace("\n", " "), p)
        data = blob.get("data") if isinstance(blob, dict) else blob
        if not isinstance(data, list):
            raise InputError(f"{p}: no 'data' list of articles", "SQuAD format: {\"data\": [{\"title\", \"paragraphs\"}]}")
        articles = []
        for ai, art in enumerate(data):
            paras = art.get("paragraphs") if isinstance(art, dict) else None
            if not isinstance(paras, list):
                raise InputError(f"{p}: article {ai} has no 'paragraphs' list", "SQuAD format: {\"title\", \"paragraphs\": [...]}")
            title = str(art.get("title", ai))
            rows = []
            for pi, para in enumerate(paras):
                if not isinstance(para, dict) or "context" not in para:
                    raise InputError(f"{p}: article {ai} ({title}) paragraph {pi} has no 'context'",
                                     "every paragraph needs a context and its qas")
                for qi, qa in enumerate(para.get("qas", [])):
                    qid = str(qa.get("id", f"{ai}.{pi}.{qi}")) if isinstance(qa, dict) else f"{ai}.{pi}.{qi}"
                    where = f"{p}: question {qid} (article {ai} '{title}')"
                    if not isinstance(qa, dict):
                        raise InputError(f"{where}: a question must be an object", "see the SQuAD format")
                    rows.append((where, {**qa, "id": qid, "context": para["context"], "title": title}))
            articles.append(rows)
        return articles

    def _jsonl_articles(self, text: str, p: Path) -> list[list[tuple[str, dict]]]:
        """Flat records; articles are the distinct titles (else contexts) in first-seen order."""
        groups: dict[str, list] = {}
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise InputError(f"{p}:{n}: invalid JSON ({e.msg})", "one JSON object per line") from None
            if not isinstance(rec, dict):
                raise InputError(f"{p}:{n}: expected a JSON object", "one {question, context, answers} per line")
            rec.setdefault("id", f"{p.name}:{n}")
            key = str(rec.get("title") if rec.get("title") is not None else rec.get("context"))
            groups.setdefault(key, []).append((f"{p}:{n}: question {rec['id']}", rec))
        return list(groups.values())

    def _example(self, rec: dict, where: str, p: Path) -> dict:
        for key in ("question", "context"):
            if not isinstance(rec.get(key), str):
                raise InputError(f"{where}: no '{key}' text", "every question needs a question and a context")
        context, qid = rec["context"], str(rec["id"])
        answers = _answers(rec.get("answers"), where)
        impossible = bool(rec.get("is_impossible")) or not answers
        if not context.strip():
            self.warnings.add("empty context", where)
        target = None
        if not impossible:
            for text, start in answers:
                found = locate_answer(context, text, start)
                if found is None:
                    self.warnings.add("answer text not in its context (kept as a reference for scoring only)", where)
                    continue
                if found[2] == "moved":
                    self.warnings.add("answer offset did not match its text: moved to the nearest occurrence", where)
                elif found[2] == "trimmed":
                    self.warnings.add("answer text found only without its surrounding punctuation/spaces", where)
                if target is None:
                    target = found
            if target is None:
                raise InputError(f"{where}: none of its {len(answers)} answer(s) occurs in the context "
                                 f"(first: {answers[0][0]!r:.60})", "fix the answer text or answer_start")
        elif not self.cfg.allow_unanswerable:
            self.warnings.add("unanswerable question while allow_unanswerable is off (the model always answers)", where)
        return {"id": qid, "question": rec["question"], "context": context,
                "answers": [] if impossible else [t for t, _ in answers],
                "answer_start": target[0] if target else -1, "answer_end": target[1] if target else -1,
                "source": str(p)}

    def _article_filter(self, p: Path, n: int):
        """Which articles of ``p`` to read: training articles before fitting, the held-out ones of the
        training file afterwards, every article of any other file (``holdout_part`` forces one)."""
        h, part = self.cfg.holdout, self.cfg.holdout_part
        if h is None or part == "all":
            return lambda i: True
        if part == "auto":
            if "holdout_files" not in self.state:  # reading for training/validation
                part = "rest"
            elif _sha256(p) in self.state["holdout_files"]:
                part = "heldout"
            else:
                return lambda i: True
        if part == "heldout":
            k = sum(1 for i in range(n) if i % h.every == h.offset)
            self._notes[str(p)] = (f"{p}: reading only the {k} held-out articles of {n} (holdout every {h.every}, "
                                   f"offset {h.offset}): the model was trained on the others")
            return lambda i: i % h.every == h.offset
        return lambda i: i % h.every != h.offset

    def fit(self, examples: list[dict]) -> None:
        if self.cfg.holdout is not None:
            sources = sorted({e["source"] for e in examples if "source" in e})
            self.state["holdout_files"] = [_sha256(Path(s)) for s in sources if Path(s).exists()]

    def check(self, examples: list[dict], path: str) -> list[str]:
        return [self._notes[str(path)]] if str(path) in self._notes else []

    def example(self, value, i: int = 0) -> dict:
        if not isinstance(value, dict) or not isinstance(value.get("question"), str) \
                or not isinstance(value.get("context"), str):
            raise InputError(f"input {i}: QA needs a JSON object with 'question' and 'context'",
                             'send e.g. {"question": "Who?", "context": "..."}')
        return {"id": str(value.get("id", i)), "question": value["question"], "context": value["context"],
                "answers": [], "answer_start": -1, "answer_end": -1}

    # -- features -----------------------------------------------------------------------------
    def _question(self, q: str, tok, qid: str) -> str:
        q = q.strip()
        enc = tok.encode_full(q, add_special_tokens=False)
        if len(enc) > self.cfg.max_query_len:
            self.warnings.add(f"question longer than max_query_len={self.cfg.max_query_len} tokens, cut", qid)
            q = q[: enc.offsets[self.cfg.max_query_len - 1][1]]
        return q

    def encode(self, example: dict, tok) -> dict:
        cfg = self.cfg
        q = self._question(example["question"], tok, example["id"])
        wins = tok.encode_full(q, pair=example["context"], max_length=cfg.max_len, stride=cfg.doc_stride,
                               return_overflow=True)
        a, b = example.get("answer_start", -1), example.get("answer_end", -1)
        windows = []
        for w in wins:
            ctx = [j for j, s in enumerate(w.sequence_ids) if s == 1]
            cs = ctx[0] if ctx else len(w.ids)
            offsets = [list(w.offsets[j]) for j in ctx]
            if ctx and ctx != list(range(cs, cs + len(ctx))):
                raise RuntimeError(f"context tokens of {example['id']} are not contiguous")  # a tokenizer bug
            start = end = 0
            if a >= 0 and offsets and offsets[0][0] <= a and offsets[-1][1] >= b:
                start, end = self._span_tokens(offsets, a, b)
                start, end = cs + start, cs + end
            windows.append({"input_ids": w.ids, "type_ids": w.type_ids, "ctx_start": cs, "offsets": offsets,
                            "start": start, "end": end})
        self._count_unknown(wins, tok, example["id"])
        return {"windows": windows, "context": example["context"], "id": example["id"]}

    @staticmethod
    def _span_tokens(offsets: list[list[int]], a: int, b: int) -> tuple[int, int]:
        """Context-token indices of the first and last token of characters [a, b)."""
        start = 0
        for k, (x, y) in enumerate(offsets):
            if y > x and x <= a:
                start = k
        end = start
        for k in range(start, len(offsets)):
            x, y = offsets[k]
            if y > x:
                end = k
                if y >= b:
                    break
        return start, end

    def _count_unknown(self, wins, tok, qid: str) -> None:
        if tok.unk_id is None:
            return
        seen, unk = set(), 0
        for w in wins:
            for tid, s, off in zip(w.ids, w.sequence_ids, w.offsets):
                if s == 1 and tuple(off) not in seen:
                    seen.add(tuple(off))
                    unk += tid == tok.unk_id
        self.unk[0] += unk
        self.unk[1] += len(seen)
        if unk:
            self.warnings.add("question whose context has unknown ([UNK]) tokens", qid)

    def unknown_rate(self) -> float:
        """Share of context tokens the tokenizer could not represent, over everything encoded so far."""
        return self.unk[0] / max(self.unk[1], 1)

    def length(self, features: dict) -> int:
        return sum(len(w["input_ids"]) for w in features["windows"])

    def _train_windows(self, f: dict) -> set[int]:
        n, cap = len(f["windows"]), self.cfg.max_windows_train
        if cap is None or n <= cap:
            return set(range(n))
        with_answer = [k for k, w in enumerate(f["windows"]) if w["start"] > 0]
        rest = [k for k in range(n) if k not in with_answer]
        random.Random(zlib.crc32(str(f["id"]).encode())).shuffle(rest)  # fixed per question
        return set((with_answer + rest)[:cap])

    def collate(self, features: list[dict], tok) -> dict[str, torch.Tensor]:
        rows, owner, train = [], [], []
        for i, f in enumerate(features):
            chosen = self._train_windows(f)
            for k, w in enumerate(f["windows"]):
                rows.append(w)
                owner.append(i)
                train.append(k in chosen)
        seqs = [w["input_ids"] for w in rows]
        return {"input_ids": pad_batch(seqs, tok.pad_id or 0), "attention_mask": attention_mask(seqs),
                "token_type_ids": pad_batch([w["type_ids"] for w in rows], 0),
                "start_positions": torch.tensor([w["start"] for w in rows], dtype=torch.long),
                "end_positions": torch.tensor([w["end"] for w in rows], dtype=torch.long),
                "window_owner": torch.tensor(owner, dtype=torch.long),
                "train_window": torch.tensor(train, dtype=torch.bool)}

    # -- model --------------------------------------------------------------------------------
    def build_model(self, body, tok) -> SpanExtractor:
        block = getattr(body.config, "block_size", None)
        if block is not None and self.cfg.max_len > block:
            raise ConfigError(f"finetune.task.max_len={self.cfg.max_len} is longer than the model's context ({block})",
                              f"set finetune.task.max_len <= {block}; doc_stride windows cover longer contexts")
        return SpanExtractor(body)

    def _logits(self, model, batch, rows: torch.Tensor | None = None):
        ids, am, tt = batch["input_ids"], batch["attention_mask"], batch["token_type_ids"]
        if rows is not None:
            ids, am, tt = ids[rows], am[rows], tt[rows]
            T = int(am.sum(1).max()) if len(am) else 1
            ids, am, tt = ids[:, :T], am[:, :T], tt[:, :T]
        start, end = model(ids, am, tt)
        pad = am == 0
        return start.masked_fill(pad, -1e4), end.masked_fill(pad, -1e4)

    def loss(self, model, batch):
        sel = batch["train_window"]
        start, end = self._logits(model, batch, sel)
        sp, ep = batch["start_positions"][sel], batch["end_positions"][sel]
        loss = (F.cross_entropy(start, sp, reduction="sum") + F.cross_entropy(end, ep, reduction="sum")) / 2
        return loss, int(sel.sum())

    def count(self, batch) -> int:
        return int(batch["train_window"].sum())

    def tokens(self, batch) -> int:
        return int(batch["attention_mask"][batch["train_window"]].sum())

    @torch.no_grad()
    def predict(self, model, batch, tok, features) -> list[dict]:
        start, end = self._logits(model, batch)
        start, end = start.float().cpu().numpy(), end.float().cpu().numpy()
        owner = batch["window_owner"].cpu().numpy()
        out = []
        for i, f in enumerate(features):
            rows = np.flatnonzero(owner == i)
            out.append(self._best_span(f, [(start[r], end[r]) for r in rows]))
        return out

    def _best_span(self, f: dict, logits: list[tuple[np.ndarray, np.ndarray]]) -> dict:
        """SQuAD post-processing: the n-best start and end tokens of each window's context, pairs with
        end >= start and at most max_answer_len tokens, scored by start + end logit; best over windows."""
        cfg, context = self.cfg, f["context"]
        cands: dict[tuple[int, int], float] = {}
        null = None
        for w, (s, e) in zip(f["windows"], logits):
            null = float(s[0] + e[0]) if null is None else min(null, float(s[0] + e[0]))
            cs, offs = w["ctx_start"], w["offsets"]
            if not offs:
                continue
            sc, ec = s[cs: cs + len(offs)], e[cs: cs + len(offs)]
            k = min(cfg.n_best, len(offs))
            top_s = np.argpartition(-sc, k - 1)[:k]
            top_e = np.argpartition(-ec, k - 1)[:k]
            for a in top_s:
                if offs[a][1] <= offs[a][0]:
                    continue
                for b in top_e:
                    if b < a or b - a + 1 > cfg.max_answer_len or offs[b][1] <= offs[b][0]:
                        continue
                    span = (offs[a][0], offs[b][1])
                    score = float(sc[a] + ec[b])
                    if score > cands.get(span, -np.inf):
                        cands[span] = score
        ranked = sorted(cands.items(), key=lambda kv: -kv[1])[: cfg.n_best]
        scores = np.array([v for _, v in ranked] + ([null] if cfg.allow_unanswerable and null is not None else []))
        probs = np.exp(scores - scores.max()) / np.exp(scores - scores.max()).sum() if len(scores) else scores
        nbest = [{"text": context[a:b], "start": a, "score": round(v, 4), "probability": round(float(p), 5)}
                 for ((a, b), v), p in zip(ranked[: cfg.nbest_output], probs)]
        no_answer = not ranked or (cfg.allow_unanswerable and null is not None
                                   and null - ranked[0][1] > cfg.null_threshold)
        if no_answer:
            return {"answer": "", "start": -1, "score": round(null if null is not None else 0.0, 4),
                    "null_score": None if null is None else round(null, 4), "nbest": nbest}
        (a, b), v = ranked[0]
        return {"answer": context[a:b], "start": a, "score": round(v, 4),
                "null_score": None if null is None else round(null, 4), "nbest": nbest}

    # -- scoring ------------------------------------------------------------------------------
    def _lang(self) -> str | None:
        return None if self.cfg.lang == "auto" else self.cfg.lang

    def _per_example(self, predictions, examples) -> dict:
        from ..eval.qa_metrics import squad_per_example

        preds = {str(i): p["answer"] for i, p in enumerate(predictions)}
        golds = {str(i): e["answers"] for i, e in enumerate(examples)}
        return squad_per_example(preds, golds, self._lang())

    def metrics(self, predictions: list[dict], examples: list[dict]) -> dict:
        from ..eval.qa_metrics import squad_metrics

        preds = {str(i): p["answer"] for i, p in enumerate(predictions)}
        golds = {str(i): e["answers"] for i, e in enumerate(examples)}
        return squad_metrics(preds, golds, self._lang())

    def subset_scores(self, predictions, examples, index_sets):
        """Per-question EM/F1 computed once; each resample is a mean over its indices."""
        per = self._per_example(predictions, examples)
        em, f1 = per["exact_match"], per["f1"]
        out: dict[str, list[float]] = {"exact_match": [], "f1": []}
        for idx in index_sets:
            out["exact_match"].append(float(em[idx].mean() * 100))
            out["f1"].append(float(f1[idx].mean() * 100))
        return out

    def reference(self, example: dict):
        return example["answers"]

    def example_errors(self, prediction: dict, example: dict) -> dict | None:
        from ..eval.qa_metrics import exact_match, f1

        golds = example["answers"]
        if exact_match(prediction["answer"], golds, self._lang()):
            return None
        return {"id": example["id"], "question": example["question"], "answers": golds,
                "predicted": prediction["answer"], "f1": round(100 * f1(prediction["answer"], golds, self._lang()), 2)}


def _is_jsonl(text: str) -> bool:
    """Several JSON objects, one per line (not one SQuAD document)."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if len(lines) < 2:
        return False
    try:
        json.loads(lines[0])
        return True
    except json.JSONDecodeError:
        return False


CONFIG = QAConfig
