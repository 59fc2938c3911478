"""Encoder–decoder Transformer for sequence-to-sequence objectives (translation, summarization).

Config, encoder block, decoder block, model, generate — top to bottom. Pre-norm blocks built on the
shared layers; one embedding table for source and target (and, tied, the output head). The encoder
sees the whole source with a padding mask; the decoder is causal over the target and cross-attends
to the encoder output. Generation encodes once and decodes with a KV cache (self-attention keys
grow by one token per step; cross-attention keys are computed once).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
import torch.nn as nn
import torch.nn.functional as F

from .generate import SamplingConfig, _apply_repetition_penalty, _filter_logits
from .layers import (MLP, Attention, KVCache, ModelConfig, Rotary, init_weights, make_norm, mlp_hidden_size,
                     scale_residual_init)


@dataclass
class Seq2SeqConfig(ModelConfig):
    model_type: ClassVar[str] = "seq2seq"
    vocab_size: int = 8192
    block_size: int = 256  # longest source and longest target
    n_encoder_layer: int = 3
    n_decoder_layer: int = 3
    n_head: int = 6
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
    pad_token_id: int = 0
    decoder_start_token_id: int = 1  # usually the tokenizer's BOS
    eos_token_id: int | None = 2

    def hidden(self) -> int:
        return mlp_hidden_size(self.d_model, self.mlp, self.mlp_hidden)


def shift_right(labels: torch.Tensor, start_id: int, pad_id: int) -> torch.Tensor:
    """Decoder inputs from labels (teacher forcing): ``[start, y0, y1, ...]``; -100 becomes pad."""
    dec = torch.full_like(labels, pad_id)
    dec[:, 1:] = labels[:, :-1].masked_fill(labels[:, :-1] == -100, pad_id)
    dec[:, 0] = start_id
    return dec


class DecoderCache:
    """Self-attention cache (grows per step) plus cross-attention cache (filled once)."""

    def __init__(self, n_layer: int):
        self.self_attn = KVCache(n_layer)
        self.cross = KVCache(n_layer)

    @property
    def length(self) -> int:
        return self.self_attn.length


class EncoderBlock(nn.Module):
    def __init__(self, cfg: Seq2SeqConfig, rotary: Rotary | None):
        super().__init__()
        self.ln_1 = make_norm(cfg.norm, cfg.d_model, cfg.norm_eps, cfg.bias)
        self.attn = Attention(cfg.d_model, cfg.n_head, None, cfg.bias, cfg.dropout, rotary)
        self.ln_2 = make_norm(cfg.norm, cfg.d_model, cfg.norm_eps, cfg.bias)
        self.mlp = MLP(cfg.d_model, cfg.hidden(), cfg.mlp, cfg.bias, cfg.dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), mask=mask)
        return x + self.mlp(self.ln_2(x))


class DecoderBlock(nn.Module):
    def __init__(self, cfg: Seq2SeqConfig, rotary: Rotary | None):
        super().__init__()
        self.ln_1 = make_norm(cfg.norm, cfg.d_model, cfg.norm_eps, cfg.bias)
        self.attn = Attention(cfg.d_model, cfg.n_head, None, cfg.bias, cfg.dropout, rotary)
        self.ln_cross = make_norm(cfg.norm, cfg.d_model, cfg.norm_eps, cfg.bias)
        self.cross_attn = Attention(cfg.d_model, cfg.n_head, None, cfg.bias, cfg.dropout, cross=True)
        self.ln_2 = make_norm(cfg.norm, cfg.d_model, cfg.norm_eps, cfg.bias)
        self.mlp = MLP(cfg.d_model, cfg.hidden(), cfg.mlp, cfg.bias, cfg.dropout)

    def forward(self, x, memory, memory_mask, cache: DecoderCache | None = None, layer: int = 0):
        x = x + self.attn(self.ln_1(x), causal=True, cache=cache and cache.self_attn, layer=layer)
        x = x + self.cross_attn(self.ln_cross(x), context=memory, mask=memory_mask,
                                cache=cache and cache.cross, layer=layer)
        return x + self.mlp(self.ln_2(x))


class Seq2Seq(nn.Module):
    def __init__(self, cfg: Seq2SeqConfig):
        super().__init__()
        self.config = cfg
        self.wte = nn.Embedding(cfg.vocab_size, cfg.d_model)
        learned = cfg.positions == "learned"
        self.enc_wpe = nn.Embedding(cfg.block_size, cfg.d_model) if learned else None
        self.dec_wpe = nn.Embedding(cfg.block_size, cfg.d_model) if learned else None
        rotary = None if learned else Rotary(cfg.d_model // cfg.n_head, cfg.block_size, cfg.rope_base)
        self.drop = nn.Dropout(cfg.dropout)
        self.encoder = nn.ModuleList([EncoderBlock(cfg, rotary) for _ in range(cfg.n_encoder_layer)])
        self.ln_enc = make_norm(cfg.norm, cfg.d_model, cfg.norm_eps, cfg.bias)
        self.decoder = nn.ModuleList([DecoderBlock(cfg, rotary) for _ in range(cfg.n_decoder_layer)])
        self.ln_f = make_norm(cfg.norm, cfg.d_model, cfg.norm_eps, cfg.bias)
        self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        self.apply(init_weights)
        scale_residual_init(self, cfg.n_encoder_layer + cfg.n_decoder_layer)
        if cfg.tie_embeddings:
            self.lm_head.weight = self.wte.weight
        self.gradient_checkpointing = False

    def num_params(self, non_embedding: bool = True) -> int:
        n = sum(p.numel() for p in self.parameters())
        if non_embedding and self.enc_wpe is not None:
            n -= self.enc_wpe.weight.numel() + self.dec_wpe.weight.numel()
        return n

    def _embed(self, ids: torch.Tensor, wpe: nn.Embedding | None, offset: int = 0) -> torch.Tensor:
        T = ids.shape[1]
        if offset + T > self.config.block_size:
            raise ValueError(f"sequence of {offset + T} tokens exceeds block_size {self.config.block_size}")
        x = self.wte(ids)
        if wpe is not None:
            x = x + wpe(torch.arange(offset, offset + T, device=ids.device))
        return self.drop(x)

    def source_mask(self, src: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor | None:
        """(B, 1, 1, S) boolean, True at real source tokens (``attention_mask`` or ``src != pad``);
        None when nothing is padded, so attention can use its fastest (mask-free) kernel."""
        keep = attention_mask.bool() if attention_mask is not None else src != self.config.pad_token_id
        return None if bool(keep.all()) else keep[:, None, None, :]

    def encode(self, src: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        x = self._embed(src, self.enc_wpe)
        for block in self.encoder:
            if self.gradient_checkpointing and self.training:
                x = torch.utils.checkpoint.checkpoint(block, x, mask, use_reentrant=False)
            else:
                x = block(x, mask)
        return self.ln_enc(x)

    def decode(self, tgt: torch.Tensor, memory: torch.Tensor, mask: torch.Tensor | None,
               cache: DecoderCache | None = None) -> torch.Tensor:
        """Final decoder hidden states (B, T, d_model)."""
        x = self._embed(tgt, self.dec_wpe, cache.length if cache is not None else 0)
        for i, block in enumerate(self.decoder):
            if self.gradient_checkpointing and self.training and cache is None:
                x = torch.utils.checkpoint.checkpoint(block, x, memory, mask, use_reentrant=False)
            else:
                x = block(x, memory, mask, cache, i)
        return self.ln_f(x)

    def forward(self, src: torch.Tensor, tgt: torch.Tensor, targets: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None):
        """Logits (B, T, V) for decoder inputs ``tgt`` and, with targets, the cross-entropy (-100 ignored).

        ``tgt`` is usually ``shift_right(targets, ...)``; ``attention_mask`` marks real source tokens.
        """
        mask = self.source_mask(src, attention_mask)
        logits = self.lm_head(self.decode(tgt, self.encode(src, mask), mask))
        if targets is None:
            return logits, None
        loss = F.cross_entropy(logits.float().view(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-100)
        return logits, loss

    def new_cache(self) -> DecoderCache:
        return DecoderCache(self.config.n_decoder_layer)

    @torch.no_grad()
    def generate(self, src: torch.Tensor, cfg: SamplingConfig | None = None, use_cache: bool = True,
                 attention_mask: torch.Tensor | None = None) -> list[list[int]]:
        """Decode a batch of sources; greedy by default (``SamplingConfig(temperature=0)``).

        Returns the generated ids per row, without the start token and cut at EOS.
        """
        cfg = cfg or SamplingConfig(temperature=0.0, top_k=None)
        eos = cfg.eos_token_id if cfg.eos_token_id is not None else self.config.eos_token_id
        was_training = self.training
        self.eval()
        gen = torch.Generator(device="cpu")
        if cfg.seed is not None:
            gen.manual_seed(cfg.seed)
        src = torch.as_tensor(src, dtype=torch.long, device=self.wte.weight.device)
        if src.dim() == 1:
            src = src[None]
        mask = self.source_mask(src, attention_mask)
        memory = self.encode(src, mask)
        B = src.shape[0]
        out = torch.full((B, 1), self.config.decoder_start_token_id, dtype=torch.long, device=src.device)
        done = torch.zeros(B, dtype=torch.bool, device=src.device)
        cache = self.new_cache() if use_cache else None
        try:
            for _ in range(min(cfg.max_new_tokens, self.config.block_size - 1)):
                step = out[:, -1:] if cache is not None else out
                logits = self.lm_head(self.decode(step, memory, mask, cache))[:, -1, :].float()
                logits = _apply_repetition_penalty(logits, out[:, 1:], cfg.repetition_penalty) \
                    if out.shape[1] > 1 else logits
                if cfg.temperature <= 0:
                    nxt = logits.argmax(-1)
                else:
                    probs = _filter_logits(logits / cfg.temperature, cfg.top_k, cfg.top_p).softmax(-1)
                    nxt = torch.multinomial(probs.cpu(), 1, generator=gen).squeeze(1).to(src.device)
                nxt = nxt.masked_fill(done, self.config.pad_token_id)
                out = torch.cat([out, nxt[:, None]], dim=1)
                if eos is not None:
                    done |= nxt == eos
                if bool(done.all()):
                    break
        finally:
            self.train(was_training)
        result = []
        for row in out[:, 1:].tolist():
            if eos is not None and eos in row:
                row = row[: row.index(eos)]
            result.append(row)
        return result
