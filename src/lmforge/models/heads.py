"""Task heads on top of a body (GPT decoder, BERT encoder, or a seq2seq encoder).

Every body exposes ``hidden_states(input_ids, attention_mask=None, ...)``; heads never branch on the
family. A head model's ``config.json`` is the head's settings plus the body's config under
``body``, so ``models.io.load_model`` rebuilds body and head from one file.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn as nn
import torch.nn.functional as F

HEADS: dict[str, type["HeadModel"]] = {}


def _register(cls):
    HEADS[cls.model_type] = cls
    return cls


def body_states(body: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor | None,
                token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
    """(B, T, d) hidden states of any body under the one contract."""
    if token_type_ids is not None and body.config.to_dict().get("model_type") == "bert":
        return body.hidden_states(input_ids, token_type_ids=token_type_ids, attention_mask=attention_mask)
    return body.hidden_states(input_ids, attention_mask=attention_mask)


def width(body: nn.Module) -> int:
    """Width of the body's hidden states (a bidirectional RNN has two directions side by side)."""
    return getattr(body, "output_dim", body.config.d_model)


class HeadConfig:
    """``config.json`` for a head model: the head's settings plus the body's config."""

    def __init__(self, model: "HeadModel"):
        self._model = model
        body = model.body.config
        self.d_model = body.d_model
        self.n_layer = getattr(body, "n_layer", getattr(body, "n_encoder_layer", 0))
        self.block_size = body.block_size

    def to_dict(self) -> dict:
        m = self._model
        return {"model_type": m.model_type, **m.head_settings(), "body": m.body.config.to_dict()}


class HeadModel(nn.Module):
    model_type: ClassVar[str]

    def __init__(self, body: nn.Module):
        super().__init__()
        self.body = body
        self.config = HeadConfig(self)

    def head_settings(self) -> dict:
        raise NotImplementedError

    @classmethod
    def from_settings(cls, body: nn.Module, settings: dict) -> "HeadModel":
        raise NotImplementedError


@_register
class SequenceClassifier(HeadModel):
    """A linear head over pooled hidden states: ``mean`` over real tokens, ``last`` real token
    (decoders) or ``cls`` (the first token, encoders). Multi-label tasks apply a sigmoid to the same
    logits; the loss is the task's."""

    model_type = "sequence_classifier"

    def __init__(self, body: nn.Module, n_classes: int, pooling: str = "mean", dropout: float = 0.1,
                 labels: list[str] | None = None):
        if pooling not in ("mean", "last", "cls"):
            raise ValueError(f"unknown pooling '{pooling}' (use mean, last or cls)")
        super().__init__(body)
        self.pooling, self.dropout_p = pooling, dropout
        self.labels = labels or [str(i) for i in range(n_classes)]
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(width(body), n_classes)
        nn.init.normal_(self.head.weight, std=0.02)
        nn.init.zeros_(self.head.bias)

    def head_settings(self) -> dict:
        return {"pooling": self.pooling, "labels": self.labels, "dropout": self.dropout_p}

    @classmethod
    def from_settings(cls, body, s):
        return cls(body, len(s["labels"]), s["pooling"], s.get("dropout", 0.0), s["labels"])

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor | None = None,
                reduction: str = "mean", token_type_ids: torch.Tensor | None = None):
        h = body_states(self.body, input_ids, attention_mask, token_type_ids)
        m = attention_mask.unsqueeze(-1).to(h.dtype)
        if self.pooling == "mean":
            pooled = (h * m).sum(1) / m.sum(1).clamp_min(1.0)
        elif self.pooling == "cls":
            pooled = h[:, 0]
        else:
            last = attention_mask.sum(1).clamp_min(1) - 1
            pooled = h[torch.arange(h.shape[0], device=h.device), last]
        logits = self.head(self.drop(pooled))
        loss = None if labels is None else F.cross_entropy(logits.float(), labels, reduction=reduction)
        return logits, loss


@_register
class TokenClassifier(HeadModel):
    """Per-token logits (NER); with ``crf`` a linear-chain CRF scores whole tag sequences."""

    model_type = "token_classifier"

    def __init__(self, body: nn.Module, labels: list[str], dropout: float = 0.1, crf: bool = False):
        super().__init__(body)
        self.labels, self.dropout_p = list(labels), dropout
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(width(body), len(labels))
        nn.init.normal_(self.head.weight, std=0.02)
        nn.init.zeros_(self.head.bias)
        self.crf = None
        if crf:
            from .crf import CRF

            self.crf = CRF(len(labels))

    def head_settings(self) -> dict:
        return {"labels": self.labels, "dropout": self.dropout_p, "crf": self.crf is not None}

    @classmethod
    def from_settings(cls, body, s):
        return cls(body, s["labels"], s.get("dropout", 0.0), s.get("crf", False))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        """Emission scores (B, T, n_labels)."""
        return self.head(self.drop(body_states(self.body, input_ids, attention_mask, token_type_ids)))


@_register
class SpanExtractor(HeadModel):
    """Start/end logits per token for extractive QA (SQuAD-style)."""

    model_type = "span_extractor"

    def __init__(self, body: nn.Module):
        super().__init__(body)
        self.head = nn.Linear(width(body), 2)
        nn.init.normal_(self.head.weight, std=0.02)
        nn.init.zeros_(self.head.bias)

    def head_settings(self) -> dict:
        return {}

    @classmethod
    def from_settings(cls, body, s):
        return cls(body)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.head(body_states(self.body, input_ids, attention_mask, token_type_ids))
        start, end = logits.float().unbind(-1)
        return start, end
