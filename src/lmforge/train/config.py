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
    early_stopping_patience: int | None = Field(None, ge=1, description="evaluations without improvement "
                                                "of metric_for_best")
    max_epochs: float | None = Field(None, gt=0, description="epochs over the training examples (task "
                                     "fine-tuning); replaces max_steps when set")
    metric_for_best: str = Field("val_loss", description="evaluation metric that picks the best checkpoint, "
                                 "e.g. val_accuracy, val_entity_f1, val_bleu")
    greater_is_better: bool | None = Field(None, description="unset: lower is better for losses/perplexity, "
                                           "higher for everything else")
    keep_best: bool = Field(False, description="save the best evaluation's weights and end with them "
                            "(early stopping restores the best, not the last)")
    save_every: int = Field(200, ge=1)
    log_every: int = Field(10, ge=1)
    seed: int = 1337
    peak_tflops: float | None = Field(None, gt=0, description="device peak for MFU; unset = no MFU")
    track: list[Literal["tensorboard", "wandb"]] = Field(
        default_factory=list, description="experiment trackers fed the rows of metrics.jsonl: tensorboard "
        "(event files in <out>/tensorboard) and/or wandb (offline, <out>/wandb, upload with `wandb sync`); "
        "pip install 'lmforge[track]'")
    tensorboard: bool = Field(False, description="the older spelling of track: [tensorboard]")
    device: str = "auto"
    threads: int | None = Field(None, ge=1, description="torch CPU threads; unset = torch default")
    distributed: Literal["auto", "none", "ddp", "fsdp"] = Field(
        "auto", description="auto = ddp when launched with WORLD_SIZE > 1 (torchrun), else none")

    @model_validator(mode="after")
    def _check(self):
        if self.batch_size % self.grad_accum:
            raise ValueError(f"batch_size={self.batch_size} must be divisible by grad_accum={self.grad_accum}")
        return self


# the default family of each objective, and every family an objective can train (an objective is
# independent of the architecture: a causal LM can be a GPT or a recurrent network)
FAMILY_FOR_OBJECTIVE = {"clm": "gpt", "mlm": "bert", "seq2seq": "seq2seq"}
FAMILIES_FOR_OBJECTIVE = {"clm": ("gpt", "rnn"), "mlm": ("bert",), "seq2seq": ("seq2seq",)}
# families that only fine-tune from zero (no pretraining objective of their own)
TASK_ONLY_FAMILIES = ("bow",)
# keys each family understands (beyond ``family``); anything else set explicitly is an error
FAMILY_KEYS = {
    "gpt": {"block_size", "n_layer", "n_head", "n_kv_head", "d_model", "mlp_hidden", "positions", "norm", "mlp",
            "tie_embeddings", "bias", "dropout"},
    "bert": {"block_size", "n_layer", "n_head", "d_model", "mlp_hidden", "tie_embeddings", "dropout",
             "type_vocab_size"},
    "seq2seq": {"block_size", "n_encoder_layer", "n_decoder_layer", "n_head", "d_model", "mlp_hidden", "positions",
                "norm", "mlp", "tie_embeddings", "bias", "dropout"},
    # models/rnn.py: RNN/GRU/LSTM (textbook gates or the fused torch.nn path), optionally bidirectional
    "rnn": {"block_size", "n_layer", "d_model", "d_embed", "cell", "bidirectional", "impl", "tie_embeddings",
            "dropout", "vectors", "freeze_embeddings"},
    # models/bow.py: word embeddings (e.g. GloVe, frozen or tuned) -> dropout -> dense layers, per token
    "bow": {"block_size", "n_layer", "d_model", "mlp_hidden", "dropout", "vectors", "freeze_embeddings"},
}


class ModelConfig(StrictModel):
    """Architecture of the model to pretrain; vocab_size comes from the tokenizer.

    One section for every family: ``gpt`` (mirrors ``models.gpt.GPTConfig``), ``bert``
    (``models.bert.BertConfig``: post-norm, learned positions, GELU) and ``seq2seq``
    (``models.seq2seq.Seq2SeqConfig``: ``n_encoder_layer`` + ``n_decoder_layer``). ``family`` defaults
    to the objective's (clm -> gpt, mlm -> bert, seq2seq -> seq2seq).
    """

    family: Literal["gpt", "bert", "seq2seq", "rnn", "bow"] | None = None
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
    type_vocab_size: int = Field(2, ge=1, description="bert: segment (token type) embeddings")
    n_encoder_layer: int = Field(3, ge=1, description="seq2seq: encoder layers")
    n_decoder_layer: int = Field(3, ge=1, description="seq2seq: decoder layers")
    cell: Literal["rnn", "gru", "lstm"] = Field("lstm", description="rnn: recurrent cell")
    bidirectional: bool = Field(False, description="rnn: read both ways (encoders, taggers; not for LMs)")
    impl: Literal["fused", "textbook"] = Field("fused", description="rnn: torch.nn's fused kernels, or the gates "
                                               "written out as the textbook does (same outputs, slower)")
    d_embed: int | None = Field(None, ge=1, description="rnn: embedding width (None = d_model)")
    vectors: str | None = Field(None, description="rnn/bow: pretrained word vectors (word2vec/GloVe file or an "
                                "`lmforge vectors` output) to initialise the embedding for the tokenizer's vocab")
    freeze_embeddings: bool = Field(False, description="rnn/bow: keep the loaded vectors fixed")

    def family_dict(self, family: str) -> dict:
        """The keys of ``family``'s model config (for ``XConfig.from_dict``)."""
        return {k: v for k, v in self.model_dump().items() if k in FAMILY_KEYS[family]}

    @model_validator(mode="after")
    def _heads(self):
        if self.family not in ("rnn", "bow") and self.d_model % self.n_head:
            raise ValueError(f"d_model={self.d_model} must be divisible by n_head={self.n_head}")
        if self.n_kv_head and self.n_head % self.n_kv_head:
            raise ValueError(f"n_head={self.n_head} must be divisible by n_kv_head={self.n_kv_head}")
        return self


class PretrainData(StrictModel):
    """Plain text/jsonl files to pretrain on, instead of the data stage's output."""

    train: list[str]
    val: list[str] | None = None
    val_fraction: float = Field(0.1, gt=0, lt=1, description="tail of the train stream kept for validation when val is unset")
    txt_split: Literal["paragraph", "line", "file"] = Field(
        "paragraph", description="how a .txt file becomes documents (file = the whole file is one document)")
    separator: str | None = Field(None, description="documents in .txt files are separated by this line, "
                                  "e.g. '<|endoftext|>' (TinyStories); overrides txt_split")
    drop_last: bool = Field(False, description="drop each file's last document (a story cut off mid-way)")


class MLMConfig(StrictModel):
    """Masked-LM (+ next-sentence prediction) settings, for ``objective: mlm``."""

    mask_prob: float = Field(0.15, gt=0, lt=1)
    whole_word: bool = False
    nsp: bool = Field(True, description="sentence pairs: 50% the real next segment, 50% a random one")
    short_seq_prob: float = Field(0.1, ge=0, le=1, description="share of pairs shorter than block_size (as BERT)")


class Seq2SeqObjectiveConfig(StrictModel):
    """Source/target pairs for ``objective: seq2seq``.

    With ``source_field``/``target_field``, ``data.train``/``data.val`` are jsonl files of pairs
    (e.g. translations); otherwise pairs come from the token stream: a source span and the span that
    follows it as the target (next-segment generation, a self-supervised seq2seq task).
    """

    source_field: str | None = None
    target_field: str | None = None
    source_len: int | None = Field(None, ge=1, description="stream pairs: source tokens (default block_size/2)")
    target_len: int | None = Field(None, ge=1, description="stream pairs: target tokens (default block_size/2 - 1)")


class NgramBaselineConfig(StrictModel):
    """The Kneser-Ney n-gram a causal LM is set beside: trained on the same training text, scored on
    the same validation text, compared in bits per byte (tokenization-free)."""

    order: int = Field(6, ge=1, le=6)
    unit: Literal["word", "char"] = Field("char", description="char: no out-of-vocabulary words to flatter the "
                                          "n-gram (word units score unseen words as <unk>)")
    segmenter: Literal["whitespace", "rules", "jieba", "auto"] = Field(
        "auto", description="word units: English rules or jieba, chosen per line")
    max_train_mb: float = Field(20.0, gt=0, description="train the n-gram on at most this much of the text")


class PretrainConfig(StrictModel):
    objective: Literal["clm", "mlm", "seq2seq"] = "clm"
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    data: PretrainData | None = None
    mlm: MLMConfig = MLMConfig()
    seq2seq: Seq2SeqObjectiveConfig = Seq2SeqObjectiveConfig()
    ngram_baseline: NgramBaselineConfig | None = Field(
        default_factory=NgramBaselineConfig, description="clm: the n-gram baseline (null to skip)")

    @model_validator(mode="after")
    def _family(self):
        family = self.model.family or FAMILY_FOR_OBJECTIVE[self.objective]
        if family not in FAMILIES_FOR_OBJECTIVE[self.objective]:
            raise ValueError(f"objective '{self.objective}' trains {' or '.join(FAMILIES_FOR_OBJECTIVE[self.objective])} "
                             f"models, not model.family={family}")
        extra = sorted(self.model.model_fields_set - FAMILY_KEYS[family] - {"family"})
        if extra:
            raise ValueError(f"model keys {extra} do not apply to the {family} family "
                             f"(it takes {sorted(FAMILY_KEYS[family])})")
        if self.objective == "seq2seq" and bool(self.seq2seq.source_field) != bool(self.seq2seq.target_field):
            raise ValueError("seq2seq: set both source_field and target_field, or neither")
        if self.train.distributed == "fsdp" and self.train.optimizer == "muon":
            raise ValueError("optimizer 'muon' needs whole matrices; use distributed: ddp (or adamw with fsdp)")
        return self

    @property
    def family(self) -> str:
        return self.model.family or FAMILY_FOR_OBJECTIVE[self.objective]

    def input_paths(self) -> list[str]:
        return [*self.data.train, *(self.data.val or [])] if self.data else []
