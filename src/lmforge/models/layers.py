"""Shared Transformer layers: norms, rotary positions, attention, MLPs.

Every family (GPT, BERT, encoder–decoder) builds on these, so an improvement here (say, a faster
attention path) reaches all of them. Attention always goes through
``F.scaled_dot_product_attention`` so PyTorch picks the best kernel for the hardware.
"""

from __future__ import annotations

import math
from dataclasses import asdict, fields
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.onnx.is_in_onnx_export():  # the TorchScript-based ONNX exporter has no aten::rms_norm
            return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight
        return F.rms_norm(x, (x.shape[-1],), self.weight, self.eps)


def make_norm(kind: str, dim: int, eps: float = 1e-5, bias: bool = True) -> nn.Module:
    if kind == "rmsnorm":
        return RMSNorm(dim, eps)
    if kind == "layernorm":
        return nn.LayerNorm(dim, eps=eps, bias=bias)
    raise ValueError(f"unknown norm '{kind}' (use layernorm or rmsnorm)")


class Rotary(nn.Module):
    """Rotary position embedding (RoPE), cos/sin cached up to ``max_len``; half-split layout (LLaMA)."""

    def __init__(self, head_dim: int, max_len: int, base: float = 10000.0):
        super().__init__()
        inv = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
        t = torch.arange(max_len, dtype=torch.float32)
        freqs = torch.outer(t, inv)
        emb = torch.cat([freqs, freqs], dim=-1)
        self.register_buffer("cos", emb.cos(), persistent=False)
        self.register_buffer("sin", emb.sin(), persistent=False)

    def forward(self, x: torch.Tensor, offset: int | torch.Tensor = 0) -> torch.Tensor:
        """x: (B, H, T, D); ``offset`` is the position of x's first token, or per-row positions (B, T)
        (left-padded batches count positions from each row's first real token)."""
        if isinstance(offset, torch.Tensor):
            cos = self.cos[offset][:, None].to(x.dtype)  # (B, 1, T, D)
            sin = self.sin[offset][:, None].to(x.dtype)
        else:
            T = x.shape[-2]
            cos = self.cos[offset : offset + T].to(x.dtype)
            sin = self.sin[offset : offset + T].to(x.dtype)
        x1, x2 = x.chunk(2, dim=-1)
        return x * cos + torch.cat([-x2, x1], dim=-1) * sin


class KVCache:
    """Per-layer key/value cache for incremental decoding, one row per sequence.

    Two storages. By default each layer's keys grow by ``torch.cat`` (simple; fine for one short
    prompt). With ``max_len`` all layers live in one preallocated (n_layer, B, H, max_len, D) tensor
    for keys and one for values, allocated at the first update, so a decoding step writes one
    column in place instead of copying the whole cache. Either way ``k[layer]`` / ``v[layer]`` are
    the filled part, (B, H, length, D), and ``select`` / ``trim_front`` keep batched decoding
    exact when rows finish or beams are reordered.
    """

    def __init__(self, n_layer: int, max_len: int | None = None):
        self.n_layer, self.max_len = n_layer, max_len
        self.k: list[torch.Tensor | None] = [None] * n_layer
        self.v: list[torch.Tensor | None] = [None] * n_layer
        self._kbuf: torch.Tensor | None = None  # (n_layer, B, H, max_len, D) when preallocated
        self._vbuf: torch.Tensor | None = None

    @property
    def length(self) -> int:
        """Tokens cached so far (layer 0; read it before a forward pass updates the layers)."""
        return self.layer_length(0)

    def layer_length(self, layer: int) -> int:
        return 0 if self.k[layer] is None else self.k[layer].shape[-2]

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Append this step's (B, H, T, D) keys/values; return every cached one for the layer."""
        if self.max_len is None:
            if self.k[layer] is not None:
                k = torch.cat([self.k[layer], k], dim=-2)
                v = torch.cat([self.v[layer], v], dim=-2)
            self.k[layer], self.v[layer] = k, v
            return k, v
        if self._kbuf is None:
            B, H, _, D = k.shape
            self._kbuf = k.new_empty(self.n_layer, B, H, self.max_len, D)
            self._vbuf = v.new_empty(self.n_layer, B, H, self.max_len, D)
        n, T = self.layer_length(layer), k.shape[-2]
        if n + T > self.max_len:
            raise ValueError(f"KV cache holds {self.max_len} tokens; {n} cached + {T} new do not fit")
        self._kbuf[layer, :, :, n : n + T] = k
        self._vbuf[layer, :, :, n : n + T] = v
        self.k[layer], self.v[layer] = self._kbuf[layer, :, :, : n + T], self._vbuf[layer, :, :, : n + T]
        return self.k[layer], self.v[layer]

    def _views(self, n: int) -> None:
        for i in range(self.n_layer):
            if self.k[i] is not None:
                self.k[i], self.v[i] = self._kbuf[i, :, :, :n], self._vbuf[i, :, :, :n]

    def select(self, rows: torch.Tensor) -> None:
        """Keep batch rows ``rows`` (long, in that order): drop finished sequences, follow beams."""
        if self._kbuf is None:
            for i in range(self.n_layer):
                if self.k[i] is not None:
                    self.k[i], self.v[i] = self.k[i].index_select(0, rows), self.v[i].index_select(0, rows)
            return
        n = self.length
        if rows.numel() == self._kbuf.shape[1]:  # same batch size (beams): reorder in place, filled part only
            self._kbuf[:, :, :, :n] = self._kbuf[:, :, :, :n].index_select(1, rows)
            self._vbuf[:, :, :, :n] = self._vbuf[:, :, :, :n].index_select(1, rows)
        else:
            self._kbuf, self._vbuf = self._kbuf.index_select(1, rows), self._vbuf.index_select(1, rows)
        self._views(n)

    def trim_front(self, m: int) -> None:
        """Forget the first ``m`` cached positions (columns that are padding in every remaining row)."""
        if m <= 0:
            return
        if self._kbuf is None:
            for i in range(self.n_layer):
                if self.k[i] is not None:
                    self.k[i], self.v[i] = self.k[i][:, :, m:], self.v[i][:, :, m:]
            return
        n = self.length
        self._kbuf[:, :, :, : n - m] = self._kbuf[:, :, :, m:n].clone()
        self._vbuf[:, :, :, : n - m] = self._vbuf[:, :, :, m:n].clone()
        self._views(n - m)

    def join(self, other: "KVCache") -> None:
        """Append ``other``'s rows after these, left-padding the shorter cache with zeros so both end
        at the same column (continuous batching: freshly prefilled requests join the running batch).
        The caller masks the padding columns, as for a left-padded prompt; the storage kind is kept."""
        parts = [c for c in (self, other) if c.k[0] is not None]
        if not parts:
            return
        L = max(c.length for c in parts)
        if self.max_len is not None and L > self.max_len:
            raise ValueError(f"KV cache holds {self.max_len} tokens; joining needs {L}")

        def padded(t: torch.Tensor) -> torch.Tensor:  # (B, H, n, D) -> (B, H, L, D), zeros in front
            return F.pad(t, (0, 0, L - t.shape[-2], 0)) if t.shape[-2] < L else t

        ks = [torch.cat([padded(c.k[i]) for c in parts]) for i in range(self.n_layer)]
        vs = [torch.cat([padded(c.v[i]) for c in parts]) for i in range(self.n_layer)]
        if self.max_len is None:
            self.k, self.v = ks, vs
            return
        B, H, _, D = ks[0].shape
        self._kbuf = ks[0].new_zeros(self.n_layer, B, H, self.max_len, D)
        self._vbuf = vs[0].new_zeros(self.n_layer, B, H, self.max_len, D)
        for i in range(self.n_layer):
            self._kbuf[i, :, :, :L], self._vbuf[i, :, :, :L] = ks[i], vs[i]
            self.k[i], self.v[i] = self._kbuf[i, :, :, :L], self._vbuf[i, :, :, :L]


class Attention(nn.Module):
    """Multi-head attention with optional grouped-query heads (n_kv_head < n_head), RoPE and KV cache.

    Used as self-attention (``context=None``) or cross-attention (keys/values from ``context``).
    """

    def __init__(self, d_model: int, n_head: int, n_kv_head: int | None = None, bias: bool = True,
                 dropout: float = 0.0, rotary: Rotary | None = None, cross: bool = False,
                 head_dim: int | None = None):
        """``head_dim``: set when heads were pruned (export/prune.py): fewer heads of the original width,
        so q/kv/o projections have n_head·head_dim rows/columns instead of d_model."""
        super().__init__()
        n_kv_head = n_kv_head or n_head
        if (head_dim is None and d_model % n_head) or n_head % n_kv_head:
            raise ValueError(f"d_model={d_model} must divide by n_head={n_head}, and n_head by n_kv_head={n_kv_head}")
        self.n_head, self.n_kv_head, self.head_dim = n_head, n_kv_head, head_dim or d_model // n_head
        self.cross = cross
        inner = n_head * self.head_dim  # = d_model unless heads were pruned
        self.q_proj = nn.Linear(d_model, inner, bias=bias)
        self.kv_proj = nn.Linear(d_model, 2 * n_kv_head * self.head_dim, bias=bias)
        self.o_proj = nn.Linear(inner, d_model, bias=bias)
        self.dropout = dropout
        self.rotary = rotary
        self.prefix: nn.Module | None = None  # learned keys/values every query also sees (prefix tuning, models/peft.py)

    def forward(self, x: torch.Tensor, *, causal: bool = False, mask: torch.Tensor | None = None,
                context: torch.Tensor | None = None, cache: KVCache | None = None, layer: int = 0,
                positions: torch.Tensor | None = None) -> torch.Tensor:
        """``mask``: boolean, True = may attend, broadcast to (B, H, T, S); ``positions``: per-row
        RoPE positions (B, T) for padded batches (default: consecutive from the cache length)."""
        B, T, C = x.shape
        q = self.q_proj(x).view(B, T, self.n_head, self.head_dim).transpose(1, 2)
        src = x if context is None else context
        offset = 0
        if self.cross and cache is not None and cache.k[layer] is not None:
            k, v = cache.k[layer], cache.v[layer]  # the memory's keys were projected at the first step
        else:
            k, v = self.kv_proj(src).view(B, src.shape[1], 2, self.n_kv_head, self.head_dim).permute(2, 0, 3, 1, 4)
            # per layer: earlier layers have already appended this step's keys when later ones run
            offset = cache.layer_length(layer) if (cache is not None and not self.cross) else 0
            if self.rotary is not None and not self.cross:
                pos = offset if positions is None else positions
                q, k = self.rotary(q, pos), self.rotary(k, pos)
            if cache is not None and self.cross:
                cache.k[layer], cache.v[layer] = k, v
            elif cache is not None:
                k, v = cache.update(layer, k, v)
        n_prefix = 0
        if self.prefix is not None and not self.cross:  # in front of the keys, never in the cache
            k, v = self.prefix(k, v)
            n_prefix = self.prefix.length
            if mask is not None:
                mask = torch.cat([mask.new_ones(*mask.shape[:-1], n_prefix), mask], dim=-1)
        if self.n_kv_head != self.n_head:
            rep = self.n_head // self.n_kv_head
            k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
        is_causal = causal and mask is None
        if is_causal and offset + n_prefix > 0 and T == 1:
            is_causal = False  # one new token sees every cached key: no mask at all
        elif is_causal and offset + n_prefix > 0:
            # decoding with a cache: new queries see every cached key plus the causal part of the new ones
            S = k.shape[-2]
            mask = torch.ones(T, S, dtype=torch.bool, device=x.device).tril(diagonal=S - T)
            is_causal = False
        # here S == T whenever is_causal is still set, so at T == 1 a causal mask equals none: ``T > 1``
        # only picks the mask-free kernel in eager mode (traced or exported, T is symbolic and cannot pick)
        is_causal = is_causal and (torch.jit.is_tracing() or torch.compiler.is_compiling() or T > 1)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal,
                                           dropout_p=self.dropout if self.training else 0.0)
        return self.o_proj(y.transpose(1, 2).reshape(B, T, self.n_head * self.head_dim))


def prepend_prompt(prompt: nn.Module | None, x: torch.Tensor,
                   mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None, int]:
    """Prompt tuning in an encoder: learned vectors in front of the embedded tokens, visible to every
    token (the (B, 1, 1, T) padding mask opens for them); the caller drops them from its output."""
    if prompt is None:
        return x, mask, 0
    p = prompt.prompt_embeddings.to(x.dtype).unsqueeze(0).expand(x.shape[0], -1, -1)
    n = p.shape[1]
    if mask is not None:
        mask = torch.cat([mask.new_ones(*mask.shape[:-1], n), mask], dim=-1)
    return torch.cat([p, x], dim=1), mask, n


class MLP(nn.Module):
    """GELU MLP (``gelu``: tanh approximation, GPT-2; ``gelu_exact``: erf, BERT) or SwiGLU (LLaMA)."""

    def __init__(self, d_model: int, hidden: int, kind: str = "gelu", bias: bool = True, dropout: float = 0.0):
        super().__init__()
        self.kind = kind
        if kind == "swiglu":
            self.gate = nn.Linear(d_model, hidden, bias=bias)
        elif kind not in ("gelu", "gelu_exact"):
            raise ValueError(f"unknown mlp '{kind}' (use gelu, gelu_exact or swiglu)")
        self.up = nn.Linear(d_model, hidden, bias=bias)
        self.down = nn.Linear(hidden, d_model, bias=bias)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "swiglu":
            h = F.silu(self.gate(x)) * self.up(x)
        else:
            h = F.gelu(self.up(x), approximate="tanh" if self.kind == "gelu" else "none")
        return self.drop(self.down(h))


def init_weights(module: nn.Module, std: float = 0.02) -> None:
    """GPT-2 style init: N(0, 0.02) for linear/embedding weights, zeros for biases."""
    if isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, mean=0.0, std=std)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Embedding):
        nn.init.normal_(module.weight, mean=0.0, std=std)


def scale_residual_init(model: nn.Module, n_layer: int, std: float = 0.02) -> None:
    """Scale output projections by 1/sqrt(2·n_layer) (GPT-2) so deep residual streams start stable."""
    for name, p in model.named_parameters():
        if name.endswith("o_proj.weight") or name.endswith("down.weight"):
            nn.init.normal_(p, mean=0.0, std=std / math.sqrt(2 * n_layer))


class ModelConfig:
    """Shared ``config.json`` round trip for the config dataclasses; ``model_type`` names the family."""

    model_type: ClassVar[str]

    def to_dict(self) -> dict:
        return {"model_type": self.model_type, **asdict(self)}

    @classmethod
    def from_dict(cls, d: dict):
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def mlp_hidden_size(d_model: int, mlp: str = "gelu", override: int | None = None) -> int:
    """MLP width: ``override``, else 4·d_model (GELU) or ~8/3·d_model rounded up to 64 (SwiGLU)."""
    if override:
        return override
    if mlp == "swiglu":
        return 64 * ((int(8 * d_model / 3) + 63) // 64)
    return 4 * d_model


def set_attention_dropout(model: nn.Module, p: float) -> int:
    """Set the attention-probability dropout of every ``Attention`` in ``model``; returns how many.

    Why: with dropout on the probabilities, ``scaled_dot_product_attention`` on CPU falls back to the
    math kernel, which materialises every (T x T) score matrix for backward; at 0 it can use the fused
    kernel. Hidden-state dropout (residual, MLP) is untouched."""
    n = 0
    for m in model.modules():
        if isinstance(m, Attention):
            m.dropout = p
            n += 1
    return n
