"""The "bow" body: word embeddings (e.g. GloVe, frozen or tuned) -> dropout -> dense layers.

The classic NLP classifier: average word vectors and feed them to a small MLP. Here the dense
layers run per token *before* the head's mean pooling (``SequenceClassifier(pooling="mean")``
averages over the real tokens), so the whole model is

    logits = W_out · mean_t( ReLU(W_n ... ReLU(W_1 · dropout(E[x_t]))) )

With no dense layers (``n_layer=0``) that is exactly "average embedding -> linear", and for a
single linear layer the order does not matter (mean and a linear map commute). With ReLU layers,
per-token-then-average is a Deep Sets model (a little more expressive than averaging first) and
keeps the one body contract: ``hidden_states`` is (B, T, width) like every other family, so the
generic heads, trainer and evaluation need no special case. There are no positions: word order
is ignored, which is the point of the baseline.

With ``vectors`` set, ``build_from_recipe`` initialises the embedding rows of the tokenizer's
vocabulary from a word-vector file or an ``lmforge vectors train`` directory and reports the
coverage; ``d_model`` becomes the vectors' dimension. Reloading a saved model reads its weights,
never the vectors file again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn as nn

from ..errors import ConfigError, InputError
from .layers import ModelConfig


@dataclass
class BowConfig(ModelConfig):
    model_type: ClassVar[str] = "bow"
    vocab_size: int = 8192
    block_size: int = 256  # longest input; nothing here depends on it (no positions)
    d_model: int = 100  # embedding width (= the vectors' dimension when loaded)
    n_layer: int = 1  # dense layers applied to each token (0: the embeddings themselves)
    mlp_hidden: int | None = None  # dense width (None = 2 x d_model)
    dropout: float = 0.1  # on the embeddings and after every dense layer
    vectors: str | None = None  # where the initial embedding came from (a record; never re-read)
    freeze_embeddings: bool = False
    pad_token_id: int | None = None

    def hidden(self) -> int:
        return self.mlp_hidden or 2 * self.d_model


class Bow(nn.Module):
    def __init__(self, config: BowConfig):
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.d_model, padding_idx=config.pad_token_id)
        nn.init.normal_(self.embed.weight, std=0.1)
        if config.pad_token_id is not None:
            with torch.no_grad():
                self.embed.weight[config.pad_token_id].zero_()
        self.embed.weight.requires_grad_(not config.freeze_embeddings)
        self.drop = nn.Dropout(config.dropout)
        widths = [config.d_model] + [config.hidden()] * config.n_layer
        self.dense = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths, widths[1:]))
        self.output_dim = widths[-1]

    def hidden_states(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B, T) token ids -> (B, T, output_dim). ``attention_mask`` is accepted for the contract:
        tokens do not see each other here, and the head's pooling skips the padding."""
        x = self.drop(self.embed(input_ids))  # (B, T, d_model)
        for layer in self.dense:
            x = self.drop(torch.relu(layer(x)))  # (B, T, hidden)
        return x

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.hidden_states(input_ids, attention_mask)

    def load_vectors(self, embedding: nn.Embedding) -> None:
        """Take the rows (and the frozen flag) of an embedding built by ``embedding_from_vectors``."""
        if embedding.weight.shape != self.embed.weight.shape:
            raise ValueError(f"embedding {tuple(embedding.weight.shape)} does not fit "
                             f"{tuple(self.embed.weight.shape)}")
        with torch.no_grad():
            self.embed.weight.copy_(embedding.weight)
        self.embed.weight.requires_grad_(not self.config.freeze_embeddings)


def vocabulary(tok) -> list[str]:
    """The tokenizer's tokens in id order (the rows of the embedding)."""
    return [tok.id_to_token(i) or "" for i in range(tok.vocab_size)]


def build_from_recipe(fields: dict, tok) -> Bow:
    """A fresh Bow body from a recipe's ``model`` section (train.config.ModelConfig's bow keys)."""
    from rich.console import Console

    pad = tok.pad_id if tok is not None else None
    cfg = BowConfig.from_dict({**fields, "pad_token_id": pad})
    if cfg.freeze_embeddings and not cfg.vectors:
        raise ConfigError("model.freeze_embeddings: true needs model.vectors (frozen random embeddings learn nothing)",
                          "set model.vectors to a word-vector file or an `lmforge vectors train` directory")
    if not cfg.vectors:
        return Bow(cfg)
    from .vectors import embedding_from_vectors
    from pathlib import Path

    if not Path(cfg.vectors).exists():
        raise InputError(f"model.vectors: {cfg.vectors} not found",
                         f"train them first, e.g. `lmforge vectors train TEXT --output {cfg.vectors} model=glove`")
    if tok is None:
        raise ConfigError("model.vectors needs the recipe's tokenizer (its vocabulary picks the rows)",
                          "add a tokenizer: section")
    vocab = vocabulary(tok)
    emb = embedding_from_vectors(cfg.vectors, vocab, freeze=cfg.freeze_embeddings, padding_idx=pad)
    dim = emb.weight.shape[1]
    if dim != cfg.d_model:
        cfg.d_model = dim  # the vectors decide the embedding width
    model = Bow(cfg)
    model.load_vectors(emb)
    model.vectors_coverage = emb.coverage
    Console(stderr=True).print(f"bow: {cfg.vectors} covers {emb.coverage:.1%} of the {len(vocab):,}-token vocabulary "
                               f"(dim {dim}, {'frozen' if cfg.freeze_embeddings else 'tuned'})", highlight=False)
    return model


from .io import MODEL_TYPES  # noqa: E402  (registered at the end: io imports this module lazily)

MODEL_TYPES["bow"] = (BowConfig, Bow)
