"""Trainer settings shared by pretraining and fine-tuning."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from ..config import StrictModel


class TrainConfig(StrictModel):
    max_steps: int = Field(1000, ge=1)
    batch_size: int = Field(32, ge=1, description="sequences per optimizer step, per process")
    grad_accum: int = Field(1, ge=1, description="micro-batches per step; batch_size must divide by it")
    optimizer: Literal["adamw", "muon"] = "adamw"
    lr: float = Field(1e-3, gt=0)
    min_lr_ratio: float = Field(0.1, ge=0, le=1)
    schedule: Literal["cosine", "linear", "wsd", "constant"] = "cosine"
    warmup_steps: int = Field(100, ge=0)
    decay_fraction: float = Field(0.2, gt=0, le=1, description="WSD: share of steps spent decaying")
    weight_decay: float = Field(0.1, ge=0)
    betas: tuple[float, float] = (0.9, 0.95)
    grad_clip: float | None = 1.0
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    compile: bool = False
    gradient_checkpointing: bool = False
    eval_every: int = Field(100, ge=1)
    eval_batches: int = Field(20, ge=1)
    early_stopping_patience: int | None = Field(None, ge=1, description="evaluations without improvement")
    save_every: int = Field(200, ge=1)
    log_every: int = Field(10, ge=1)
    seed: int = 1337
    peak_tflops: float | None = Field(None, gt=0, description="device peak for MFU; unset = no MFU")
    tensorboard: bool = False
    device: str = "auto"
    threads: int | None = Field(None, ge=1, description="torch CPU threads; unset = torch default")

    @model_validator(mode="after")
    def _check(self):
        if self.batch_size % self.grad_accum:
            raise ValueError(f"batch_size={self.batch_size} must be divisible by grad_accum={self.grad_accum}")
        return self


class ModelConfig(StrictModel):
    """Decoder architecture (mirrors ``models.gpt.GPTConfig``); vocab_size comes from the tokenizer."""

    family: Literal["gpt"] = "gpt"
    block_size: int = Field(256, ge=8)
    n_layer: int = Field(6, ge=1)
    n_head: int = Field(6, ge=1)
    n_kv_head: int | None = Field(None, ge=1)
    d_model: int = Field(384, ge=8)
    mlp_hidden: int | None = None
    positions: Literal["learned", "rope"] = "learned"
    norm: Literal["layernorm", "rmsnorm"] = "layernorm"
    mlp: Literal["gelu", "swiglu"] = "gelu"
    tie_embeddings: bool = True
    bias: bool = True
    dropout: float = Field(0.0, ge=0, lt=1)

    @model_validator(mode="after")
    def _heads(self):
        if self.d_model % self.n_head:
            raise ValueError(f"d_model={self.d_model} must be divisible by n_head={self.n_head}")
        if self.n_kv_head and self.n_head % self.n_kv_head:
            raise ValueError(f"n_head={self.n_head} must be divisible by n_kv_head={self.n_kv_head}")
        return self


class PretrainData(StrictModel):
    """Plain text/jsonl files to pretrain on, instead of the data stage's output."""

    train: list[str]
    val: list[str] | None = None
    val_fraction: float = Field(0.1, gt=0, lt=1, description="tail of the train stream kept for validation when val is unset")


class PretrainConfig(StrictModel):
    objective: Literal["clm"] = "clm"
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    data: PretrainData | None = None

    def input_paths(self) -> list[str]:
        return [*self.data.train, *(self.data.val or [])] if self.data else []
