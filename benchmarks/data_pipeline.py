"""The data pipeline side by side with datatrove: documents/s, peak RSS, near-duplicate P/R.

The corpus: 10,000 mixed English/Chinese paragraphs from ../shared/datasets (Gutenberg, TinyStories,
Chinese novels), among them planted near-duplicates (words or characters replaced so that the
word-5-gram Jaccard with the original stays ≥ 0.8) and a few exact copies, shuffled, in 8 JSONL
shards. Both systems run their recommended quality filters plus MinHash dedup on 2 worker
processes; each run happens in a fresh subprocess whose whole process tree is sampled for RSS.

    python benchmarks/data_pipeline.py                  # writes benchmarks/results/data_pipeline.{json,md}
    python benchmarks/data_pipeline.py --docs 2000      # a quicker run
    python benchmarks/data_pipeline.py --skip-datatrove # lmforge only (datatrove: pip install 'lmforge[bench]')
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results"
DATASETS = Path(os.environ.get("LMFORGE_DATASETS", REPO.parent / "shared" / "datasets"))


# ---------------------------------------------------------------------------------------------
# corpus


def _paragraphs(path: Path, min_len: int, max_len: int = 3000) -> list[str]:
    text = path.read_bytes()
    try:
        s = text.decode("utf-8")
    except UnicodeDecodeError:
        s = text.decode("latin-1")
    out = []
    for p in re.split(r"\n\s*\n", s.replace("\r\n", "\n")):
        p = p.strip()
        if any("\u4e00" <= c <= "\u9fff" for c in p[:50]):
            p = "".join(p.split())
        else:
            p = " ".join(p.split())
        if min_len <= len(p) <= max_len:
            out.append(p)
    return out


def _perturb(text: str, rng: random.Random, cjk: bool) -> str:
    if cjk:
        chars = list(text)
        for _ in range(max(1, len(chars) // 100)):
            i = rng.randrange(len(chars))
            if "\u4e00" <= chars[i] <= "\u9fff":
                chars[i] = rng.choice("之乎者也的了")
        return "".join(chars)
    words = text.split()
    for _ in range(max(1, len(words) // 60)):
        words[rng.randrange(len(words))] = rng.choice(["indeed", "quite", "rather", "very"])
    return " ".join(words)


def build_corpus(out: Path, n_docs: int, seed: int = 0) -> dict:
    """Write shards to ``out``; return the ground truth {planted id: original id}."""
    sys.path.insert(0, str(REPO / "src"))
    from lmforge.data.steps.dedup import exact_key, jaccard

    rng = random.Random(seed)
    en = []
    for p in sorted((DATASETS / "pretrain" / "gutenberg").glob("*.txt")):
        en += _paragraphs(p, 200)
    en += _paragraphs(DATASETS / "pretrain" / "tinystories" / "tinystories_sample_2MiB.txt", 200)[:-1]
    zh = []
    for p in sorted((DATASETS / "pretrain" / "zh_novels").glob("*.txt")):
        zh += _paragraphs(p, 100)
    rng.shuffle(en)
    rng.shuffle(zh)
    n_planted, n_exact = n_docs // 20, n_docs // 100
    n_orig = n_docs - n_planted - n_exact
    originals, seen = [], set()
    for text in [*en[: int(n_orig * 0.6) * 2], *zh[: int(n_orig * 0.4) * 2]]:
        k = exact_key(text)
        if k not in seen:
            seen.add(k)
            originals.append(text)
    en_o = [t for t in originals if not any("\u4e00" <= c <= "\u9fff" for c in t[:50])][: int(n_orig * 0.6)]
    zh_o = [t for t in originals if any("\u4e00" <= c <= "\u9fff" for c in t[:50])][: n_orig - len(en_o)]
    docs = [{"id": f"en-{i}", "text": t} for i, t in enumerate(en_o)] + \
           [{"id": f"zh-{i}", "text": t} for i, t in enumerate(zh_o)]
    truth: dict[str, str] = {}
    jac: dict[str, float] = {}
    n_real = len(docs)
    for i in range(n_planted):
        src = docs[rng.randrange(n_real)]
        cjk = src["id"].startswith("zh")
        text = _perturb(src["text"], rng, cjk)
        pid = f"near-{i}-of-{src['id']}"
        docs.append({"id": pid, "text": text})
        truth[pid] = src["id"]
        jac[pid] = jaccard(text, src["text"])
    for i in range(n_exact):
        src = docs[rng.randrange(n_real)]
        pid = f"exact-{i}-of-{src['id']}"
        docs.append({"id": pid, "text": src["text"]})
        truth[pid] = src["id"]
        jac[pid] = 1.0
    rng.shuffle(docs)
    out.mkdir(parents=True, exist_ok=True)
    per = -(-len(docs) // 8)
    for s in range(8):
        with open(out / f"shard-{s}.jsonl", "w", encoding="utf-8") as f:
            for d in docs[s * per:(s + 1) * per]:
                f.write(json.dumps(d, ensure_ascii=False) + "\n")
    return {"truth": truth, "jaccard": jac, "docs": len(docs), "en": len(en_o), "zh": len(zh_o),
            "planted_near": n_planted, "planted_exact": n_exact,
            "bytes": sum(p.stat().st_size for p in out.glob("*.jsonl"))}
