"""The adapter layers written here (peft has no bottleneck adapter, and its prefix and prompt tuning
work through Hugging Face models' forward): bottleneck adapters, prefix keys/values inside
``layers.Attention``, prompt vectors an encoder reads first. ``peft.py`` chooses, freezes, saves and
loads them like the peft-made ones.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class Bottleneck(nn.Module):
    """A bottleneck adapter on a sublayer's output projection: ``y + up(gelu(down(y)))``.

    It sits where Houlsby et al. put it, after the projection and before the residual sum. ``up``
    starts at zero, so training starts from exactly the base model."""

    def __init__(self, base_layer: nn.Linear, size: int, dropout: float):
        super().__init__()
        self.base_layer = base_layer
        d = base_layer.out_features
        self.adapter_down = nn.Linear(d, size)
        self.adapter_up = nn.Linear(size, d)
        self.adapter_drop = nn.Dropout(dropout)
        nn.init.zeros_(self.adapter_up.weight)
        nn.init.zeros_(self.adapter_up.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.base_layer(x)
        return y + self.adapter_up(self.adapter_drop(F.gelu(self.adapter_down(y))))


class PromptEmbedding(nn.Module):
    """Prompt tuning (Lester et al., 2021): learned vectors an encoder body reads before the tokens
    (``layers.prepend_prompt``). Initialised from vocabulary embeddings, as the paper found best."""

    def __init__(self, init: torch.Tensor):
        super().__init__()
        self.prompt_embeddings = nn.Parameter(init.detach().clone())  # (length, d_model)


class PrefixKV(nn.Module):
    """Prefix tuning: ``length`` learned keys and values per key/value head, in front of a layer's own.

    Every query may attend to them (padding and causal masks never hide them); they carry no position
    (RoPE is not applied to them) and never enter the KV cache, so cached decoding and beam search
    work unchanged. Initialised from real tokens' projections, which trains more stably than noise."""

    def __init__(self, k: torch.Tensor, v: torch.Tensor):
        super().__init__()
        self.prefix_k = nn.Parameter(k.detach().clone())  # (n_kv_head, length, head_dim)
        self.prefix_v = nn.Parameter(v.detach().clone())

    @property
    def length(self) -> int:
        return self.prefix_k.shape[1]

    def forward(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        B = k.shape[0]
        pk = self.prefix_k.to(k.dtype).unsqueeze(0).expand(B, -1, -1, -1)
        pv = self.prefix_v.to(v.dtype).unsqueeze(0).expand(B, -1, -1, -1)
        return torch.cat([pk, k], dim=2), torch.cat([pv, v], dim=2)


def self_attention_names(root: nn.Module) -> list[str]:
    from .layers import Attention

    return [n for n, m in root.named_modules() if isinstance(m, Attention) and not m.cross and n]


def add_bottlenecks(root: nn.Module, targets: list[str], size: int | None, dropout: float) -> None:
    """Wrap each target linear layer (a sublayer's output projection); ``size`` defaults to d/16."""
    for name in targets:
        parent_name, _, child = name.rpartition(".")
        parent = root.get_submodule(parent_name) if parent_name else root
        base = getattr(parent, child)
        setattr(parent, child, Bottleneck(base, size or max(1, base.out_features // 16), dropout))


def add_prefixes(root: nn.Module, targets: list[str], n: int) -> None:
    """Each layer's prefix starts as its own keys/values of randomly drawn vocabulary entries (unit RMS)."""
    tables = [m for m in root.modules() if isinstance(m, nn.Embedding)]
    if tables:
        table = max(tables, key=lambda m: m.num_embeddings).weight.detach()
        x = table[torch.randint(0, table.shape[0], (n,))]
    else:
        x = torch.randn(n, root.get_submodule(targets[0]).q_proj.in_features)
    x = x / x.pow(2).mean(-1, keepdim=True).sqrt().clamp_min(1e-6)
    with torch.no_grad():
        for name in targets:
            attn = root.get_submodule(name)
            kv = attn.kv_proj(x.to(attn.kv_proj.weight.dtype)).view(n, 2, attn.n_kv_head, attn.head_dim)
            kv = kv.permute(1, 2, 0, 3)  # (2, n_kv_head, n, head_dim)
            attn.prefix = PrefixKV(kv[0], kv[1])


def add_prompt(root: nn.Module, n: int) -> None:
    """Start from randomly drawn vocabulary embeddings, normalised as the body normalises its own."""
    table = root.wte.weight.detach()
    x = table[torch.randint(0, table.shape[0], (n,))]
    with torch.no_grad():
        if hasattr(root, "ln_emb"):  # BERT's embedding LayerNorm: the prompt goes in after it
            x = root.ln_emb(x)
    root.prompt = PromptEmbedding(x)
