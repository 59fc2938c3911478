"""Tokenizer training and encoding speed per kind, and what the batched/streaming encoder buys.

    python benchmarks/tokenizer_speed.py [--out results.json]

Trains each kind on TinyStories (English) and 西游记 (Chinese), then encodes held-out text three ways:
a per-document Python loop (what a naive prepare script does), ``encode_corpus`` (batched on the
Rust thread pool, streamed into a shard) and ``encode_corpus(workers=2)`` (one process per file).
Datasets come from LMFORGE_DATASETS (default ../shared/datasets).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

from lmforge.tokenizer import TokenizerConfig, encode_corpus, iter_corpus, iter_documents, train_tokenizer

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("LMFORGE_DATASETS", ROOT.parent / "shared" / "datasets"))


def _timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, help="write the results as JSON here")
    args = ap.parse_args()

    en = DATA / "pretrain/tinystories/tinystories_sample_2MiB.txt"
    zh_train = DATA / "pretrain/zh_novels/西游记.txt"
    zh_held = DATA / "pretrain/zh_novels/红楼梦.txt"
    for p in (en, zh_train, zh_held):
        if not p.exists():
            sys.exit(f"dataset missing: {p} (set LMFORGE_DATASETS)")

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        en_docs = list(iter_documents(en))
        cut = int(len(en_docs) * 0.9)
        en_train, en_val = en_docs[:cut], en_docs[cut:]
        (tmp / "en_val.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in en_val))
        zh_val_text = zh_held.read_text(encoding="utf-8")[:300_000]
        (tmp / "zh_val.txt").write_text(zh_val_text, encoding="utf-8")

        for lang, train_docs, val in (("en", en_train, tmp / "en_val.jsonl"),
                                       ("zh", list(iter_corpus([zh_train])), tmp / "zh_val.txt")):
            train_mb = sum(len(t.encode()) for t in train_docs) / 1e6
            for kind in ("byte_bpe", "bpe", "wordpiece", "unigram", "char"):
                vocab = 8192
                tok, t_train = _timed(lambda: train_tokenizer(train_docs, TokenizerConfig(kind=kind, vocab_size=vocab)))
                val_docs = list(iter_documents(val))
                val_mb = sum(len(t.encode()) for t in val_docs) / 1e6
                _, t_loop = _timed(lambda: [tok.hf.encode(t).ids for t in val_docs])
                stats, t_batch = _timed(lambda: encode_corpus([val], tok, tmp / "s.bin", progress=False))
                results.append({
                    "lang": lang, "kind": kind, "vocab_size": tok.vocab_size, "train_mb": round(train_mb, 2),
                    "train_s": round(t_train, 2), "val_mb": round(val_mb, 2),
                    "encode_loop_mb_s": round(val_mb / t_loop, 2), "encode_corpus_mb_s": round(val_mb / t_batch, 2),
                    "bytes_per_token": stats["bytes_per_token"],
                })
                print(json.dumps(results[-1], ensure_ascii=False), flush=True)

        # one process per file vs one process with the Rust pool, on four files
        tok = train_tokenizer(en_train, TokenizerConfig(vocab_size=8192))
        parts = []
        for i in range(4):
            parts.append(tmp / f"part{i}.jsonl")
            parts[-1].write_text("".join(json.dumps({"text": t}) + "\n" for t in en_train[i::4]))
        mb = sum(p.stat().st_size for p in parts) / 1e6
        _, t1 = _timed(lambda: encode_corpus(parts, tok, tmp / "a.bin", progress=False))
        _, t2 = _timed(lambda: encode_corpus(parts, tok, tmp / "b.bin", workers=2, progress=False))
        workers = {"files": 4, "mb": round(mb, 2), "one_process_mb_s": round(mb / t1, 2), "workers2_mb_s": round(mb / t2, 2),
                   "identical": (tmp / "a.bin").read_bytes() == (tmp / "b.bin").read_bytes()}
        print(json.dumps(workers))

    report = {"command": "python benchmarks/tokenizer_speed.py", "cpu_count": os.cpu_count(),
              "python": platform.python_version(), "per_kind": results, "workers": workers}
    if args.out:
        args.out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
