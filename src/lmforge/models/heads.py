"""Task heads on top of a pretrained body."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class SequenceClassifier(nn.Module):
    """A decoder body plus a linear head over pooled hidden states.

    Pooling is over real tokens only (``attention_mask``). With right padding and causal attention
    real tokens never see padding, so no attention mask is needed inside the body.
    """

    def __init__(self, body: nn.Module, n_classes: int, pooling: str = "mean", dropout: float = 0.1,
                 labels: list[str] | None = None):
        super().__init__()
        if pooling not in ("mean", "last"):
            raise ValueError(f"unknown pooling '{pooling}' (use mean or last)")
        self.body, self.pooling = body, pooling
        self.labels = labels or [str(i) for i in range(n_classes)]
        d = body.config.d_model
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(d, n_classes)
        nn.init.normal_(self.head.weight, std=0.02)
        nn.init.zeros_(self.head.bias)
        self.config = _HeadConfig(self)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor | None = None,
                reduction: str = "mean"):
        h = self.body.hidden_states(input_ids)
        m = attention_mask.unsqueeze(-1).to(h.dtype)
        if self.pooling == "mean":
            pooled = (h * m).sum(1) / m.sum(1).clamp_min(1.0)
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
