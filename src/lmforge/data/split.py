"""Train/val/test splits — random, stratified by label, or grouped — and leakage reports.

Assignment is deterministic: every document (or group) gets a rank from a hash of its id and the
seed, and the lowest ranks fill test, then val, then train with exact proportions. Grouped splits
put every near-duplicate cluster (MinHash, like dedup) and every ``group_field`` value on one side.
In every mode an augmented copy (``meta.augmented_from``) goes where its source goes.
Two passes over the files: only ids, labels and signatures are held in memory, never the text.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import xxhash

from .config import DedupConfig, SplitConfig
from .steps.dedup import MinHasher, UnionFind, exact_key, near_clusters
from .writers import ShardWriter, iter_jsonl

SPLITS = ("train", "val", "test")


def _rank(key: str, seed: int) -> int:
    return xxhash.xxh64_intdigest(key.encode(), seed=seed)


def iter_records(paths: Iterable[str | Path]) -> Iterator[dict]:
    for p in paths:
        yield from iter_jsonl(p)


def source_id(rec: dict) -> str:
    """The id of the original a record was made from (an augmented copy's ``meta.augmented_from``), else its own."""
    src = (rec.get("meta") or {}).get("augmented_from")
    return str(src) if src is not None else str(rec["id"])


def _fill(groups: list[list[int]], ranks: list[int], n_test: int, n_val: int, assign: np.ndarray,
          leaders: list[int] | None = None) -> None:
    """Groups in rank order (of their leader: first member by default) fill test, then val (by
    documents), the rest is train; a group never splits."""
    filled = [0, 0]
    lead = leaders or [g[0] for g in groups]
    for _, g in sorted(zip(lead, groups), key=lambda x: ranks[x[0]]):
        side = 2 if filled[0] < n_test else 1 if filled[1] < n_val else 0
        if side:
            filled[2 - side] += len(g)
        assign[g] = side


def _by_source(records: list[dict], items: list[int]) -> list[list[int]]:
    """``items`` grouped by source id (the original first, where present): copies travel with their source."""
    groups: dict[str, list[int]] = defaultdict(list)
    for i in items:
        groups[source_id(records[i])].append(i)
    return list(groups.values())


def assign_splits(records: list[dict], cfg: SplitConfig) -> np.ndarray:
    """0 train, 1 val, 2 test for each record (``id``, ``meta``; ``text`` only for grouped).

    Augmented copies (``meta.augmented_from``) always land on their source's side: a group is ranked
    by its source id, and stratified splits stratify by the source's label."""
    n = len(records)
    assign = np.zeros(n, dtype=np.int8)
    ranks = [_rank(source_id(r), cfg.seed) for r in records]
    if cfg.mode == "random":
        _fill(_by_source(records, list(range(n))), ranks, round(n * cfg.test_fraction), round(n * cfg.val_fraction),
              assign)
    elif cfg.mode == "stratified":
        groups = _by_source(records, list(range(n)))
        by_label: dict[str, list[list[int]]] = defaultdict(list)
        for g in groups:
            first = min(g, key=lambda i: (str(records[i]["id"]) != source_id(records[i]), i))  # the original
            by_label[str(records[first].get("meta", {}).get(cfg.label_field))].append(g)
        for gs in by_label.values():
            m = sum(len(g) for g in gs)
            _fill(gs, ranks, round(m * cfg.test_fraction), round(m * cfg.val_fraction), assign)
    else:
        roots = group_ids(records, cfg)
        members: dict[int, list[int]] = defaultdict(list)
        for i, g in enumerate(roots):
            members[g].append(i)
        _fill(list(members.values()), ranks, round(n * cfg.test_fraction), round(n * cfg.val_fraction), assign,
              leaders=list(members))  # a group is ranked by its root
    return assign


def group_ids(records: list[dict], cfg: SplitConfig) -> list[int]:
    """Index of each record's group root: near-duplicate clusters joined with ``group_field`` values."""
    hasher = MinHasher(DedupConfig(threshold=cfg.group_threshold))
    sigs = np.array([hasher.signature(r["text"]) for r in records], dtype=np.uint32)
    bands = np.array([hasher.band_hashes(s) for s in sigs], dtype=np.uint64)
    uf = near_clusters(sigs, bands, np.arange(len(records)), cfg.group_threshold) if len(records) else UnionFind()
    first_of: dict[str, int] = {}
    for i, r in enumerate(records):  # exact copies too
        first = first_of.setdefault(f"x{exact_key(r['text'])}", i)
        uf.union(first, i)
        uf.union(first_of.setdefault(f"s{source_id(r)}", i), i)  # an augmented copy joins its source
        if cfg.group_field:
            val = r.get("meta", {}).get(cfg.group_field)
            if val is not None:
                uf.union(first_of.setdefault(f"g{val}", i), i)
    return [uf.find(i) for i in range(len(records))]


def split_files(inputs: list[str | Path], out_dir: str | Path, cfg: SplitConfig) -> dict[str, int]:
    """Write ``out_dir/{train,val[,test]}.jsonl``; returns documents per split."""
    out_dir = Path(out_dir)
    need_text = cfg.mode == "grouped"
    records = [{"id": r["id"], "meta": r.get("meta", {}), **({"text": r["text"]} if need_text else {})}
               for r in iter_records(inputs)]
    assign = assign_splits(records, cfg)
    del records
    names = ["train", "val"] + (["test"] if cfg.test_fraction > 0 else [])
    writers = {name: ShardWriter(out_dir / f"{name}.jsonl", "jsonl") for name in names}
    try:
        for i, rec in enumerate(iter_records(inputs)):
            writers[SPLITS[assign[i]]].write(rec)
    except BaseException:
        for w in writers.values():
            w.abort()
        raise
    for w in writers.values():
        w.close()
    return {name: w.count for name, w in writers.items()}


def leakage(a: list[str | Path], b: list[str | Path], threshold: float = 0.7, examples: int = 5) -> dict:
    """Exact and near (MinHash, estimated Jaccard ≥ threshold) overlap of split B with split A."""
    hasher = MinHasher(DedupConfig(threshold=threshold))
    recs_a = list(iter_records(a))
    recs_b = list(iter_records(b))
    keys_a = {exact_key(r["text"]): r["id"] for r in recs_a}
    exact = [(r["id"], keys_a[k]) for r in recs_b if (k := exact_key(r["text"])) in keys_a]
    allr = recs_a + recs_b
    sigs = np.array([hasher.signature(r["text"]) for r in allr], dtype=np.uint32).reshape(len(allr), -1)
    bands = np.array([hasher.band_hashes(s) for s in sigs], dtype=np.uint64).reshape(len(allr), -1)
    uf = near_clusters(sigs, bands, np.arange(len(allr)), threshold) if allr else UnionFind()
    na = len(recs_a)
    root_a: dict[int, str] = {}
    for i in range(na):
        root_a.setdefault(uf.find(i), recs_a[i]["id"])
    exact_ids = {e[0] for e in exact}
    near = [(recs_b[j]["id"], root_a[uf.find(na + j)]) for j in range(len(recs_b))
            if uf.find(na + j) in root_a and recs_b[j]["id"] not in exact_ids]
    augmented = augmented_overlap(recs_a, recs_b)
    nb = max(1, len(recs_b))
    return {"a_docs": na, "b_docs": len(recs_b), "exact": len(exact), "near": len(near),
            "augmented": len(augmented),
            "exact_fraction": round(len(exact) / nb, 4), "near_fraction": round(len(near) / nb, 4),
            "augmented_fraction": round(len(augmented) / nb, 4),
            "threshold": threshold, "exact_examples": exact[:examples], "near_examples": near[:examples],
            "augmented_examples": augmented[:examples]}


def augmented_overlap(recs_a: list[dict], recs_b: list[dict]) -> list[tuple[str, str]]:
    """Records of B that share an origin with a record of A: a copy of an A record, the source of an
    A copy, or a sibling copy of the same source. Text similarity misses these when augmentation
    rewrote enough words, yet the model has seen the same example; so they are checked by id."""
    origin_a: dict[str, str] = {}
    for r in recs_a:
        origin_a.setdefault(source_id(r), str(r["id"]))
    return [(str(r["id"]), origin_a[s]) for r in recs_b if (s := source_id(r)) in origin_a]


def assign_folds(records: list[dict], k: int, mode: str = "stratified", seed: int = 0,
                 group_field: str | None = None, group_threshold: float = 0.7) -> np.ndarray:
    """The fold (0..k-1) of each record, for cross-validation: ``stratified`` keeps each fold's label
    mix (``meta.label``), ``grouped`` keeps near-duplicate clusters and ``group_field`` values inside
    one fold (so copies never straddle train and held-out), ``random`` is plain k-fold. Augmented
    copies (``meta.augmented_from``) share their source's fold in every mode."""
    from sklearn.model_selection import (
        GroupKFold,
        KFold,
        StratifiedGroupKFold,
        StratifiedKFold,
    )

    from ..errors import ConfigError

    n = len(records)
    if k < 2 or k > n:
        raise ConfigError(f"--folds {k} with {n} examples", "use 2 <= folds <= the number of examples")
    folds = np.zeros(n, dtype=np.int64)
    x = np.zeros((n, 1))
    if mode == "stratified":
        labels = [str(r.get("meta", {}).get("label")) for r in records]
        counts = defaultdict(int)
        for y in labels:
            counts[y] += 1
        rare = min(counts, key=counts.get)
        if counts[rare] < k:
            raise ConfigError(f"--folds {k} is larger than the smallest class: label '{rare}' has {counts[rare]} examples",
                              f"use at most {counts[rare]} folds, add examples of '{rare}', or use mode random")
        sources = [source_id(r) for r in records]
        if len(set(sources)) < n:  # augmented copies: folds of whole source groups
            splits = StratifiedGroupKFold(k, shuffle=True, random_state=seed).split(x, labels, groups=sources)
        else:
            splits = StratifiedKFold(k, shuffle=True, random_state=seed).split(x, labels)
    elif mode == "grouped":
        groups = group_ids(records, SplitConfig(mode="grouped", group_field=group_field, group_threshold=group_threshold))
        if len(set(groups)) < k:
            raise ConfigError(f"--folds {k} with only {len(set(groups))} groups of near-duplicates",
                              "use fewer folds or mode random")
        splits = GroupKFold(k, shuffle=True, random_state=seed).split(x, groups=groups)
    elif mode == "random":
        sources = [source_id(r) for r in records]
        if len(set(sources)) < n:
            if len(set(sources)) < k:
                raise ConfigError(f"--folds {k} with only {len(set(sources))} source documents", "use fewer folds")
            splits = GroupKFold(k, shuffle=True, random_state=seed).split(x, groups=sources)
        else:
            splits = KFold(k, shuffle=True, random_state=seed).split(x)
    else:
        raise ConfigError(f"unknown fold mode '{mode}'", "use stratified, grouped or random")
    for i, (_, held) in enumerate(splits):
        folds[held] = i
    return folds
