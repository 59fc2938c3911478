"""Encoder–decoder Transformer for sequence-to-sequence objectives (translation, summarization).

Config, encoder block, decoder block, model, generate — top to bottom. Pre-norm blocks built on the
shared layers; one embedding table for source and target (and, tied, the output head). The encoder
sees the whole source with a padding mask; the decoder is causal over the target and cross-attends
to the encoder output. Generation encodes once and decodes with a KV cache (self-attention keys
written one column per step into a preallocated cache; cross-attention keys computed once).
``generate`` samples or decodes greedily with the shared ``sample_next``; with ``num_beams > 1`` (or
``beam_search`` for scored n-best lists) it runs beam search over sources x beams: the encoder and
the first decoder step run once per source, then memory and caches are expanded per beam.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
import torch.nn as nn
import torch.nn.functional as F

from .generate import Hypothesis, SamplingConfig, beam_search, sample_next
from .layers import (MLP, Attention, KVCache, ModelConfig, Rotary, init_weights, make_norm, mlp_hidden_size,
                     prepend_prompt, scale_residual_init)


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
    """Self-attention cache (grows per step; preallocated with ``max_len``) plus cross-attention cache
    (filled once)."""

    def __init__(self, n_layer: int, max_len: int | None = None):
        self.self_attn = KVCache(n_layer, max_len)
        self.cross = KVCache(n_layer)

    @property
    def length(self) -> int:
        return self.self_attn.length

    def select(self, rows: torch.Tensor, cross: bool = True) -> None:
        """Keep rows ``rows``. ``cross=False`` skips the cross-attention keys: right when rows only move
        between beams of the same source, whose memory (and so cross keys) is identical."""
        self.self_attn.select(rows)
        if cross:
            self.cross.select(rows)


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
        self.prompt: nn.Module | None = None  # learned encoder input vectors (prompt tuning, models/peft.py)

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
        """(B, 1, 1, S) boolean, True at real source tokens.

        With ``attention_mask`` it is used as given (no data-dependent branch, so the model traces).
        Without one, padding is ``src == pad_token_id``, and an unpadded batch gets None so attention
        can use its fastest (mask-free) kernel.
        """
        if attention_mask is not None:
            return attention_mask.bool()[:, None, None, :]
        keep = src != self.config.pad_token_id
        if torch.jit.is_tracing() or torch.compiler.is_compiling():
            return keep[:, None, None, :]  # no value-dependent branch in a traced graph
        return None if bool(keep.all()) else keep[:, None, None, :]

    def hidden_states(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Encoder states (B, S, d_model): the body contract, so encoder-side heads work on seq2seq too."""
        return self.encode(input_ids, self.source_mask(input_ids, attention_mask))

    def encode(self, src: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        x = self._embed(src, self.enc_wpe)
        x, mask, n_prompt = prepend_prompt(self.prompt, x, mask)  # the decoder sees the real positions only
        for block in self.encoder:
            if self.gradient_checkpointing and self.training:
                x = torch.utils.checkpoint.checkpoint(block, x, mask, use_reentrant=False)
            else:
                x = block(x, mask)
        return self.ln_enc(x[:, n_prompt:] if n_prompt else x)

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

    def new_cache(self, max_len: int | None = None) -> DecoderCache:
        return DecoderCache(self.config.n_decoder_layer, max_len)

    def _prepare(self, src, attention_mask):
        src = torch.as_tensor(src, dtype=torch.long, device=self.wte.weight.device)
        if src.dim() == 1:
            src = src[None]
        if attention_mask is not None:
            attention_mask = torch.as_tensor(attention_mask, device=src.device)
            if attention_mask.dim() == 1:
                attention_mask = attention_mask[None]
        return src, self.source_mask(src, attention_mask)

    @torch.no_grad()
    def generate(self, src: torch.Tensor, cfg: SamplingConfig | None = None, use_cache: bool = True,
                 attention_mask: torch.Tensor | None = None, *, num_beams: int = 1, length_penalty: float = 1.0,
                 num_return_sequences: int = 1, early_stopping: bool | str = True) -> list[list[int]]:
        """Decode a batch of sources; greedy by default (``SamplingConfig(temperature=0)``).

        Returns the generated ids per row, without the start token and cut at EOS. With
        ``num_beams > 1`` it is beam search (``cfg`` gives ``max_new_tokens``, ``min_new_tokens`` and
        ``eos_token_id``; sampling settings do not apply) and rows are the ``num_return_sequences``
        best per source, source by source (transformers' layout); ``beam_search`` also gives scores.
        """
        cfg = cfg or SamplingConfig(temperature=0.0, top_k=None)
        if num_beams > 1 or num_return_sequences > 1:
            hyps = self.beam_search(src, attention_mask, num_beams=num_beams, max_new_tokens=cfg.max_new_tokens,
                                    length_penalty=length_penalty, num_return_sequences=num_return_sequences,
                                    early_stopping=early_stopping, eos_token_id=cfg.eos_token_id,
                                    min_new_tokens=cfg.min_new_tokens, use_cache=use_cache)
            return [h.tokens for per_source in hyps for h in per_source]
        eos = cfg.eos_token_id if cfg.eos_token_id is not None else self.config.eos_token_id
        was_training = self.training
        self.eval()
        gen = torch.Generator(device="cpu")
        if cfg.seed is not None:
            gen.manual_seed(cfg.seed)
        src, mask = self._prepare(src, attention_mask)
        memory = self.encode(src, mask)
        B = src.shape[0]
        steps = min(cfg.max_new_tokens, self.config.block_size - 1)
        out = torch.full((B, 1), self.config.decoder_start_token_id, dtype=torch.long, device=src.device)
        rows = list(range(B))  # original index of each live row; finished rows leave the batch
        result: list[list[int]] = [[] for _ in range(B)]
        cache = self.new_cache(max_len=steps) if use_cache else None
        try:
            for step in range(steps):
                inp = out[:, -1:] if cache is not None else out
                logits = self.lm_head(self.decode(inp, memory, mask, cache))[:, -1, :]
                nxt = sample_next(logits, cfg, gen, out[:, 1:], step=step, eos_token_id=eos)
                out = torch.cat([out, nxt[:, None]], dim=1)
                ended = [b for b, t in enumerate(nxt.tolist()) if t == eos] if eos is not None else []
                for b in ended:
                    result[rows[b]] = out[b, 1:-1].tolist()
                if len(ended) == len(rows):
                    rows = []
                    break
                if ended:
                    live = [b for b in range(len(rows)) if b not in set(ended)]
                    idx = torch.tensor(live, dtype=torch.long, device=src.device)
                    out, memory, rows = out[idx], memory[idx], [rows[b] for b in live]
                    mask = mask[idx] if mask is not None else None
                    if cache is not None:
                        cache.select(idx)
        finally:
            self.train(was_training)
        for b, r in enumerate(rows):  # rows that ran to max_new_tokens
            result[r] = out[b, 1:].tolist()
        return result

    @torch.no_grad()
    def beam_search(self, src: torch.Tensor, attention_mask: torch.Tensor | None = None, *, num_beams: int = 4,
                    max_new_tokens: int = 64, length_penalty: float = 1.0, num_return_sequences: int = 1,
                    early_stopping: bool | str = True, eos_token_id: int | None = None, min_new_tokens: int = 0,
                    use_cache: bool = True) -> list[list[Hypothesis]]:
        """The ``num_return_sequences`` best hypotheses per source, best first, with scores
        (sum logprob / len**length_penalty, len counting EOS: transformers' convention).

        The encoder runs once, and so does the first decoder step (one row per source); then memory and
        caches are expanded per beam (rows ``source * num_beams + beam``). Each step the
        self-attention cache follows the surviving beams; cross-attention keys are left alone (beams of
        one source share them) unless a finished source's rows are dropped.
        """
        eos = eos_token_id if eos_token_id is not None else self.config.eos_token_id
        was_training = self.training
        self.eval()
        src, mask = self._prepare(src, attention_mask)
        memory = self.encode(src, mask)  # (B, S, C); expanded to B * num_beams rows after the first step
        steps = min(max_new_tokens, self.config.block_size - 1)
        cache = self.new_cache(max_len=steps) if use_cache else None

        def step(seqs: torch.Tensor, rows: torch.Tensor | None) -> torch.Tensor:
            nonlocal memory, mask
            if rows is not None:
                resized = rows.numel() != memory.shape[0]  # expanded to beams, or finished sources dropped
                if resized:
                    memory = memory[rows]
                    mask = mask[rows] if mask is not None else None
                if cache is not None:
                    cache.select(rows, cross=resized)
            inp = seqs[:, -1:] if cache is not None else seqs
            return self.lm_head(self.decode(inp, memory, mask, cache))[:, -1, :]

        try:
            return beam_search(step, src.shape[0], num_beams=num_beams, max_new_tokens=steps,
                               start_token_id=self.config.decoder_start_token_id, eos_token_id=eos,
                               length_penalty=length_penalty, num_return_sequences=num_return_sequences,
                               early_stopping=early_stopping, min_new_tokens=min_new_tokens, device=src.device)
        finally:
            self.train(was_training)
