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


# ---------------------------------------------------------------------------------------------
# the two systems (each run in its own subprocess: `--worker NAME`)


def run_lmforge(corpus: Path, out: Path, workers: int) -> dict:
    from lmforge.data.config import DataStageConfig
    from lmforge.data.pipeline import process

    # 8 input shards of ~1 MB: shard_mb=1 keeps one file per shard, so both workers have work
    cfg = DataStageConfig(inputs=[str(corpus)], workers=workers, shard_mb=1)
    t = time.perf_counter()
    stats = process(cfg, out)
    seconds = time.perf_counter() - t
    removed, filtered = set(), set()
    from lmforge.data.writers import iter_jsonl

    for p in sorted((out / "dropped").glob("part-*")):
        for r in iter_jsonl(p):
            (removed if r["reason"].startswith("dedup:") else filtered).add(r["id"])
    kept = sum(1 for p in (out / "kept").glob("part-*") for _ in iter_jsonl(p))
    return {"seconds": seconds, "removed": sorted(removed), "filtered": sorted(filtered), "kept": kept,
            "drop_reasons": stats["drop_reasons"]}


def run_datatrove(corpus: Path, out: Path, workers: int) -> dict:
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.dedup import (MinhashDedupBuckets, MinhashDedupCluster, MinhashDedupFilter,
                                          MinhashDedupSignature)
    from datatrove.pipeline.dedup.minhash import MinhashConfig
    from datatrove.pipeline.filters import (C4QualityFilter, FineWebQualityFilter, GopherQualityFilter,
                                            GopherRepetitionFilter)
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.writers import JsonlWriter

    _patch_datatrove_xxhash()
    cfg = MinhashConfig()  # datatrove's defaults: 5-grams, 14 buckets x 8 hashes
    n_tasks = len(list(corpus.glob("*.jsonl")))
    logs = str(out / "logs")
    stages = [
        LocalPipelineExecutor(pipeline=[
            JsonlReader(str(corpus), glob_pattern="*.jsonl"),
            GopherRepetitionFilter(exclusion_writer=JsonlWriter(str(out / "filtered_out" / "rep"))),
            GopherQualityFilter(exclusion_writer=JsonlWriter(str(out / "filtered_out" / "quality"))),
            C4QualityFilter(exclusion_writer=JsonlWriter(str(out / "filtered_out" / "c4"))),
            FineWebQualityFilter(exclusion_writer=JsonlWriter(str(out / "filtered_out" / "fineweb"))),
            JsonlWriter(str(out / "filtered")),
            MinhashDedupSignature(output_folder=str(out / "sigs"), config=cfg),
        ], tasks=n_tasks, workers=workers, logging_dir=f"{logs}/1", skip_completed=False),
        LocalPipelineExecutor(pipeline=[
            MinhashDedupBuckets(input_folder=str(out / "sigs"), output_folder=str(out / "buckets"), config=cfg),
        ], tasks=cfg.num_buckets, workers=workers, logging_dir=f"{logs}/2", skip_completed=False),
        LocalPipelineExecutor(pipeline=[
            MinhashDedupCluster(input_folder=str(out / "buckets"), output_folder=str(out / "remove_ids"), config=cfg),
        ], tasks=1, workers=1, logging_dir=f"{logs}/3", skip_completed=False),
        LocalPipelineExecutor(pipeline=[
            JsonlReader(str(out / "filtered")),
            MinhashDedupFilter(input_folder=str(out / "remove_ids"),
                               exclusion_writer=JsonlWriter(str(out / "removed"))),
            JsonlWriter(str(out / "final")),
        ], tasks=n_tasks, workers=workers, logging_dir=f"{logs}/4", skip_completed=False),
    ]
    t = time.perf_counter()
    for st in stages:
        st.run()
    seconds = time.perf_counter() - t

    def ids(folder: Path) -> set[str]:
        import gzip

        out_ids = set()
        for p in folder.rglob("*.jsonl.gz"):
            with gzip.open(p, "rt", encoding="utf-8") as f:
                out_ids.update(json.loads(line)["id"] for line in f if line.strip())
        return out_ids

    removed = ids(out / "removed")
    return {"seconds": seconds, "removed": sorted(removed), "filtered": sorted(ids(out / "filtered_out")),
            "kept": len(ids(out / "final"))}


def _patch_datatrove_xxhash() -> None:
    """datatrove 0.10 passes str to xxhash, which xxhash >= 4 refuses; encode first (same hashes)."""
    import xxhash

    import datatrove.utils.hashes.xxhash as dx

    def enc(d):
        return d.encode("utf-8") if isinstance(d, str) else d

    dx.xxhash32 = lambda d: xxhash.xxh32_intdigest(enc(d))
    dx.xxhash64 = lambda d: xxhash.xxh64_intdigest(enc(d))


def _tree_rss_kb(pid: int) -> int:
    """Resident memory of a process and all its descendants (Linux /proc)."""
    total, stack, seen = 0, [pid], set()
    while stack:
        p = stack.pop()
        if p in seen:
            continue
        seen.add(p)
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
            for t in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{t}/children") as f:
                    stack.extend(int(c) for c in f.read().split())
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return total


def measure(name: str, corpus: Path, out: Path, workers: int) -> dict:
    res_file = out.with_suffix(".json")
    cmd = [sys.executable, __file__, "--worker", name, "--corpus", str(corpus), "--out", str(out),
           "--workers", str(workers), "--result", str(res_file)]
    proc = subprocess.Popen(cmd, env={**os.environ, "PYTHONPATH": str(REPO / "src")})
    peak = 0
    while proc.poll() is None:
        peak = max(peak, _tree_rss_kb(proc.pid))
        time.sleep(0.05)
    if proc.returncode != 0:
        raise RuntimeError(f"{name} failed with exit code {proc.returncode}")
    res = json.loads(res_file.read_text())
    res["peak_rss_mb"] = round(peak / 1024, 1)
    return res


def score(res: dict, info: dict) -> dict:
    truth, jac = info["truth"], info["jaccard"]
    removed, filtered = set(res["removed"]), set(res["filtered"])
    in_pairs = set(truth) | set(truth.values())
    pairs = [(p, o) for p, o in truth.items() if jac[p] >= 0.8]
    reached = [(p, o) for p, o in pairs if p not in filtered and o not in filtered]
    found = [(p, o) for p, o in reached if (p in removed) != (o in removed) or (p in removed and o in removed)]
    false_dups = sorted(removed - in_pairs)
    return {
        "docs_per_s": round(info["docs"] / res["seconds"], 1), "seconds": round(res["seconds"], 2),
        "peak_rss_mb": res["peak_rss_mb"], "kept": res["kept"], "filtered_out": len(filtered),
        "dedup_removed": len(removed), "planted_pairs_j>=0.8": len(pairs), "pairs_reaching_dedup": len(reached),
        "recall": round(len(found) / max(1, len(reached)), 4),
        "precision": round(len(removed & in_pairs) / max(1, len(removed)), 4),
        "distinct_docs_removed_as_duplicates": len(false_dups), "false_dup_examples": false_dups[:5],
        "filtered_out_en": sum(1 for i in filtered if i.startswith("en-")),
        "filtered_out_zh": sum(1 for i in filtered if i.startswith("zh-")),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=int, default=10_000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--skip-datatrove", action="store_true")
    ap.add_argument("--repeat", type=int, default=2, help="runs per system, alternating; the best is reported")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--corpus", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    ap.add_argument("--result", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        fn = run_lmforge if args.worker == "lmforge" else run_datatrove
        res = fn(Path(args.corpus), Path(args.out), args.workers)
        Path(args.result).write_text(json.dumps(res))
        return
    if not DATASETS.exists():
        sys.exit(f"datasets not found at {DATASETS} (set LMFORGE_DATASETS)")
    load_before = os.getloadavg()
    systems = ["lmforge"] + ([] if args.skip_datatrove else ["datatrove"])
    runs: dict[str, list[dict]] = {name: [] for name in systems}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        info = build_corpus(tmp / "corpus", args.docs)
        # alternate the systems so that load from other processes on the machine hits both alike
        for r in range(args.repeat):
            for name in systems:
                out = tmp / f"{name}-{r}"
                runs[name].append(score(measure(name, tmp / "corpus", out, args.workers), info))
    results = {}
    for name, rs in runs.items():
        best = max(rs, key=lambda x: x["docs_per_s"])
        results[name] = {**best, "all_seconds": [x["seconds"] for x in rs],
                         "peak_rss_mb": max(x["peak_rss_mb"] for x in rs)}
    from importlib import metadata

    versions = {}
    for pkg in ("lmforge", "datatrove", "spacy", "numpy"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    report = {
        "command": "python " + " ".join([str(Path(sys.argv[0]).relative_to(REPO) if Path(sys.argv[0]).is_absolute() else sys.argv[0]), *sys.argv[1:]]),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
                    "load_average_before": [round(x, 2) for x in load_before],
                    "load_average_after": [round(x, 2) for x in os.getloadavg()]},
        "versions": versions, "workers": args.workers, "repeat": args.repeat,
        "corpus": {k: v for k, v in info.items() if k not in ("truth", "jaccard")}, "results": results,
    }
    if "datatrove" in results:
        report["speedup_docs_per_s"] = round(results["lmforge"]["docs_per_s"] / results["datatrove"]["docs_per_s"], 2)
    RESULTS.mkdir(parents=True, exist_ok=True)
    suffix = "" if args.docs == 10_000 and not args.skip_datatrove else f"_{args.docs}"
    (RESULTS / f"data_pipeline{suffix}.json").write_text(json.dumps(report, indent=2) + "\n")
    (RESULTS / f"data_pipeline{suffix}.md").write_text(_markdown(report))
    print(_markdown(report))


def _markdown(r: dict) -> str:
    rows = ["| metric | " + " | ".join(r["results"]) + " |", "|---|" + "---|" * len(r["results"])]
    keys = ["docs_per_s", "seconds", "all_seconds", "peak_rss_mb", "kept", "filtered_out", "filtered_out_en", "filtered_out_zh",
            "dedup_removed", "planted_pairs_j>=0.8", "pairs_reaching_dedup", "recall", "precision",
            "distinct_docs_removed_as_duplicates"]
    for k in keys:
        rows.append(f"| {k} | " + " | ".join(str(v.get(k)) for v in r["results"].values()) + " |")
    c = r["corpus"]
    head = (f"# Data pipeline benchmark\n\nCommand: `{r['command']}`\n\n{c['docs']:,} documents "
            f"({c['en']:,} English + {c['zh']:,} Chinese originals, {c['planted_near']} planted near-duplicates, "
            f"{c['planted_exact']} exact copies; {c['bytes'] / 1e6:.1f} MB in 8 JSONL shards), {r['workers']} workers, "
            f"{r['machine']['cpus']} CPUs, best of {r['repeat']} alternating runs, versions {r['versions']}.\n\n")
    tail = f"\nSpeed-up (documents/s): **{r['speedup_docs_per_s']}x**\n" if "speedup_docs_per_s" in r else ""
    return head + "\n".join(rows) + "\n" + tail


if __name__ == "__main__":
    main()
