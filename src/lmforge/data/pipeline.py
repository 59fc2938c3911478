"""The recommended pipeline: read -> normalise -> langid -> quality -> PII -> dedup -> (augment) -> (segment).

Work is split into shards (groups of input files). Three phases, each resumable through markers
under ``OUT/.work``:

1. per shard, in parallel: read and run the per-document steps; write survivors, drops, errors and
   dedup signatures; then a ``.done`` marker;
2. global: exact and near-duplicate decisions from the signatures alone (no text in memory);
3. per shard, in parallel: apply the decisions, run post-dedup steps, write ``kept/`` and
   ``dropped/`` shards.

A killed run restarted with the same command skips finished shards and ends with the same bytes.
"""

from __future__ import annotations

import json
import shutil
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..runs import atomic_write_json, atomic_write_text, fingerprint
from .accounting import collect
from .config import DataStageConfig
from .document import Document, ReadError
from .inputs import InputFile, expand_inputs, ranges
from .readers import read_file
from .steps import PII, LangId, MinHasher, Normalize, Precheck, Quality, Segment, exact_key
from .steps.base import StepStats
from .steps.dedup import exact_duplicates, near_clusters, shingle_hashes
from .steps.paragraph import ParagraphDedup, paragraph_decisions
from .writers import ShardWriter, iter_jsonl, shard_suffix

SHARD_BYTES = 32 << 20


@dataclass
class Shard:
    index: int
    files: list[InputFile]


def plan_shards(files: list[InputFile], shard_bytes: int = SHARD_BYTES) -> list[Shard]:
    """Consecutive files packed into shards of about ``shard_bytes``; order is preserved."""
    shards: list[Shard] = []
    cur: list[InputFile] = []
    size = 0
    for f in files:
        n = _size(f)
        if f.end is not None:  # a byte range of a large file is a shard of its own
            if cur:
                shards.append(Shard(len(shards), cur))
                cur, size = [], 0
            shards.append(Shard(len(shards), [f]))
            continue
        if cur and size + n > shard_bytes:
            shards.append(Shard(len(shards), cur))
            cur, size = [], 0
        cur.append(f)
        size += n
    if cur:
        shards.append(Shard(len(shards), cur))
    return shards


def _size(f: InputFile) -> int:
    if f.end is not None:
        return f.end - f.start
    try:
        return Path(f.path).stat().st_size
    except OSError:
        return 0


def shard_size(cfg: DataStageConfig, files: list[InputFile]) -> int:
    if cfg.shard_mb > 0:
        return int(cfg.shard_mb * (1 << 20))
    from .executors import n_workers

    total = sum(_size(f) for f in files)
    return int(min(64 << 20, max(4 << 20, total / (2 * n_workers(cfg, 1 << 30)))))


def build_steps(cfg: DataStageConfig) -> list:
    steps: list = [Precheck()]
    if cfg.normalize.enabled:
        steps.append(Normalize(cfg.normalize))
    if cfg.langid.enabled:
        steps.append(LangId(cfg.langid, cfg.languages))
    if cfg.quality.enabled:
        steps.append(Quality(cfg.quality))
    if cfg.pii.enabled:
        steps.append(PII(cfg.pii))
    return steps


def post_steps(cfg: DataStageConfig, lines: dict) -> list:
    """Steps after dedup: paragraph dedup, augmentation (copies must not be deduplicated), segmentation."""
    steps: list = [ParagraphDedup(lines)] if cfg.dedup.paragraph else []
    if cfg.augment.enabled:
        from .steps.augment import build_augmenter

        a = cfg.augment
        steps.append(build_augmenter(a.method, a.n, a.seed, a.lang, a.options, wordnet_dir=a.wordnet_dir, cilin=a.cilin))
    if cfg.segment.enabled:
        steps.append(Segment(cfg.segment))
    return steps


def _name(i: int) -> str:
    return f"part-{i:05d}"


# ---------------------------------------------------------------------------------------------
# phase 1


def phase1(shard: Shard, cfg: DataStageConfig, work: Path) -> None:
    """Read a shard and run the per-document steps; everything written, then the marker."""
    done = work / "p1" / f"{_name(shard.index)}.done"
    if done.exists():
        return
    base = work / "p1" / _name(shard.index)
    steps = build_steps(cfg)
    hasher = MinHasher(cfg.dedup) if cfg.dedup.near else None
    dedup_stats = StepStats("dedup")
    counts = Counter()
    keys: list[int] = []
    pending: list[np.ndarray] = []  # shingle hashes waiting for a batched signature
    paras: list[tuple[int, int, int]] = []  # (line hash, row, line index) for paragraph dedup
    sigs: list[np.ndarray] = []
    read_seconds = 0.0

    kept_w = ShardWriter(f"{base}.kept.jsonl", "jsonl")
    drop_w = ShardWriter(f"{base}.dropped.jsonl", "jsonl")
    err_w = ShardWriter(f"{base}.errors.jsonl", "jsonl")

    def sink(doc: Document, reason: str) -> None:
        drop_w.write({**doc.to_dict(), "reason": reason})

    def source():
        nonlocal read_seconds
        for f in shard.files:
            it = read_file(f, cfg.read)
            while True:
                t = time.perf_counter()
                item = next(it, None)
                read_seconds += time.perf_counter() - t
                if item is None:
                    break
                counts["records_in"] += 1
                if isinstance(item, ReadError):
                    counts["errors"] += 1
                    err_w.write(item.to_dict())
                else:
                    yield item

    try:
        stream = source()
        for step in steps:
            stream = step(stream, sink)
        for doc in stream:
            t = time.perf_counter()
            if cfg.dedup.exact or cfg.dedup.near:
                keys.append(exact_key(doc.text))
            if cfg.dedup.paragraph:
                for j, line in enumerate(doc.text.split("\n")):
                    if line.strip():
                        paras.append((exact_key(line), kept_w.count, j))
            if hasher is not None:
                lang = doc.meta.get("lang")
                cjk = None if lang in (None, "und") else lang in ("zh", "ja", "ko")
                pending.append(shingle_hashes(doc.text, cfg.dedup.ngram, cjk))
                if len(pending) >= 1024:  # signatures in batches: far fewer numpy calls
                    sigs.append(hasher.signatures(pending))
                    pending = []
            dedup_stats.seconds += time.perf_counter() - t
            kept_w.write(doc.to_dict())
        if hasher is not None and pending:
            t = time.perf_counter()
            sigs.append(hasher.signatures(pending))
            dedup_stats.seconds += time.perf_counter() - t
        for w in (kept_w, drop_w, err_w):
            w.close()
    except BaseException:
        for w in (kept_w, drop_w, err_w):
            w.abort()
        raise
    n = kept_w.count
    perm, nb = (cfg.dedup.num_perm, hasher.bands) if hasher is not None else (0, 0)
    sig_arr = np.concatenate(sigs) if sigs else np.zeros((n, perm), dtype=np.uint32)
    band_arr = hasher.band_hashes(sig_arr) if hasher is not None else np.zeros((n, 0), dtype=np.uint64)
    np.savez(f"{base}.sig.tmp.npz", keys=np.array(keys, dtype=np.uint64).reshape(-1),
             sigs=sig_arr.reshape(n, perm), bands=band_arr.reshape(n, nb),
             para=np.array([p[0] for p in paras], dtype=np.uint64),
             para_pos=np.array([p[1:] for p in paras], dtype=np.int64).reshape(-1, 2))
    Path(f"{base}.sig.tmp.npz").replace(f"{base}.sig.npz")
    stats = {s.name: s.stats.to_dict() for s in steps}
    stats["read"] = {"in": counts["records_in"], "out": counts["records_in"] - counts["errors"],
                     "dropped": {}, "errors": counts["errors"], "seconds": round(read_seconds, 4)}
    atomic_write_json(f"{base}.stats.json", {"counts": dict(counts), "steps": stats,
                                             "dedup_seconds": dedup_stats.seconds, "survivors": n})
    atomic_write_text(done, "ok\n")


# ---------------------------------------------------------------------------------------------
# phase 2


def phase2(shards: list[Shard], cfg: DataStageConfig, work: Path) -> None:
    """Global dedup decisions, one JSON per shard: {row: [reason, id of the copy kept]}."""
    done = work / "p2.done"
    if done.exists():
        return
    t = time.perf_counter()
    keys, sigs, bands = [], [], []
    for s in shards:
        z = np.load(work / "p1" / f"{_name(s.index)}.sig.npz")
        keys.append(z["keys"])
        sigs.append(z["sigs"])
        bands.append(z["bands"])
    all_keys = np.concatenate(keys) if keys else np.zeros(0, np.uint64)
    n = len(all_keys)
    offsets = np.cumsum([0] + [len(k) for k in keys])
    reason = np.zeros(n, dtype=np.int8)  # 0 keep, 1 exact, 2 near
    dup_of = np.arange(n, dtype=np.int64)
    if cfg.dedup.exact and n:
        first = exact_duplicates(all_keys)
        is_dup = first != np.arange(n)
        reason[is_dup] = 1
        dup_of[is_dup] = first[is_dup]
    cluster_sizes: Counter = Counter()
    if cfg.dedup.near and n:
        all_sigs, all_bands = np.concatenate(sigs), np.concatenate(bands)
        cand = np.flatnonzero(reason == 0)
        uf = near_clusters(all_sigs, all_bands, cand, cfg.dedup.threshold)
        members: dict[int, int] = Counter()
        for x in list(uf.parent):
            root = uf.find(x)
            members[root] += 1
            if root != x:
                reason[x] = 2
                dup_of[x] = root
        cluster_sizes.update(members.values())
    if cfg.dedup.exact and n:  # exact copies join the cluster of the document they copy
        exact_sizes = Counter(dup_of[reason == 1].tolist())
        for _, c in exact_sizes.items():
            cluster_sizes[c + 1] += 1
    lines = paragraph_decisions(shards, work, offsets, reason) if cfg.dedup.paragraph else {}
    ids = _load_ids(shards, work)
    for s in shards:
        lo, hi = offsets[s.index], offsets[s.index + 1]
        dec: dict = {"lines": lines.get(s.index, {})}
        for row in np.flatnonzero(reason[lo:hi]):
            g = lo + row
            target = dup_of[g]
            while reason[target] != 0:  # follow to the copy that is kept
                target = dup_of[target]
            dec[str(int(row))] = ["dedup:exact" if reason[g] == 1 else "dedup:near", ids[int(target)]]
            dec["lines"].pop(str(int(row)), None)
        atomic_write_json(work / "p2" / f"{_name(s.index)}.json", dec)
    atomic_write_json(work / "p2" / "summary.json", {
        "seconds": time.perf_counter() - t, "exact": int((reason == 1).sum()), "near": int((reason == 2).sum()),
        "cluster_sizes": {str(k): v for k, v in sorted(cluster_sizes.items())}})
    atomic_write_text(done, "ok\n")


def _load_ids(shards: list[Shard], work: Path) -> list[str]:
    ids: list[str] = []
    for s in shards:
        ids.extend(r["id"] for r in iter_jsonl(work / "p1" / f"{_name(s.index)}.kept.jsonl"))
    return ids


# ---------------------------------------------------------------------------------------------
# phase 3


def phase3(shard: Shard, cfg: DataStageConfig, work: Path, out: Path) -> None:
    done = work / "p3" / f"{_name(shard.index)}.done"
    if done.exists():
        return
    suffix = shard_suffix(cfg.output.format)
    decisions = json.loads((work / "p2" / f"{_name(shard.index)}.json").read_text(encoding="utf-8"))
    lines = decisions.pop("lines", {})
    post = post_steps(cfg, lines)
    base = work / "p1" / _name(shard.index)
    raw_ok = not post and cfg.output.format != "parquet"  # survivors pass through as JSON lines
    with ShardWriter(out / "kept" / f"{_name(shard.index)}{suffix}", cfg.output.format) as kept_w, \
            ShardWriter(out / "dropped" / f"{_name(shard.index)}{suffix}", cfg.output.format) as drop_w:
        if raw_ok:
            with open(f"{base}.dropped.jsonl", encoding="utf-8") as f:
                for line in f:
                    drop_w.write_raw(line)
            with open(f"{base}.kept.jsonl", encoding="utf-8") as f:
                for row, line in enumerate(f):
                    dec = decisions.get(str(row))
                    if dec:
                        rec = json.loads(line)
                        drop_w.write({**rec, "meta": {**rec["meta"], "dup_of": dec[1]}, "reason": dec[0]})
                    else:
                        kept_w.write_raw(line)
        else:
            for rec in iter_jsonl(f"{base}.dropped.jsonl"):
                drop_w.write(rec)

            def survivors():
                for row, rec in enumerate(iter_jsonl(f"{base}.kept.jsonl")):
                    dec = decisions.get(str(row))
                    if dec:
                        drop_w.write({**rec, "meta": {**rec["meta"], "dup_of": dec[1]}, "reason": dec[0]})
                    else:
                        doc = Document.from_dict(rec)
                        doc.meta["_row"] = row
                        yield doc

            stream = survivors()
            for step in post:
                stream = step(stream, lambda d, r: drop_w.write({**d.to_dict(), "reason": r}))
            for doc in stream:
                doc.meta.pop("_row", None)
                kept_w.write(doc.to_dict())
    atomic_write_json(f"{base}.post.json", {s.name: s.stats.to_dict() for s in post})
    atomic_write_text(done, "ok\n")


# ---------------------------------------------------------------------------------------------
# driver


def _run_fingerprint(cfg: DataStageConfig, files: list[InputFile]) -> str:
    conf = cfg.model_dump(mode="json", exclude={"split", "executor", "workers", "ray_address", "progress"})
    conf["shard_bytes"] = shard_size(cfg, files)  # shards, and so output files, depend on it
    sizes = []
    for f in files:
        st = Path(f.path).stat()
        sizes.append([f.path, f.rel, st.st_size, st.st_mtime_ns])
    return fingerprint({"config": conf, "files": sizes})


def process(cfg: DataStageConfig, out: str | Path) -> dict[str, Any]:
    """Run the pipeline over ``cfg.inputs`` into ``out``; returns the stats written to stats.json."""
    from .executors import run_tasks

    out = Path(out)
    t0 = time.perf_counter()
    if not cfg.inputs:
        raise InputError("no inputs given", "pass INPUT paths, or set data.inputs in the recipe")
    files = expand_inputs(cfg.inputs)
    if not files:
        raise InputError(f"no input files found under {', '.join(cfg.inputs)}", "check the paths")
    chunk = shard_size(cfg, files)
    files = [r for f in files for r in ranges(f, cfg.read, chunk)]
    shards = plan_shards(files, chunk)
    work = out / ".work"
    fp = _run_fingerprint(cfg, files)
    stamp = work / "fingerprint"
    if not stamp.exists() or stamp.read_text().strip() != fp:
        for sub in (work, out / "kept", out / "dropped"):  # a different run: start clean
            shutil.rmtree(sub, ignore_errors=True)
        for name in ("errors.jsonl", "stats.json"):
            (out / name).unlink(missing_ok=True)
        (work / "p1").mkdir(parents=True, exist_ok=True)
        atomic_write_text(stamp, fp + "\n")
    for sub in ("p1", "p2", "p3"):
        (work / sub).mkdir(parents=True, exist_ok=True)
    if (work / "complete").exists() and (out / "stats.json").exists():
        return json.loads((out / "stats.json").read_text(encoding="utf-8"))

    phases = {}
    t = time.perf_counter()
    run_tasks(phase1, [(s, cfg, work) for s in shards], cfg, "read + filter")
    phases["1_read_filter"], t = time.perf_counter() - t, time.perf_counter()
    phase2(shards, cfg, work)
    phases["2_dedup_decisions"], t = time.perf_counter() - t, time.perf_counter()
    run_tasks(phase3, [(s, cfg, work, out) for s in shards], cfg, "dedup + write")
    phases["3_write"] = time.perf_counter() - t
    stats = collect(shards, cfg, work, out, time.perf_counter() - t0)
    stats["phase_seconds"] = {k: round(v, 3) for k, v in phases.items()}
    atomic_write_json(out / "stats.json", stats)
    atomic_write_text(work / "complete", "ok\n")
    for s in shards:  # intermediates are no longer needed; markers stay so a rerun is a no-op
        for ext in (".kept.jsonl", ".dropped.jsonl", ".errors.jsonl", ".sig.npz"):
            (work / "p1" / f"{_name(s.index)}{ext}").unlink(missing_ok=True)
    return stats
