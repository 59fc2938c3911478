"""Knowledge distillation: a fine-tuned teacher's soft labels train a (smaller) student.

The teacher scores every training example once, before the student trains, with its own task
settings and encoding; what it says rides on the student's features, so the teacher costs nothing
per training step. Validation keeps the plain task loss. Per task:

* classification (single-label): the teacher's logits per example; the student's loss is
  ``(1 - alpha) * task loss + alpha * T^2 * KL(teacher_T || student_T)`` (Hinton et al., 2015).
  Teacher and student need not share a tokenizer or an architecture.
* NER: the same KL per word, on the label logits of each word's first sub-token (a CRF model's
  emissions). Both sides label words, so their tokenizers may differ: rows are aligned by word index
  (words the teacher truncated get no teacher row and no KD term).
* translation, summarization, chat: word-level KD (Kim & Rush, 2016) on the target/reply tokens. The
  full-vocabulary distribution per token is too large to keep, so the teacher's top-k token ids and
  log-probabilities at temperature T are stored; the KD term is the cross-entropy of the student's
  softened distribution against the renormalised top-k one, times T^2. Token ids must mean the same
  on both sides, so teacher and student must share the tokenizer.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field

from ..config import StrictModel
from ..errors import ConfigError

SEQUENCE = ("translation", "summarization", "chat")
SUPPORTED = ("classification", "ner", *SEQUENCE)
_SUPPORTED_TEXT = "single-label classification, ner, translation, summarization and chat"


class DistillSettings(StrictModel):
    """``finetune.distill``: which teacher, how soft, how much."""

    teacher: str = Field(..., description="a fine-tuned model directory of the same task and label set")
    temperature: float = Field(2.0, gt=0)
    alpha: float = Field(0.5, ge=0, le=1, description="weight of the distillation term (1 - alpha: the task loss)")
    batch_size: int = Field(64, ge=1, description="batch size of the teacher's one pass over the training set")
    top_k: int = Field(16, ge=1, description="translation/summarization/chat: the teacher's k most likely tokens "
                       "kept per target token (the KD target, renormalised over them)")


def attach_teacher_logits(settings: DistillSettings, task, examples: list[dict], features: list[dict],
                          progress: bool = True, tok=None) -> dict:
    """Score ``examples`` with the teacher and store what it says on ``features`` (in place); returns
    the ``metrics.distill`` record. ``tok``: the student's tokenizer (sequence tasks compare it)."""
    from .stage import load_task_model

    if task.kind not in SUPPORTED or getattr(task.cfg, "multi_label", False):
        what = "multi-label classification" if task.kind == "classification" else task.kind
        raise ConfigError(f"finetune.distill is not available for the {what} task",
                          f"distillation supports {_SUPPORTED_TEXT}; remove finetune.distill")
    if not (Path(settings.teacher) / "task.json").exists():
        raise ConfigError(f"finetune.distill.teacher: {settings.teacher} is not a fine-tuned task model",
                          "point it at e.g. runs/<recipe>/finetune/pretrained/model")
    tteacher, model, ttok = load_task_model(settings.teacher)
    if tteacher.kind != task.kind:
        raise ConfigError(f"the teacher at {settings.teacher} is a {tteacher.kind} model, the student a {task.kind} one",
                          "distil from a teacher fine-tuned on the same task")
    info = {"teacher": str(settings.teacher), "temperature": settings.temperature, "alpha": settings.alpha}
    if task.kind == "classification":
        _same_labels(tteacher, task, "multi_label")
        outs = _teacher_pass(tteacher, model, ttok, examples, settings, progress,
                             lambda batch, feats: model(batch["input_ids"], batch["attention_mask"])[0].float().tolist())
        for f, row in zip(features, outs):
            f["teacher"] = row
        agree = sum(int(np.argmax(f["teacher"])) == f["label"] for f in features)
        return {**info, "teacher_train_accuracy": round(agree / max(len(features), 1), 6)}
    if task.kind == "ner":
        _same_labels(tteacher, task, "train_scheme")
        return {**info, **_attach_ner(tteacher, model, ttok, examples, features, settings, progress)}
    _same_tokenizer(ttok, tok, settings.teacher)
    return {**info, "top_k": settings.top_k, **_attach_topk(tteacher, model, ttok, examples, features, settings,
                                                             progress)}


def _same_labels(tteacher, task, setting: str) -> None:
    """The teacher's logits index the student's labels: same names, same order (and ``setting``)."""
    mine, theirs = getattr(task.cfg, setting), getattr(tteacher.cfg, setting)
    if list(tteacher.labels) != list(task.labels) or mine != theirs:
        raise ConfigError(f"the teacher's labels {list(tteacher.labels)} ({setting}={theirs}) differ from the "
                          f"student's {list(task.labels)} ({setting}={mine})",
                          f"fine-tune the teacher on the same label set (same names, same order, same {setting})")


def _same_tokenizer(ttok, tok, where: str) -> None:
    """Top-k token ids are only meaningful to a student whose ids mean the same tokens."""
    if tok is None:
        raise ValueError("sequence distillation needs the student's tokenizer")  # a caller bug, not user input
    if ttok.hf.get_vocab(with_added_tokens=True) != tok.hf.get_vocab(with_added_tokens=True):
        raise ConfigError(f"sequence distillation needs the same tokenizer for teacher and student: the teacher at "
                          f"{where} has a {ttok.vocab_size}-token vocabulary, the student's ({tok.vocab_size} tokens) "
                          "differs", "train the student with the teacher's tokenizer (init_from a body that uses it, "
                          "or finetune.model on the tokenizer stage the teacher was trained with)")


def _teacher_pass(tteacher, model, ttok, examples: list[dict], settings: DistillSettings, progress: bool,
                  score: Callable[[dict, list[dict]], list]) -> list:
    """One no-grad pass of the teacher over ``examples`` (its own encoding, batched by length):
    ``score(batch, features)`` gives one output per feature; returned in example order."""
    from ..progress import progress_bar
    from .stage import encode_all

    tfeats = encode_all(tteacher, examples, ttok)
    order = sorted(range(len(tfeats)), key=lambda i: tteacher.length(tfeats[i]))
    out: list = [None] * len(tfeats)
    with torch.no_grad(), progress_bar(progress) as bar:
        t = bar.add_task("teacher", total=len(order), info="")
        for s in range(0, len(order), settings.batch_size):
            idx = order[s: s + settings.batch_size]
            feats = [tfeats[i] for i in idx]
            for i, o in zip(idx, score(tteacher.collate(feats, ttok), feats)):
                out[i] = o
            bar.advance(t, len(idx))
    return out


def _attach_ner(tteacher, model, ttok, examples, features, settings, progress) -> dict:
    """Per-word label logits, matched to the student's words by word index."""
    def score(batch, feats):
        words = tteacher._word_emissions(model, batch)[1]  # (B, W, C) at each word's first sub-token
        return [dict(zip(f["words"], words[b, : len(f["words"])].tolist())) for b, f in enumerate(feats)]

    outs = _teacher_pass(tteacher, model, ttok, examples, settings, progress, score)
    n_labels = len(tteacher.labels)
    hit = covered = labelled = 0
    for f, rows in zip(features, outs):
        f["teacher"] = [rows.get(w, [0.0] * n_labels) for w in f["words"]]
        f["teacher_mask"] = [int(w in rows) for w in f["words"]]
        for w, y in zip(f["words"], f["word_labels"]):
            if y == -100:
                continue
            labelled += 1
            if w in rows:
                covered += 1
                hit += int(np.argmax(rows[w])) == y
    return {"teacher_train_token_accuracy": round(hit / max(covered, 1), 6),
            "teacher_coverage": round(covered / max(labelled, 1), 6)}


def _attach_topk(tteacher, model, ttok, examples, features, settings, progress) -> dict:
    """Top-k ids and log-probs (at T) per labelled target token, kept as long as the teacher's target
    tokens equal the student's (a teacher that cut a long target gives no rows past the cut)."""
    T, vocab = settings.temperature, ttok.vocab_size
    k = min(settings.top_k, vocab)

    def score(batch, feats):
        logits = tteacher._logits(model, batch)[..., :vocab].float()
        labels = batch["labels"]
        keep = labels != -100
        # which feature each row position belongs to (chat rows may pack several conversations)
        owner = batch.get("example_index", torch.arange(labels.shape[0]).unsqueeze(1).expand_as(labels))
        top = (logits[keep] / T).log_softmax(-1).topk(k, -1)
        own, targets = owner[keep].tolist(), labels[keep].tolist()
        out = [([], [], []) for _ in feats]
        for o, ids, lps, y in zip(own, top.indices.tolist(), top.values.tolist(), targets):
            out[o][0].append(ids), out[o][1].append(lps), out[o][2].append(y)
        return out

    outs = _teacher_pass(tteacher, model, ttok, examples, settings, progress, score)
    hit = covered = labelled = 0
    for f, (ids, lps, theirs) in zip(features, outs):
        mine = [y for y in f["labels"] if y != -100]
        m = 0
        while m < min(len(mine), len(theirs)) and mine[m] == theirs[m]:
            m += 1
        f["teacher_ids"] = np.asarray(ids[:m], dtype=np.int64).reshape(m, k)
        f["teacher_logp"] = np.asarray(lps[:m], dtype=np.float32).reshape(m, k)
        labelled, covered = labelled + len(mine), covered + m
        hit += sum(int(r[0] == y) for r, y in zip(ids[:m], mine))
    return {"teacher_train_token_accuracy": round(hit / max(covered, 1), 6),
            "teacher_coverage": round(covered / max(labelled, 1), 6)}


def topk_rows(features: list[dict]) -> dict[str, torch.Tensor]:
    """The stored top-k rows of ``features``, one per labelled token in the order the batch's labels
    have them (features in order, tokens in order): the caller lists features as its rows hold them.
    Tokens past a feature's stored rows get a zero row and ``teacher_mask`` False."""
    k = next((f["teacher_ids"].shape[1] for f in features if len(f["teacher_ids"])), 1)
    ids, logp, mask = [], [], []
    for f in features:
        n, m = sum(y != -100 for y in f["labels"]), len(f["teacher_ids"])
        ids += [torch.from_numpy(f["teacher_ids"]), torch.zeros(n - m, k, dtype=torch.long)]
        logp += [torch.from_numpy(f["teacher_logp"]), torch.zeros(n - m, k)]
        mask += [True] * m + [False] * (n - m)
    return {"teacher_ids": torch.cat(ids), "teacher_logp": torch.cat(logp), "teacher_mask": torch.tensor(mask)}


def _mix(task_loss_sum: torch.Tensor, kd_sum: torch.Tensor, count: int, rows: int, alpha: float) -> torch.Tensor:
    """The KD sum rescaled to ``count`` items (rows with a teacher may be fewer), mixed by alpha."""
    return (1 - alpha) * task_loss_sum + alpha * kd_sum * (count / max(rows, 1))


def distill_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, task_loss_sum: torch.Tensor,
                 count: int, temperature: float, alpha: float) -> torch.Tensor:
    """Summed over the batch (the trainer divides by the count): the task term and the KL term over
    (N, C) rows (examples, or NER words with a teacher row)."""
    t = temperature
    kd = F.kl_div(F.log_softmax(student_logits / t, -1), F.log_softmax(teacher_logits / t, -1),
                  log_target=True, reduction="sum") * t * t
    return _mix(task_loss_sum, kd, count, student_logits.shape[0], alpha)


def topk_distill_loss(student_logits: torch.Tensor, teacher_ids: torch.Tensor, teacher_logp: torch.Tensor,
                      task_loss_sum: torch.Tensor, count: int, temperature: float, alpha: float) -> torch.Tensor:
    """Word-level KD over (N, V) student rows: cross-entropy of the student at T against the teacher's
    top-k distribution renormalised over its k tokens, times T^2; mixed as ``distill_loss``."""
    t = temperature
    target = teacher_logp.softmax(-1)  # renormalised over the k kept tokens
    student = F.log_softmax(student_logits / t, -1).gather(-1, teacher_ids)
    kd = -(target * student).sum() * t * t
    return _mix(task_loss_sum, kd, count, student_logits.shape[0], alpha)


def sequence_kd(task, logits: torch.Tensor, batch: dict, loss: torch.Tensor, count: int, training: bool) -> torch.Tensor:
    """Seq2seq and chat: add the top-k KD term at the labelled tokens that have a teacher row (the
    batch's labels in row-major order match ``topk_rows``)."""
    distill = getattr(task, "distill", None)  # (temperature, alpha) while a student trains
    if distill is None or "teacher_ids" not in batch or not training:
        return loss
    rows = logits[batch["labels"] != -100]
    mask = batch["teacher_mask"].to(rows.device)
    return topk_distill_loss(rows[mask], batch["teacher_ids"].to(rows.device)[mask],
                             batch["teacher_logp"].to(rows.device)[mask], loss, count, *distill)
