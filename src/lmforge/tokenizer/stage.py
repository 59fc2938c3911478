"""The tokenizer stage: train on the data stage's train split (or ``cfg.files``), encode shards, measure."""

from __future__ import annotations

import time
from pathlib import Path

from ..errors import InputError
from ..runs import StageResult, atomic_write_json
from .config import TokenizerConfig
from .corpus import encode_corpus, expand_inputs, iter_corpus
from .shards import read_shard
from .stats import StatsAccumulator, shard_token_counts
from .train import train_tokenizer


def run(cfg: TokenizerConfig, train_files: list[Path], val_files: list[Path], out_dir: Path,
        progress: bool = False) -> StageResult:
    """Write ``tokenizer.json``, ``train.bin``, ``val.bin`` and ``stats.json`` into ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if not train_files and not cfg.files:
        raise InputError("the tokenizer stage got no training files", "run the data stage first or set tokenizer.files")
    # only tokenizer.files (e.g. a task trained from zero): the same files are also what is encoded
    train_files = expand_inputs(train_files or cfg.files)
    val_files = expand_inputs(val_files) if val_files else []
    fit_files = expand_inputs(cfg.files) if cfg.files else train_files

    t0 = time.perf_counter()
    tok = train_tokenizer(iter_corpus(fit_files, cfg.txt_split), cfg)
    tok.save(out_dir)
    t1 = time.perf_counter()
    train = encode_corpus(train_files, tok, out_dir / "train.bin", txt_split=cfg.txt_split, progress=progress)
    val = encode_corpus(val_files, tok, out_dir / "val.bin", txt_split=cfg.txt_split, progress=progress)
    t2 = time.perf_counter()

    # Unknown rate and coverage on held-out data, counted from the val shard (no second encode).
    held_out, measured = (val, "val") if val["tokens"] else (train, "train")
    shard = read_shard(out_dir / f"{measured}.bin")
    acc = StatsAccumulator(tok)
    acc.counts = shard_token_counts(shard, tok.vocab_size)
    if tok.eos_id is not None:
        acc.counts[tok.eos_id] -= held_out["eos_tokens"]  # appended separators are not text
    quality = acc.result()

    metrics = {
        "vocab_size": tok.vocab_size,
        "train_tokens": train["tokens"],
        "val_tokens": val["tokens"],
        "bytes_per_token": held_out["bytes_per_token"],
        "unk_rate": quality["unk_rate"],
        "vocab_coverage": quality["vocab_coverage"],
    }
    stats = {
        "config": cfg.model_dump(mode="json"),
        "kind": tok.kind, "family": tok.family, "special_ids": tok.special_ids,
        "trained_on": [str(f) for f in fit_files], "trained_docs": tok.meta.get("trained_docs"),
        "train": train, "val": val, "measured_on": measured,
        "bytes_per_token": held_out["bytes_per_token"],
        "val_bytes_per_token": val["bytes_per_token"] if val["tokens"] else None,
        "unk_rate": quality["unk_rate"], "vocab_used": quality["vocab_used"],
        "vocab_coverage": quality["vocab_coverage"],
        "seconds": {"train_tokenizer": round(t1 - t0, 3), "encode": round(t2 - t1, 3)},
    }
    atomic_write_json(out_dir / "stats.json", stats)
    outputs = [str(out_dir / n) for n in ("tokenizer.json", "tokenizer_meta.json", "train.bin", "val.bin", "stats.json")]
    return StageResult(metrics=metrics, outputs=outputs)

