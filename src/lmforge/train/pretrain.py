"""The pretrain stage: a decoder from zero on token shards (or plain text files)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import InputError
from ..models.gpt import GPT, GPTConfig
from ..runs import StageResult, set_seed
from .config import PretrainConfig
from .loop import Trainer
from .objectives import CausalLM


def build_model(cfg: PretrainConfig, vocab_size: int) -> GPT:
    return GPT(GPTConfig.from_dict({**cfg.model.model_dump(), "vocab_size": vocab_size}))


def _load_tokens(cfg: PretrainConfig, tok_dir: Path, out_dir: Path):
    """(train tokens, val tokens, val bytes/token): the tokenizer stage's shards, or ``cfg.data`` encoded here."""
    from ..tokenizer import Tok, encode_corpus, read_shard

    if cfg.data is None:
        train, val = tok_dir / "train.bin", tok_dir / "val.bin"
        for p in (train, val):
            if not p.exists():
                raise InputError(f"token shard missing: {p}", "run the tokenizer stage first, or set pretrain.data.train")
        stats = _read_json(tok_dir / "stats.json")
        return read_shard(train).tokens, read_shard(val).tokens, stats.get("val_bytes_per_token")
    tok = Tok.load(tok_dir)
    shard_dir = out_dir / "shards"
    shard_dir.mkdir(parents=True, exist_ok=True)
    st = encode_corpus([Path(p) for p in cfg.data.train], tok, shard_dir / "train.bin")
    train = read_shard(shard_dir / "train.bin").tokens
    if cfg.data.val:
        sv = encode_corpus([Path(p) for p in cfg.data.val], tok, shard_dir / "val.bin")
        return train, read_shard(shard_dir / "val.bin").tokens, sv["bytes_per_token"]
    cut = int(len(train) * (1 - cfg.data.val_fraction))
    return train[:cut], train[cut:], st["bytes_per_token"]


def _read_json(path: Path) -> dict:
    import json

    return json.loads(path.read_text()) if path.exists() else {}


def run(cfg: PretrainConfig, tok_dir: Path, out_dir: Path, progress: bool = True) -> StageResult:
    from ..tokenizer import Tok

    set_seed(cfg.train.seed)
    tok = Tok.load(tok_dir)
    train, val, bpt = _load_tokens(cfg, tok_dir, out_dir)
    if len(val) <= cfg.model.block_size + 1:
        raise InputError(f"validation data has only {len(val)} tokens, fewer than block_size+1",
                         "give more validation text or lower pretrain.model.block_size")
    model = build_model(cfg, tok.vocab_size)
    objective = CausalLM(np.asarray(train), np.asarray(val), cfg.model.block_size, cfg.train.batch_size,
                         cfg.train.seed, bpt)
    trainer = Trainer(model, objective, cfg.train, out_dir, progress=progress,
                      extra_files=sorted(Path(tok_dir).glob("tokenizer*.json")))
    result = trainer.train()
    last = result.history[-1] if result.history else {}
    metrics = {"steps": result.steps, "tokens": result.tokens, "elapsed_s": round(result.elapsed_s, 1),
               "params": model.num_params(), "val_loss": last.get("val_loss"), "val_bpb": last.get("val_bpb"),
               "tokens_per_s": last.get("tokens_per_s")}
    return StageResult(metrics=metrics, outputs=[str(out_dir / "model")])
