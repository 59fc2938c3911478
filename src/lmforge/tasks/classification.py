"""Sequence classification, multi-class and multi-label, on any body.

Reads jsonl/csv/tsv (with or without a header; fields by name or column number; several text
fields joined, e.g. title and body) and the data stage's split output (fields under ``meta``);
labels as names, or numbers with a names file. Multi-label: sigmoid per label, thresholds tuned per
label on the validation split.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field

from ..config import StrictModel
from ..errors import InputError
from ..models.heads import SequenceClassifier
from .base import Task, WarningCounter, attention_mask, field_value, pad_batch, register, require_examples


class ClassificationConfig(StrictModel):
    kind: Literal["classification"] = "classification"
    text_fields: list[str | int] = Field(default_factory=lambda: ["text"],
                                         description="field names or column numbers; several are joined")
    label_field: str | int = "label"
    id_field: str | None = None
    header: bool | None = Field(None, description="csv/tsv: first row is a header (None = detect)")
    multi_label: bool = False
    label_separator: str = Field(",", description="multi-label labels given as one string, e.g. '3,17'")
    label_names: str | None = Field(None, description="file with one label name per line; numeric labels "
                                    "index into it")
    max_len: int = Field(128, ge=4)
    pooling: Literal["auto", "mean", "last", "cls"] = Field("auto", description="auto: cls for encoders, "
                                                             "mean for decoders")
    dropout: float = Field(0.1, ge=0, lt=1)
    class_weights: Literal["balanced"] | list[float] | None = None
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    soft_labels: bool = Field(False, description="train on probabilistic labels (a row's probs_field, e.g. "
                              "`lmforge label weak --labels probs`): cross-entropy against them; rows "
                              "without one use their hard label; single-label only")
    probs_field: str = "probs"

    def input_paths(self) -> list[str]:
        return [self.label_names] if self.label_names else []


def _names(path: str | None) -> list[str] | None:
    if path is None:
        return None
    p = Path(path)
    if not p.exists():
        raise InputError(f"label names file not found: {p}", "set finetune.task.label_names to a file with one name per line")
    return [line.strip() for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]


@register
class Classification(Task):
    kind = "classification"
    headline = ("accuracy", "macro_f1")

    def __init__(self, cfg: ClassificationConfig, state: dict | None = None):
        super().__init__(cfg, state)
        if cfg.multi_label:
            self.headline = ("micro_f1", "macro_f1", "accuracy")
        self.warnings = WarningCounter()

    @property
    def labels(self) -> list[str]:
        return self.state["labels"]

    # -- data ---------------------------------------------------------------------------------
    def read(self, path) -> list[dict]:
        from ..data.readers import read_records

        cfg, names = self.cfg, _names(self.cfg.label_names)
        out = []
        for line, rec in read_records(str(path), header=cfg.header):
            parts = [field_value(rec, f, path, line, "text", "finetune.task.text_fields") for f in cfg.text_fields]
            text = "\n".join(str(p).strip() for p in parts if p is not None and str(p).strip())
            raw = field_value(rec, cfg.label_field, path, line, "label", "finetune.task.label_field")
            labels = self._parse_labels(raw, names, path, line)
            rid = rec.get(cfg.id_field) if cfg.id_field else rec.get("id")
            if not text:
                self.warnings.add("empty text", f"{path}:{line}")
            ex = {"id": str(rid) if rid is not None else f"{Path(path).name}:{line}", "text": text,
                  "label": labels if cfg.multi_label else labels[0], "line": line}
            if cfg.soft_labels and rec.get(cfg.probs_field) is not None:
                ex["probs"] = self._parse_probs(rec[cfg.probs_field], path, line)
            src = rec.get("augmented_from") or (rec.get("meta") or {}).get("augmented_from")
            if src is not None:  # an augmented copy: validation and folds keep it with its source
                ex["augmented_from"] = str(src)
            out.append(ex)
        return require_examples(out, path)

    def _parse_labels(self, raw, names, path, line) -> list[str]:
        if isinstance(raw, list):
            values = [str(v) for v in raw]
        elif self.cfg.multi_label:
            values = [v.strip() for v in str(raw).split(self.cfg.label_separator) if v.strip()]
        else:
            values = [str(raw).strip()]
        if not self.cfg.multi_label and (not values or not values[0]):
            raise InputError(f"{path}:{line}: empty label", "every example needs a label")
        if names:
            try:
                values = [names[int(float(v))] if v.lstrip("-").replace(".", "", 1).isdigit() else v for v in values]
            except IndexError:
                raise InputError(f"{path}:{line}: label {values} is out of range for the {len(names)} names in "
                                 f"{self.cfg.label_names}", "fix the label or the names file") from None
        return values

    def _parse_probs(self, raw, path, line) -> dict[str, float]:
        """A row's label distribution; weak labels are only useful if it is one."""
        where = f"{path}:{line}: {self.cfg.probs_field}"
        if self.cfg.multi_label:
            raise InputError(f"{where}: soft labels are for single-label classification",
                             "set finetune.task.soft_labels: false for multi-label data")
        if not isinstance(raw, dict) or not raw:
            raise InputError(f"{where} must be an object {{label: probability}}, got {type(raw).__name__}",
                             "write rows as `lmforge label weak --labels probs` does")
        try:
            probs = {str(k): float(v) for k, v in raw.items()}
        except (TypeError, ValueError):
            raise InputError(f"{where} has a value that is not a number", "give probabilities as numbers") from None
        if any(not (0.0 <= v <= 1.0) for v in probs.values()) or abs(sum(probs.values()) - 1.0) > 1e-3:
            raise InputError(f"{where} is not a distribution (values in [0, 1] summing to 1): {probs}",
                             "normalise the probabilities, or drop the field to train on the hard label")
        return probs

    def fit(self, examples: list[dict]) -> None:
        names = _names(self.cfg.label_names)
        seen = {y for e in examples for y in (e["label"] if self.cfg.multi_label else [e["label"]])}
        seen |= {y for e in examples for y in e.get("probs", ())}
        self.state["labels"] = names if names else sorted(seen, key=label_sort_key)
        if self.cfg.class_weights == "balanced":
            counts = np.array([sum(y in (e["label"] if self.cfg.multi_label else [e["label"]]) for e in examples)
                               for y in self.labels], dtype=float)
            self.state["class_weights"] = (counts.sum() / (len(counts) * np.maximum(counts, 1))).tolist()
        elif isinstance(self.cfg.class_weights, list):
            if len(self.cfg.class_weights) != len(self.labels):
                raise InputError(f"finetune.task.class_weights has {len(self.cfg.class_weights)} values for "
                                 f"{len(self.labels)} labels {self.labels}", "give one weight per label")
            self.state["class_weights"] = list(self.cfg.class_weights)

    def check(self, examples: list[dict], path: str) -> list[str]:
        known = set(self.labels)
        unseen = sorted({y for e in examples for y in (e["label"] if self.cfg.multi_label else [e["label"]])} - known)
        if unseen:
            n = sum(1 for e in examples if set(e["label"] if self.cfg.multi_label else [e["label"]]) - known)
            return [f"{path}: {n} example(s) have labels never seen in training: {unseen[:10]} "
                    "(they count as errors: the model cannot predict them)"]
        return []

    def encode(self, example: dict, tok) -> dict:
        ids = tok.encode(example["text"], add_special_tokens=tok.family == "bert")
        if len(ids) > self.cfg.max_len:
            self.warnings.add(f"text longer than max_len={self.cfg.max_len} tokens, cut", example["id"])
            ids = ids[: self.cfg.max_len - 1] + ids[-1:] if tok.family == "bert" else ids[: self.cfg.max_len]
        index = {y: i for i, y in enumerate(self.labels)}
        if self.cfg.multi_label:
            target = [0.0] * len(self.labels)
            for y in example.get("label") or []:  # raw inputs (predict, serve) have no label
                if y in index:
                    target[index[y]] = 1.0
        else:
            target = index.get(example.get("label"), -100)
        feats = {"input_ids": ids or [tok.pad_id or 0], "label": target}
        if "probs" in example:
            unknown = sorted(set(example["probs"]) - set(index))
            if unknown:
                raise InputError(f"example {example['id']}: probabilities for labels {unknown} the model does "
                                 f"not have {self.labels}", "use the training labels")
            feats["soft"] = [example["probs"].get(y, 0.0) for y in self.labels]
        return feats

    def collate(self, features: list[dict], tok) -> dict[str, torch.Tensor]:
        seqs = [f["input_ids"] for f in features]
        batch = {"input_ids": pad_batch(seqs, tok.pad_id or 0), "attention_mask": attention_mask(seqs)}
        dtype = torch.float32 if self.cfg.multi_label else torch.long
        batch["labels"] = torch.tensor([f["label"] for f in features], dtype=dtype)
        if self.cfg.soft_labels and any("soft" in f for f in features):  # hard rows as one-hot
            n = len(self.labels)
            batch["soft"] = torch.tensor([f.get("soft") or [float(i == f["label"]) for i in range(n)]
                                          for f in features], dtype=torch.float32)
        if all("teacher" in f for f in features):  # distillation: the teacher's logits (tasks/distill.py)
            batch["teacher"] = torch.tensor([f["teacher"] for f in features], dtype=torch.float32)
        return batch

    # -- model --------------------------------------------------------------------------------
    def build_model(self, body, tok) -> SequenceClassifier:
        pooling = self.cfg.pooling
        if pooling == "auto":
            pooling = "cls" if body.config.to_dict().get("model_type") == "bert" else "mean"
        return SequenceClassifier(body, len(self.labels), pooling, self.cfg.dropout, self.labels)

    def loss(self, model, batch):
        logits, _ = model(batch["input_ids"], batch["attention_mask"])
        logits = logits.float()
        weights = self.state.get("class_weights")
        w = torch.tensor(weights, device=logits.device) if weights else None
        if self.cfg.multi_label:
            per = F.binary_cross_entropy_with_logits(logits, batch["labels"], pos_weight=w, reduction="none")
            return per.mean(-1).sum(), int(logits.shape[0])
        labels = batch["labels"]
        if "soft" in batch and model.training:  # weak labels: cross-entropy against the distribution
            soft = batch["soft"].to(logits.device)
            if self.cfg.label_smoothing:
                soft = soft * (1 - self.cfg.label_smoothing) + self.cfg.label_smoothing / soft.shape[-1]
            per = -(soft * F.log_softmax(logits, -1))
            per = (per * w).sum(-1) if w is not None else per.sum(-1)
            return per.sum(), int(logits.shape[0])
        loss = F.cross_entropy(logits, labels, weight=w, reduction="sum", ignore_index=-100,
                               label_smoothing=self.cfg.label_smoothing)
        count = int((labels != -100).sum())
        distill = getattr(self, "distill", None)  # (temperature, alpha) while a student trains
        if distill is not None and "teacher" in batch and model.training:
            from .distill import distill_loss

            loss = distill_loss(logits, batch["teacher"].to(logits.device), loss, count, *distill)
        return loss, count

    def count(self, batch) -> int:
        if self.cfg.multi_label:
            return int(batch["labels"].shape[0])
        return int((batch["labels"] != -100).sum())

    @torch.no_grad()
    def predict(self, model, batch, tok, features) -> list[dict]:
        logits, _ = model(batch["input_ids"], batch["attention_mask"])
        logits = logits.float()
        probs = logits.sigmoid() if self.cfg.multi_label else logits.softmax(-1)
        return self.decode_probs(probs.cpu().numpy())

    def decode_probs(self, probs: np.ndarray) -> list[dict]:
        """Predictions from (N, labels) probabilities in the task's label order: any scorer's output
        (e.g. a baseline's) becomes predictions this task can score and compare."""
        if self.cfg.multi_label:
            th = np.asarray(self.state.get("thresholds", [0.5] * len(self.labels)))
            return [{"labels": [self.labels[j] for j in np.flatnonzero(p >= th)],
                     "scores": {y: round(float(v), 5) for y, v in zip(self.labels, p)}} for p in probs]
        return [{"label": self.labels[int(p.argmax())], "score": round(float(p.max()), 5),
                 "scores": {y: round(float(v), 5) for y, v in zip(self.labels, p)}} for p in probs]

    def calibrate(self, predictions: list[dict], examples: list[dict]) -> dict:
        """Multi-label: per-label thresholds that maximise F1 on the validation split."""
        if not self.cfg.multi_label or not examples:
            return {}
        from ..eval.metrics import tune_thresholds

        y, p = self._arrays(predictions, examples)
        self.state["thresholds"] = [float(t) for t in tune_thresholds(y, p)]
        return {"thresholds": dict(zip(self.labels, self.state["thresholds"]))}

    # -- scoring ------------------------------------------------------------------------------
    def _arrays(self, predictions, examples):
        index = {y: i for i, y in enumerate(self.labels)}
        y = np.zeros((len(examples), len(self.labels)), dtype=int)
        for i, e in enumerate(examples):
            for lab in e["label"]:
                if lab in index:
                    y[i, index[lab]] = 1
        p = np.array([[pr["scores"][lab] for lab in self.labels] for pr in predictions], dtype=float)
        return y, p

    def metrics(self, predictions: list[dict], examples: list[dict]) -> dict:
        from ..eval.metrics import classification_metrics, multilabel_metrics

        if self.cfg.multi_label:
            y, p = self._arrays(predictions, examples)
            th = np.asarray(self.state.get("thresholds", [0.5] * len(self.labels)))
            return multilabel_metrics(y, p, self.labels, th)
        index = {y: i for i, y in enumerate(self.labels)}
        y = [index.get(e["label"], -1) for e in examples]
        probs = np.array([[pr["scores"][lab] for lab in self.labels] for pr in predictions], dtype=float)
        return classification_metrics(y, probs, self.labels)

    def subset_scores(self, predictions, examples, index_sets):
        """Fast path: the headline metrics from label arrays (no full metrics call per resample)."""
        if self.cfg.multi_label:
            return self._multilabel_subset_scores(predictions, examples, index_sets)
        index = {y: i for i, y in enumerate(self.labels)}
        y = np.array([index.get(e["label"], -1) for e in examples])
        p = np.array([index[pr["label"]] for pr in predictions])
        out = {"accuracy": [], "macro_f1": []}
        C = len(self.labels)
        for idx in index_sets:
            yt, yp = y[idx], p[idx]
            out["accuracy"].append(float((yt == yp).mean()))
            tp = np.bincount(yp[yt == yp], minlength=C)[:C]
            pred = np.bincount(yp, minlength=C)[:C]
            true = np.bincount(yt[yt >= 0], minlength=C)[:C]
            f1 = np.where(pred + true > 0, 2 * tp / np.maximum(pred + true, 1), 0.0)
            out["macro_f1"].append(float(f1.mean()))
        return out

    def _multilabel_subset_scores(self, predictions, examples, index_sets):
        """Micro/macro-F1 and subset accuracy per resample from one boolean matrix: the per-resample
        ``multilabel_metrics`` call (ROC-AUC per label) made a 5,426-comment GoEmotions evaluation
        spend minutes in the bootstrap."""
        from ..eval.metrics import prf

        y, p = self._arrays(predictions, examples)
        th = np.asarray(self.state.get("thresholds", [0.5] * len(self.labels)), dtype=float)
        y = y.astype(bool)
        pred = p >= th
        hit, exact = y & pred, (pred == y).all(1)
        out = {h: [] for h in self.headline}
        for idx in index_sets:
            tp, n_pred, n_true = hit[idx].sum(0), pred[idx].sum(0), y[idx].sum(0)
            f = prf(tp, n_pred, n_true)[2]
            out["micro_f1"].append(float(prf(tp.sum(), n_pred.sum(), n_true.sum())[2]))
            out["macro_f1"].append(float(f.mean()) if len(f) else 0.0)
            out["accuracy"].append(float(exact[idx].mean()))
        return out

    def reference(self, example: dict):
        return example["label"]

    def example_errors(self, prediction: dict, example: dict) -> dict | None:
        if self.cfg.multi_label:
            if set(prediction["labels"]) == set(example["label"]):
                return None
            return {"id": example["id"], "text": example["text"], "label": example["label"],
                    "predicted": prediction["labels"]}
        if prediction["label"] == example["label"]:
            return None
        return {"id": example["id"], "text": example["text"], "label": example["label"],
                "predicted": prediction["label"], "score": prediction["score"]}


def label_sort_key(label: str):
    """Numeric labels in numeric order ("2" before "10"), names alphabetically."""
    try:
        return (0, float(label), "")
    except ValueError:
        return (1, 0.0, label)


CONFIG = ClassificationConfig
