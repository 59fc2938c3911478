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
    # structured pruning (export/prune.py): heads keep their width; each layer its own MLP width
    head_dim: int | None = None  # None = d_model // n_head
    layer_mlp_hidden: list[int] | None = None  # per-layer MLP width; None = hidden() in every layer

    def hidden(self, layer: int | None = None) -> int:
        if self.layer_mlp_hidden is not None and layer is not None:
            return self.layer_mlp_hidden[layer]
        return mlp_hidden_size(self.d_model, self.mlp, self.mlp_hidden)


class Block(nn.Module):
    def __init__(self, cfg: GPTConfig, rotary: Rotary | None, layer: int = 0):
        super().__init__()
        self.ln_1 = make_norm(cfg.norm, cfg.d_model, cfg.norm_eps, cfg.bias)
        self.attn = Attention(cfg.d_model, cfg.n_head, cfg.n_kv_head, cfg.bias, cfg.dropout, rotary,
                              head_dim=cfg.head_dim)
        self.ln_2 = make_norm(cfg.norm, cfg.d_model, cfg.norm_eps, cfg.bias)
        self.mlp = MLP(cfg.d_model, cfg.hidden(layer), cfg.mlp, cfg.bias, cfg.dropout)

    def forward(self, x: torch.Tensor, cache: KVCache | None = None, layer: int = 0,
                mask: torch.Tensor | None = None, positions: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), causal=True, mask=mask, cache=cache, layer=layer, positions=positions)
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.config = cfg
        self.wte = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.wpe = nn.Embedding(cfg.block_size, cfg.d_model) if cfg.positions == "learned" else None
        rotary = (Rotary(cfg.head_dim or cfg.d_model // cfg.n_head, cfg.block_size, cfg.rope_base)
                  if cfg.positions == "rope" else None)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList([Block(cfg, rotary, i) for i in range(cfg.n_layer)])
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

    def hidden_states(self, idx: torch.Tensor, cache: KVCache | None = None,
                      attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Final normalised hidden states (B, T, d_model); the body that task heads build on.

        ``attention_mask`` (B, cache.length + T; 1 = real token, 0 = padding) lets a left-padded batch
        of prompts decode together: padding keys are masked out and positions count from each row's
        first real token, so every real token sees what it would see alone. Without it the fast
        mask-free causal path runs (no padding, or right padding that causal attention never sees).
        """
        if isinstance(cache, torch.Tensor):
            raise TypeError("GPT.hidden_states(idx, cache=None, attention_mask=None): pass the mask as attention_mask=")
        B, T = idx.shape
        offset = cache.length if cache is not None else 0
        if offset + T > self.config.block_size:
            raise ValueError(f"sequence of {offset + T} tokens exceeds block_size {self.config.block_size}")
        mask = positions = None
        if attention_mask is None:
            pos = torch.arange(offset, offset + T, device=idx.device)
        else:
            if tuple(attention_mask.shape) != (B, offset + T):
                raise ValueError(f"attention_mask has shape {tuple(attention_mask.shape)}, expected {(B, offset + T)} "
                                 "(cached tokens + new ones)")
            keep = attention_mask.bool()
            positions = pos = (keep.long().cumsum(-1) - 1).clamp_min(0)[:, offset:]  # (B, T)
            S = offset + T
            q_at = torch.arange(offset, S, device=idx.device)[:, None]
            k_at = torch.arange(S, device=idx.device)[None, :]
            # causal over real keys; every query also sees itself, so a padding query's row is never
            # all -inf (that would give NaN, and NaN values leak through 0-weights in later layers)
            mask = ((keep[:, None, :] & (k_at <= q_at)) | (k_at == q_at))[:, None]  # (B, 1, T, S)
        x = self.wte(idx)
        if self.wpe is not None:
            x = x + self.wpe(pos)
        x = self.drop(x)
        if self.wpe is not None:
            positions = None  # learned positions are added above; RoPE blocks need them per row
        for i, block in enumerate(self.blocks):
            if self.gradient_checkpointing and self.training and cache is None:
                x = torch.utils.checkpoint.checkpoint(block, x, None, i, mask, positions, use_reentrant=False)
            else:
                x = block(x, cache, i, mask, positions)
        return self.ln_f(x)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None, cache: KVCache | None = None,
                reduction: str = "mean", attention_mask: torch.Tensor | None = None):
        """Logits (B, T, V) and, with targets, the cross-entropy (targets == -100 are ignored)."""
        h = self.hidden_states(idx, cache=cache, attention_mask=attention_mask)
        if targets is None:
            return self.lm_head(h), None
        logits = self.lm_head(h)
        loss = F.cross_entropy(logits.float().view(-1, logits.size(-1)), targets.reshape(-1),
                               ignore_index=-100, reduction=reduction)
        return logits, loss

    def new_cache(self, max_len: int | None = None) -> KVCache:
        """An empty KV cache; ``max_len`` preallocates (n_layer, B, H, max_len, D) at the first step."""
        return KVCache(self.config.n_layer, max_len)
