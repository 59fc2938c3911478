"""Decoder-only GPT: config, block, model, generate — top to bottom, nanoGPT style.

One class covers GPT-2 (learned positions, LayerNorm, GELU, tied head) and LLaMA-style models
(RoPE, RMSNorm, SwiGLU, grouped-query attention, untied head) by configuration, so HF interop
(hf.py) maps both layouts onto it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
import torch.nn as nn
import torch.nn.functional as F

from .layers import (MLP, Attention, KVCache, ModelConfig, Rotary, init_weights, make_norm, mlp_hidden_size,
                     scale_residual_init)


@dataclass
class GPTConfig(ModelConfig):
    model_type: ClassVar[str] = "gpt"
    vocab_size: int = 8192
    block_size: int = 256
    n_layer: int = 6
    n_head: int = 6
    n_kv_head: int | None = None  # None = n_head (multi-head); 1 = multi-query; else grouped-query
    d_model: int = 384
    mlp_hidden: int | None = None  # None = 4·d_model (gelu) or ~8/3·d_model rounded to 64 (swiglu)
    positions: Literal["learned", "rope"] = "learned"
    norm: Literal["layernorm", "rmsnorm"] = "layernorm"
    mlp: Literal["gelu", "swiglu"] = "gelu"
    tie_embeddings: bool = True
    bias: bool = True
    dropout: float = 0.0
    norm_eps: float = 1e-5
    rope_base: float = 10000.0

    def hidden(self) -> int:
        return mlp_hidden_size(self.d_model, self.mlp, self.mlp_hidden)


class Block(nn.Module):
    def __init__(self, cfg: GPTConfig, rotary: Rotary | None):
        super().__init__()
        self.ln_1 = make_norm(cfg.norm, cfg.d_model, cfg.norm_eps, cfg.bias)
        self.attn = Attention(cfg.d_model, cfg.n_head, cfg.n_kv_head, cfg.bias, cfg.dropout, rotary)
        self.ln_2 = make_norm(cfg.norm, cfg.d_model, cfg.norm_eps, cfg.bias)
        self.mlp = MLP(cfg.d_model, cfg.hidden(), cfg.mlp, cfg.bias, cfg.dropout)

    def forward(self, x: torch.Tensor, cache: KVCache | None = None, layer: int = 0) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), causal=True, cache=cache, layer=layer)
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.config = cfg
        self.wte = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.wpe = nn.Embedding(cfg.block_size, cfg.d_model) if cfg.positions == "learned" else None
        rotary = Rotary(cfg.d_model // cfg.n_head, cfg.block_size, cfg.rope_base) if cfg.positions == "rope" else None
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList([Block(cfg, rotary) for _ in range(cfg.n_layer)])
        self.ln_f = make_norm(cfg.norm, cfg.d_model, cfg.norm_eps, cfg.bias)
        self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        self.apply(init_weights)
        scale_residual_init(self, cfg.n_layer)
        if cfg.tie_embeddings:
            self.lm_head.weight = self.wte.weight
        self.gradient_checkpointing = False

    def num_params(self, non_embedding: bool = True) -> int:
        n = sum(p.numel() for p in self.parameters())
        if non_embedding and self.wpe is not None:
            n -= self.wpe.weight.numel()
        return n

    def hidden_states(self, idx: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        """Final normalised hidden states (B, T, d_model); the body that task heads build on."""
        B, T = idx.shape
        offset = cache.length if cache is not None else 0
        if offset + T > self.config.block_size:
            raise ValueError(f"sequence of {offset + T} tokens exceeds block_size {self.config.block_size}")
        x = self.wte(idx)
        if self.wpe is not None:
            x = x + self.wpe(torch.arange(offset, offset + T, device=idx.device))
        x = self.drop(x)
        for i, block in enumerate(self.blocks):
            if self.gradient_checkpointing and self.training and cache is None:
                x = torch.utils.checkpoint.checkpoint(block, x, use_reentrant=False)
            else:
                x = block(x, cache, i)
        return self.ln_f(x)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None, cache: KVCache | None = None,
                reduction: str = "mean"):
        """Logits (B, T, V) and, with targets, the cross-entropy (targets == -100 are ignored)."""
        h = self.hidden_states(idx, cache)
        if targets is None:
            return self.lm_head(h), None
        logits = self.lm_head(h)
        loss = F.cross_entropy(logits.float().view(-1, logits.size(-1)), targets.reshape(-1),
                               ignore_index=-100, reduction=reduction)
        return logits, loss

    def new_cache(self) -> KVCache:
        return KVCache(self.config.n_layer)
