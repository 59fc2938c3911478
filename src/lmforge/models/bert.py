"""Encoder-only BERT: config, masking, block, model, heads — top to bottom.

Post-norm Transformer encoder (as in the BERT paper and ``transformers.BertModel``) with word,
position and token-type embeddings, a padding mask, a masked-LM head tied to the word embeddings
and a next-sentence-prediction head on the pooled ``[CLS]`` state. ``mask_tokens`` builds MLM
inputs (80/10/10, optional whole-word masking) for the trainer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch
import torch.nn as nn
import torch.nn.functional as F

from .layers import MLP, Attention, ModelConfig, init_weights, mlp_hidden_size, prepend_prompt


@dataclass
class BertConfig(ModelConfig):
    model_type: ClassVar[str] = "bert"
    vocab_size: int = 8192
    block_size: int = 512  # max_position_embeddings
    n_layer: int = 6
    n_head: int = 6
    d_model: int = 384
    mlp_hidden: int | None = None  # None = 4·d_model
    type_vocab_size: int = 2
    norm_eps: float = 1e-12
    dropout: float = 0.1
    pad_token_id: int = 0
    tie_embeddings: bool = True
    # structured pruning (export/prune.py): per-layer head counts (heads keep their width) and MLP widths
    head_dim: int | None = None  # None = d_model // n_head
    layer_n_head: list[int] | None = None  # None = n_head in every layer
    layer_mlp_hidden: list[int] | None = None  # None = hidden() in every layer

    def hidden(self, layer: int | None = None) -> int:
        if self.layer_mlp_hidden is not None and layer is not None:
            return self.layer_mlp_hidden[layer]
        return mlp_hidden_size(self.d_model, "gelu", self.mlp_hidden)

    def heads(self, layer: int) -> int:
        return self.layer_n_head[layer] if self.layer_n_head is not None else self.n_head


# ---------------------------------------------------------------------------------------------
# Masked-LM inputs


@dataclass
class MaskingInfo:
    """What ``mask_tokens`` needs to know about the tokenizer.

    ``continuation_ids`` are tokens that continue the previous word (WordPiece ``##x``; byte-level
    BPE tokens without a leading ``Ġ``; SentencePiece pieces without ``▁``); they are only used for
    whole-word masking.
    """

    mask_token_id: int
    vocab_size: int
    special_ids: list[int] = field(default_factory=list)
    continuation_ids: list[int] = field(default_factory=list)

    @classmethod
    def from_tokenizer(cls, tok, mask_token: str = "[MASK]") -> "MaskingInfo":
        """From a ``tokenizers.Tokenizer`` or an lmforge ``Tok``; special tokens are the added special tokens.

        Build it once (it scans the vocabulary) and reuse it for every batch.
        """
        if hasattr(tok, "hf") and getattr(tok, "mask_id", None) is not None:  # lmforge.tokenizer.Tok
            mask_token, tok = tok.hf.id_to_token(tok.mask_id), tok.hf
        vocab = tok.get_vocab(with_added_tokens=True)
        specials = [i for i, t in tok.get_added_tokens_decoder().items() if t.special]
        if mask_token not in vocab:
            mask_token = next((t for t in ("<mask>", "[MASK]", "<MASK>") if t in vocab), mask_token)
        if mask_token not in vocab:
            raise ValueError(f"tokenizer has no mask token ({mask_token}); add one when training it")
        pieces = [t for t in vocab if t.startswith(("Ġ", "▁"))]
        byte_or_sp = len(pieces) > len(vocab) // 10
        specials_set = set(specials)
        if byte_or_sp:
            cont = [i for t, i in vocab.items() if i not in specials_set and not t.startswith(("Ġ", "▁"))
                    and t.isalnum()]
        else:
            cont = [i for t, i in vocab.items() if t.startswith("##")]
        return cls(vocab[mask_token], tok.get_vocab_size(with_added_tokens=True), sorted(specials_set), sorted(cont))

    @classmethod
    def coerce(cls, info) -> "MaskingInfo":
        """A MaskingInfo from itself, a dict of its fields, or a tokenizer (see ``from_tokenizer``)."""
        if isinstance(info, cls):
            return info
        if isinstance(info, dict):
            return cls(**{k: info[k] for k in ("mask_token_id", "vocab_size", "special_ids", "continuation_ids")
                          if k in info})
        return cls.from_tokenizer(info)


def mask_tokens(ids: torch.Tensor, tok_info, prob: float = 0.15, whole_word: bool = False,
                generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT masking: returns ``(inputs, labels)``; labels are -100 except at selected positions.

    Each non-special token (or, with ``whole_word``, each word) is selected with probability
    ``prob``; a selected token becomes ``[MASK]`` 80% of the time, a random non-special token 10%,
    and stays unchanged 10%.
    """
    info = MaskingInfo.coerce(tok_info)
    ids = torch.as_tensor(ids, dtype=torch.long)
    device, ids = ids.device, ids.cpu()  # the generator is a CPU one; masks are made on the CPU
    special = torch.zeros(max(info.vocab_size, int(ids.max()) + 1), dtype=torch.bool)
    special[torch.as_tensor(info.special_ids, dtype=torch.long)] = True
    is_special = special[ids]

    def rand(shape):
        return torch.rand(shape, generator=generator)

    if whole_word:
        cont = torch.zeros_like(special)
        cont[torch.as_tensor(info.continuation_ids, dtype=torch.long)] = True
        starts = ~cont[ids] | is_special
        starts[..., 0] = True
        word = starts.long().cumsum(-1) - 1  # word index within the row
        selected = (rand(ids.shape) < prob).gather(-1, word)  # one draw per word, shared by its pieces
    else:
        selected = rand(ids.shape) < prob
    selected &= ~is_special
    labels = torch.where(selected, ids, torch.full_like(ids, -100))
    r = rand(ids.shape)
    to_mask = selected & (r < 0.8)
    to_random = selected & (r >= 0.8) & (r < 0.9)
    normal = (~special[: info.vocab_size]).nonzero().squeeze(1)
    random_ids = normal[torch.randint(len(normal), ids.shape, generator=generator)]
    inputs = torch.where(to_mask, torch.full_like(ids, info.mask_token_id), ids)
    inputs = torch.where(to_random, random_ids, inputs)
    return inputs.to(device), labels.to(device)


# ---------------------------------------------------------------------------------------------
# Model


class Block(nn.Module):
    """Post-norm encoder layer: x = LN(x + attn(x)); x = LN(x + mlp(x))."""

    def __init__(self, cfg: BertConfig, layer: int = 0):
        super().__init__()
        self.attn = Attention(cfg.d_model, cfg.heads(layer), bias=True, dropout=cfg.dropout, head_dim=cfg.head_dim)
        self.ln_1 = nn.LayerNorm(cfg.d_model, eps=cfg.norm_eps)
        self.mlp = MLP(cfg.d_model, cfg.hidden(layer), "gelu_exact", bias=True, dropout=cfg.dropout)
        self.ln_2 = nn.LayerNorm(cfg.d_model, eps=cfg.norm_eps)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        x = self.ln_1(x + self.drop(self.attn(x, mask=mask)))
        return self.ln_2(x + self.mlp(x))


class BERT(nn.Module):
    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.config = cfg
        self.wte = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.wpe = nn.Embedding(cfg.block_size, cfg.d_model)
        self.wtt = nn.Embedding(cfg.type_vocab_size, cfg.d_model)
        self.ln_emb = nn.LayerNorm(cfg.d_model, eps=cfg.norm_eps)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList([Block(cfg, i) for i in range(cfg.n_layer)])
        self.pooler = nn.Linear(cfg.d_model, cfg.d_model)  # tanh(W·h_[CLS]) for sentence-level heads
        # masked-LM head: dense → GELU → LayerNorm → decoder (tied to wte) + bias
        self.mlm_dense = nn.Linear(cfg.d_model, cfg.d_model)
        self.mlm_ln = nn.LayerNorm(cfg.d_model, eps=cfg.norm_eps)
        self.mlm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=True)
        self.nsp_head = nn.Linear(cfg.d_model, 2)
        self.apply(init_weights)
        for m in self.modules():
            if isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if cfg.tie_embeddings:
            self.mlm_head.weight = self.wte.weight
        self.gradient_checkpointing = False
        self.prompt: nn.Module | None = None  # learned input vectors (prompt tuning, models/peft.py)

    def num_params(self, non_embedding: bool = True) -> int:
        n = sum(p.numel() for p in self.parameters())
        return n - self.wpe.weight.numel() if non_embedding else n

    def padding_mask(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor | None:
        """(B, 1, 1, T) boolean mask (True = attend) from ``attention_mask`` (1 = real token).

        None when there is no padding, so attention can use its fastest (mask-free) kernel. That check
        reads tensor values, so it runs only in eager mode: while tracing or exporting (TorchScript,
        torch.export, ONNX) a given mask is always used, which gives the same numbers."""
        if attention_mask is None:
            return None
        if not (torch.jit.is_tracing() or torch.compiler.is_compiling()) and bool(attention_mask.all()):
            return None
        return attention_mask.bool()[:, None, None, :]

    def hidden_states(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None,
                      attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Last-layer hidden states (B, T, d_model); ``attention_mask`` is 1 for tokens, 0 for padding."""
        B, T = input_ids.shape
        if T > self.config.block_size:
            raise ValueError(f"sequence of {T} tokens exceeds block_size {self.config.block_size}")
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        pos = torch.arange(T, device=input_ids.device)
        x = self.wte(input_ids) + self.wpe(pos) + self.wtt(token_type_ids)
        x = self.drop(self.ln_emb(x))
        mask = self.padding_mask(input_ids, attention_mask)
        x, mask, n_prompt = prepend_prompt(self.prompt, x, mask)
        for block in self.blocks:
            if self.gradient_checkpointing and self.training:
                x = torch.utils.checkpoint.checkpoint(block, x, mask, use_reentrant=False)
            else:
                x = block(x, mask)
        return x[:, n_prompt:] if n_prompt else x

    def pooled(self, h: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.pooler(h[:, 0]))

    def mlm_logits(self, h: torch.Tensor) -> torch.Tensor:
        return self.mlm_head(self.mlm_ln(F.gelu(self.mlm_dense(h))))

    def nsp_logits(self, h: torch.Tensor) -> torch.Tensor:
        """(B, 2) logits: index 0 = "B follows A", 1 = "B is random" (the HF convention)."""
        return self.nsp_head(self.pooled(h))

    def forward(self, input_ids: torch.Tensor, targets: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                next_sentence_label: torch.Tensor | None = None):
        """MLM logits (B, T, V) and the loss: MLM cross-entropy on ``targets`` (-100 ignored) plus,
        with ``next_sentence_label``, the NSP cross-entropy."""
        h = self.hidden_states(input_ids, token_type_ids, attention_mask)
        logits = self.mlm_logits(h)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.float().view(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-100)
        if next_sentence_label is not None:
            nsp = F.cross_entropy(self.nsp_logits(h).float(), next_sentence_label.reshape(-1))
            loss = nsp if loss is None else loss + nsp
        return logits, loss
