"""Recurrent networks (RNN, GRU, LSTM; one or two directions): a language model and a body for heads.

Two implementations of the same network, picked by ``impl``:

- ``textbook``: the cell equations written out and a Python loop over time, as a textbook writes
  them (LSTM: i, f, g, o gates; c' = f*c + i*g; h' = o*tanh(c')). Slow, but every step is visible.
- ``fused``: ``torch.nn.LSTM`` / ``GRU`` / ``RNN`` (cuDNN / oneDNN kernels).

Both hold their weights under the names and in the layout torch.nn uses (``rnn.weight_ih_l0``,
``rnn.weight_hh_l0_reverse``, ... with gate rows stacked i, f, g, o for the LSTM and r, z, n for the
GRU), so one checkpoint loads into either and gives the same outputs.

Padding: ``attention_mask`` (1 = real token) may pad on the right (task batches) or the left
(generation). Padded steps never touch a real step's state, in either direction: the textbook loop
keeps the state through masked steps, the fused path packs the real tokens
(``pack_padded_sequence``). Outputs at padded positions are zero.

As a language model the recurrent state is the cache: ``new_cache()`` gives an empty state that
``forward(..., cache=state)`` carries on, so generation feeds one token per step and can run past
``block_size`` (the training window). A bidirectional network reads the future, so it is a body for
classifiers and taggers only (it has no LM head).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import ConfigError
from .layers import ModelConfig

GATES = {"lstm": 4, "gru": 3, "rnn": 1}  # stacked gate blocks per weight matrix (torch.nn's layout)


@dataclass
class RNNConfig(ModelConfig):
    model_type: ClassVar[str] = "rnn"
    vocab_size: int = 8192
    block_size: int = 256  # training window (LM) / longest input the tasks are told about; no hard limit
    n_layer: int = 2
    d_model: int = 256  # hidden units per direction
    d_embed: int | None = None  # embedding width (None = d_model)
    cell: Literal["rnn", "gru", "lstm"] = "lstm"
    bidirectional: bool = False
    impl: Literal["fused", "textbook"] = "fused"
    tie_embeddings: bool = True  # LM head shares the embedding matrix (projected when d_embed != d_model)
    dropout: float = 0.0  # on embeddings, between layers and on the output
    vectors: str | None = None  # where the embedding was initialised from (provenance only; weights hold it)
    freeze_embeddings: bool = False

    @property
    def embed_dim(self) -> int:
        return self.d_embed or self.d_model

    @property
    def directions(self) -> int:
        return 2 if self.bidirectional else 1


# ----------------------------------------------------------------------------- the cells, by the book


def lstm_cell(xw: torch.Tensor, h: torch.Tensor, c: torch.Tensor, w_hh: torch.Tensor, b_hh: torch.Tensor):
    """One LSTM step; ``xw`` = x W_ih^T + b_ih (computed for all steps at once)."""
    i, f, g, o = (xw + h @ w_hh.T + b_hh).chunk(4, dim=-1)
    i, f, g, o = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)
    c = f * c + i * g  # forget part of the old memory, write the gated candidate
    h = o * torch.tanh(c)  # expose a gated view of the memory
    return h, c


def gru_cell(xw: torch.Tensor, h: torch.Tensor, w_hh: torch.Tensor, b_hh: torch.Tensor) -> torch.Tensor:
    """One GRU step (Cho et al. 2014, with the reset gate applied after W_hn as cuDNN and torch.nn do)."""
    xr, xz, xn = xw.chunk(3, dim=-1)
    hr, hz, hn = (h @ w_hh.T + b_hh).chunk(3, dim=-1)
    r = torch.sigmoid(xr + hr)  # reset: how much of the past the candidate sees
    z = torch.sigmoid(xz + hz)  # update: keep the old state or take the candidate
    n = torch.tanh(xn + r * hn)
    return (1 - z) * n + z * h


def rnn_cell(xw: torch.Tensor, h: torch.Tensor, w_hh: torch.Tensor, b_hh: torch.Tensor) -> torch.Tensor:
    """One Elman RNN step: h' = tanh(W_ih x + b_ih + W_hh h + b_hh)."""
    return torch.tanh(xw + h @ w_hh.T + b_hh)


def _param_names(n_layer: int, directions: int) -> list[tuple[int, int, list[str]]]:
    """(layer, direction, [w_ih, w_hh, b_ih, b_hh] names) in torch.nn's order."""
    out = []
    for layer in range(n_layer):
        for d in range(directions):
            sfx = f"_l{layer}" + ("_reverse" if d else "")
            out.append((layer, d, [f"weight_ih{sfx}", f"weight_hh{sfx}", f"bias_ih{sfx}", f"bias_hh{sfx}"]))
    return out


class TextbookRNN(nn.Module):
    """The recurrence in plain tensor code: the same parameters as torch.nn.{LSTM,GRU,RNN}(batch_first)."""

    def __init__(self, cell: str, input_size: int, hidden: int, n_layer: int, bidirectional: bool, dropout: float):
        super().__init__()
        self.cell, self.hidden, self.n_layer = cell, hidden, n_layer
        self.directions = 2 if bidirectional else 1
        self.dropout = dropout
        G = GATES[cell]
        for layer, _, names in _param_names(n_layer, self.directions):
            n_in = input_size if layer == 0 else hidden * self.directions
            shapes = [(G * hidden, n_in), (G * hidden, hidden), (G * hidden,), (G * hidden,)]
            for name, shape in zip(names, shapes):
                self.register_parameter(name, nn.Parameter(torch.empty(shape)))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None, state):
        """x (B, T, in), mask (B, T) bool or None, state as torch.nn returns it (or None) ->
        (outputs (B, T, D*H), state)."""
        B = x.shape[0]
        n = self.n_layer * self.directions
        if state is None:
            zeros = x.new_zeros(n, B, self.hidden)
            state = (zeros, zeros) if self.cell == "lstm" else zeros
        h0, c0 = state if self.cell == "lstm" else (state, None)
        hs, cs = [], []
        layer_in = x
        for layer in range(self.n_layer):
            outs = []
            for d in range(self.directions):
                k = layer * self.directions + d
                y, h, c = self._direction(layer_in, layer, d, h0[k], None if c0 is None else c0[k], mask)
                outs.append(y)
                hs.append(h)
                cs.append(c)
            layer_in = torch.cat(outs, dim=-1) if len(outs) > 1 else outs[0]
            if self.dropout and self.training and layer < self.n_layer - 1:
                layer_in = F.dropout(layer_in, self.dropout)  # between layers, as torch.nn does
        h = torch.stack(hs)
        return layer_in, ((h, torch.stack(cs)) if self.cell == "lstm" else h)

    def _direction(self, x, layer: int, d: int, h, c, mask):
        sfx = f"_l{layer}" + ("_reverse" if d else "")
        w_ih, w_hh = getattr(self, f"weight_ih{sfx}"), getattr(self, f"weight_hh{sfx}")
        b_ih, b_hh = getattr(self, f"bias_ih{sfx}"), getattr(self, f"bias_hh{sfx}")
        xw = x @ w_ih.T + b_ih  # the input side of every gate, all steps at once
        T = x.shape[1]
        out: list[torch.Tensor | None] = [None] * T
        for t in (range(T - 1, -1, -1) if d else range(T)):  # the backward direction reads right to left
            if self.cell == "lstm":
                h_new, c_new = lstm_cell(xw[:, t], h, c, w_hh, b_hh)
            elif self.cell == "gru":
                h_new, c_new = gru_cell(xw[:, t], h, w_hh, b_hh), None
            else:
                h_new, c_new = rnn_cell(xw[:, t], h, w_hh, b_hh), None
            if mask is None:
                h, c = h_new, c_new
                out[t] = h
            else:  # a padded step leaves the state as it was and outputs zero
                m = mask[:, t, None]
                h = torch.where(m, h_new, h)
                c = torch.where(m, c_new, c) if c is not None else None
                out[t] = h_new * m
        return torch.stack(out, dim=1), h, c


def fused_rnn(cell: str, hidden: int, n_layer: int, bidirectional: bool, input_size: int, dropout: float) -> nn.Module:
    """torch.nn.LSTM / GRU / RNN (batch first): the fused kernels, with the textbook version's parameters."""
    cls = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}[cell]
    return cls(input_size, hidden, n_layer, batch_first=True, bidirectional=bidirectional,
               dropout=dropout if n_layer > 1 else 0.0)


def run_fused(rnn: nn.RNNBase, x: torch.Tensor, mask: torch.Tensor | None, state):
    """Run a torch.nn recurrence; a padded batch goes through ``pack_padded_sequence``."""
    if mask is None:
        return rnn(x, state)
    B, T, _ = x.shape
    lengths = mask.sum(1)
    start = torch.where(lengths > 0, mask.int().argmax(1), torch.zeros_like(lengths))
    t = torch.arange(T, device=x.device)
    span = (t[None, :] >= start[:, None]) & (t[None, :] < (start + lengths)[:, None])
    if not torch.equal(span, mask):
        raise ValueError("the fused RNN needs each row's real tokens in one run (left or right padding); "
                         "use impl: textbook for other masks")
    # move each row's real tokens to the front, pack them, run, and put the outputs back in place
    front = (t[None, :] + start[:, None]).clamp_max(T - 1)
    x = x.gather(1, front[..., None].expand_as(x))
    packed = nn.utils.rnn.pack_padded_sequence(x, lengths.clamp_min(1).cpu(), batch_first=True, enforce_sorted=False)
    y, new_state = rnn(packed, state)
    y, _ = nn.utils.rnn.pad_packed_sequence(y, batch_first=True, total_length=T)
    back = (t[None, :] - start[:, None]).clamp_min(0)
    y = y.gather(1, back[..., None].expand_as(y)) * mask[..., None]
    empty = lengths == 0  # rows with no real token here: their state must not move
    if bool(empty.any()):
        lstm = isinstance(new_state, tuple)
        if state is None:
            zeros = torch.zeros_like(new_state[0] if lstm else new_state)
            state = (zeros, zeros) if lstm else zeros
        keep = empty[None, :, None]
        new_state = tuple(torch.where(keep, s, n) for s, n in zip(state, new_state)) if lstm \
            else torch.where(keep, state, new_state)
    return y, new_state


# ----------------------------------------------------------------------------- the model


class RNNState:
    """The recurrent state as a generation cache: (h, c) for the LSTM, h otherwise, (L*D, B, H)."""

    def __init__(self):
        self.state = None
        self.length = 0  # tokens read so far (for callers that track positions)

    def select(self, idx: torch.Tensor) -> None:
        """Keep rows ``idx`` (finished rows leave a batch; beams are reordered)."""
        if self.state is None:
            return
        if isinstance(self.state, tuple):
            self.state = tuple(s[:, idx] for s in self.state)
        else:
            self.state = self.state[:, idx]

    def trim_front(self, n: int) -> None:
        """Dropping leading padding columns changes nothing: the state has no positions."""


class RNNModel(nn.Module):
    """Embedding -> recurrent layers -> (LM head). ``hidden_states`` is the body contract for task heads."""

    recurrent: ClassVar[bool] = True  # generation: no context limit; the state is the cache

    def __init__(self, cfg: RNNConfig):
        super().__init__()
        if cfg.cell not in GATES:
            raise ConfigError(f"model.cell '{cfg.cell}' is unknown", "use rnn, gru or lstm")
        if cfg.impl not in ("fused", "textbook"):
            raise ConfigError(f"model.impl '{cfg.impl}' is unknown", "use fused or textbook")
        self.config = cfg
        E, H = cfg.embed_dim, cfg.d_model
        self.wte = nn.Embedding(cfg.vocab_size, E)
        self.drop = nn.Dropout(cfg.dropout)
        if cfg.impl == "fused":
            self.rnn = fused_rnn(cfg.cell, H, cfg.n_layer, cfg.bidirectional, E, cfg.dropout)
        else:
            self.rnn = TextbookRNN(cfg.cell, E, H, cfg.n_layer, cfg.bidirectional, cfg.dropout)
        self.output_dim = H * cfg.directions  # heads size themselves from this
        self.proj = self.lm_head = None
        if not cfg.bidirectional:
            if cfg.tie_embeddings and E != H:
                self.proj = nn.Linear(H, E, bias=False)  # hidden -> embedding space, so the matrix can be shared
            self.lm_head = nn.Linear(E if cfg.tie_embeddings else H, cfg.vocab_size)
        self._init_weights()
        if self.lm_head is not None and cfg.tie_embeddings:
            self.lm_head.weight = self.wte.weight
        if cfg.freeze_embeddings and cfg.vectors:
            self.wte.weight.requires_grad_(False)

    def _init_weights(self) -> None:
        """torch.nn's recurrent init (U(-1/sqrt(H), 1/sqrt(H))) with the LSTM forget-gate bias at 1
        (Jozefowicz et al. 2015: remember by default); embeddings N(0, 1) (torch's default: with
        U(-0.1, 0.1) inputs the gates barely move and a char LSTM stalls for its first hundred steps),
        an untied head U(-0.1, 0.1)."""
        H = self.config.d_model
        bound = 1.0 / math.sqrt(H)
        for name, p in self.rnn.named_parameters():
            nn.init.uniform_(p, -bound, bound)
            if self.config.cell == "lstm" and name.split(".")[-1].startswith("bias_ih"):
                with torch.no_grad():
                    p[H : 2 * H] = 1.0  # i, [f], g, o
                    # (bias_hh's forget block keeps its small random value: the sum is ~1)
        nn.init.normal_(self.wte.weight, std=1.0)
        if self.lm_head is not None:
            nn.init.uniform_(self.lm_head.weight, -0.1, 0.1)
            nn.init.zeros_(self.lm_head.bias)
        if self.proj is not None:
            nn.init.uniform_(self.proj.weight, -bound, bound)

    def num_params(self, non_embedding: bool = False) -> int:
        n = sum(p.numel() for p in self.parameters())
        return n - self.wte.weight.numel() if non_embedding else n

    def hidden_states(self, idx: torch.Tensor, cache: RNNState | None = None,
                      attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B, T, output_dim): per step, the last layer's state (both directions side by side).

        ``attention_mask`` is (B, T), or (B, cached + T) as generation passes it (only its last T
        columns matter: the cached steps are already in the state).
        """
        B, T = idx.shape
        mask = None
        if attention_mask is not None:
            if attention_mask.shape[0] != B or attention_mask.shape[1] < T:
                raise ValueError(f"attention_mask has shape {tuple(attention_mask.shape)}, expected ({B}, >= {T})")
            mask = attention_mask[:, -T:].bool()
            if not (torch.jit.is_tracing() or torch.compiler.is_compiling()) and bool(mask.all()):
                mask = None  # eager and nothing padded: the plain (faster) path; traced graphs keep the mask
        if cache is not None and self.config.bidirectional:
            raise ConfigError("a bidirectional RNN cannot read a stream step by step",
                              "generate from a model trained with bidirectional: false")
        x = self.drop(self.wte(idx))
        state = cache.state if cache is not None else None
        if self.config.impl == "fused":
            out, state = run_fused(self.rnn, x, mask, state)
        else:
            out, state = self.rnn(x, mask, state)
        if cache is not None:
            cache.state = state
            cache.length += T
        return self.drop(out)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None, cache: RNNState | None = None,
                reduction: str = "mean", attention_mask: torch.Tensor | None = None):
        """Next-token logits (B, T, V) and, with targets, the cross-entropy (-100 = ignored), as GPT."""
        if self.lm_head is None:
            raise ConfigError("a bidirectional RNN sees the next token, so it cannot be a language model",
                              "set model.bidirectional: false to pretrain or generate; keep it for finetune bodies")
        h = self.hidden_states(idx, cache=cache, attention_mask=attention_mask)
        logits = self.lm_head(self.proj(h) if self.proj is not None else h)
        if targets is None:
            return logits, None
        loss = F.cross_entropy(logits.float().view(-1, logits.size(-1)), targets.reshape(-1),
                               ignore_index=-100, reduction=reduction)
        return logits, loss

    def new_cache(self, max_len: int | None = None) -> RNNState:
        """An empty recurrent state (``max_len`` is accepted for the decoders' interface; unused)."""
        return RNNState()

    def pool_last(self, h: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """A sentence vector from ``hidden_states``: the forward direction at the last real token and,
        when bidirectional, the backward direction at the first real token (each has read the whole
        sentence there)."""
        keep = attention_mask.bool()
        rows = torch.arange(h.shape[0], device=h.device)
        last = keep.sum(1).clamp_min(1) - 1 + keep.int().argmax(1)
        fwd = h[rows, last, : self.config.d_model]
        if not self.config.bidirectional:
            return fwd
        return torch.cat([fwd, h[rows, keep.int().argmax(1), self.config.d_model :]], dim=-1)


def build_from_recipe(fields: dict, tok=None) -> RNNModel:
    """A fresh RNN from a recipe's ``model`` section (train.config.ModelConfig's rnn keys + vocab_size);
    with ``vectors`` the embedding rows of the tokenizer's vocabulary start from that file."""
    cfg = RNNConfig.from_dict(fields)
    if not cfg.vectors:
        return RNNModel(cfg)
    from .vectors import embedding_from_vectors

    if tok is None:
        raise ConfigError("model.vectors needs the recipe's tokenizer (its vocabulary picks the rows)")
    vocab = [tok.id_to_token(i) or "" for i in range(cfg.vocab_size)]
    emb = embedding_from_vectors(cfg.vectors, vocab, cfg.freeze_embeddings, padding_idx=tok.pad_id)
    if cfg.d_embed is not None and cfg.d_embed != emb.embedding_dim:
        raise ConfigError(f"model.d_embed={cfg.d_embed} but {cfg.vectors} holds {emb.embedding_dim}-d vectors",
                          f"set model.d_embed: {emb.embedding_dim} or leave it unset")
    cfg.d_embed = emb.embedding_dim
    model = RNNModel(cfg)
    with torch.no_grad():
        model.wte.weight.copy_(emb.weight)
    model.vector_coverage = emb.coverage
    from rich.console import Console

    Console(stderr=True).print(f"  vectors: {emb.coverage:.1%} of the {len(vocab)}-token vocabulary found in "
                               f"{cfg.vectors} ({'frozen' if cfg.freeze_embeddings else 'trainable'})")
    return model


# register the family with models.io (which imports this module lazily)
from .io import MODEL_TYPES  # noqa: E402

MODEL_TYPES["rnn"] = (RNNConfig, RNNModel)
