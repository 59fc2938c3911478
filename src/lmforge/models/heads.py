"""Task heads on top of a pretrained body."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class SequenceClassifier(nn.Module):
    """A pretrained body (GPT decoder or BERT encoder) plus a linear head over pooled hidden states.

    Pooling is over real tokens only (``attention_mask``): ``mean``, ``last`` (decoders) or ``cls``
    (encoders). A decoder needs no padding mask inside the body: with right padding and causal
    attention real tokens never see padding. An encoder attends both ways, so it gets the mask.
    """

    def __init__(self, body: nn.Module, n_classes: int, pooling: str = "mean", dropout: float = 0.1,
                 labels: list[str] | None = None):
        super().__init__()
        if pooling not in ("mean", "last", "cls"):
            raise ValueError(f"unknown pooling '{pooling}' (use mean, last or cls)")
        self.body, self.pooling = body, pooling
        self.bidirectional = body.config.to_dict().get("model_type") == "bert"
        self.labels = labels or [str(i) for i in range(n_classes)]
        d = body.config.d_model
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(d, n_classes)
        nn.init.normal_(self.head.weight, std=0.02)
        nn.init.zeros_(self.head.bias)
        self.config = _HeadConfig(self)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor | None = None,
                reduction: str = "mean"):
        if self.bidirectional:
            h = self.body.hidden_states(input_ids, attention_mask=attention_mask)
        else:
            h = self.body.hidden_states(input_ids)
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


class _HeadConfig:
    """``config.json`` for a classifier: the body's config plus the head's settings."""

    def __init__(self, model: SequenceClassifier):
        self._model = model
        self.d_model = model.body.config.d_model
        self.n_layer = model.body.config.n_layer
        self.block_size = model.body.config.block_size

    def to_dict(self) -> dict:
        m = self._model
        return {"model_type": "sequence_classifier", "pooling": m.pooling, "labels": m.labels,
                "body": m.body.config.to_dict()}
