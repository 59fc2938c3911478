"""The whole pipeline: accounting, ids, stage contract, CLI, kill-and-resume equality."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from lmforge.data.config import DataStageConfig
from lmforge.data.pipeline import process
from data_helpers import paragraphs, read_dir, read_jsonl

REPO = Path(__file__).resolve().parents[2]


def make_corpus(root: Path, dataset) -> Path:
    """A small mixed corpus: English and Chinese prose, duplicates, junk, bad files, HTML."""
    corpus = root / "corpus"
    (corpus / "web").mkdir(parents=True)
    en = paragraphs(dataset("pretrain/gutenberg/austen-emma.txt"), 120, 200)
    zh = paragraphs(dataset("pretrain/zh_novels/西游记.txt"), 60, 80)
    de = dataset("translation/multi30k/val.de").read_text(encoding="utf-8").splitlines()[:30]
    (corpus / "en.txt").write_text("\n\n".join(en + en[:10]), encoding="utf-8")  # 10 exact dups
    (corpus / "zh.txt").write_text("\n\n".join(zh), encoding="gb18030")
    recs = [{"id": f"de-{i}", "text": t} for i, t in enumerate(de)]
    words = en[20].split()
    words[len(words) // 2] = "indeed"
    recs += [{"id": "near-1", "text": " ".join(words)}]
    lines = [json.dumps(r, ensure_ascii=False) for r in recs] + ['{"id": "bad", "text": ']
    (corpus / "mixed.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (corpus / "junk.txt").write_text("click here click here buy now cheap viagra click here\n\n"
                                     "$$$ ### @@@ !!! %%% ^^^ &&& *** $$$ ### @@@ !!! %%% ^^^\n")
    (corpus / "web" / "page1.html").write_text(
        f"<html><body><nav>Home | About</nav><article><p>{en[50]}</p><p>{en[51]}</p></article>"
        "<footer>Copyright</footer></body></html>", encoding="utf-8")
    (corpus / "empty.txt").write_text("")
    (corpus / "blob.txt").write_bytes(bytes(range(256)) * 64)
    return corpus


def test_process_accounting_and_outputs(tmp_path, dataset):
    corpus = make_corpus(tmp_path, dataset)
    out = tmp_path / "out"
    stats = process(DataStageConfig(inputs=[str(corpus)], languages=["en", "zh"]), out)
    kept, dropped = read_dir(out / "kept"), read_dir(out / "dropped")
    errors = read_jsonl(out / "errors.jsonl")
    assert stats == json.loads((out / "stats.json").read_text())
    assert stats["records_in"] == stats["kept"] + stats["dropped"] + stats["errors"]
    assert (len(kept), len(dropped), len(errors)) == (stats["kept"], stats["dropped"], stats["errors"])
    assert {e["path"].split("/")[-1] for e in errors} == {"mixed.jsonl", "empty.txt", "blob.txt"}
    assert all(set(r) == {"id", "text", "meta", "reason"} for r in dropped)
    reasons = {r["reason"] for r in dropped}
    assert {"dedup:exact", "dedup:near", "lang:de", "quality:spam", "quality:symbols"} <= reasons
    assert sum(r["reason"] == "dedup:exact" for r in dropped) == 10
    assert sum(r["reason"] == "lang:de" for r in dropped) >= 25
    ids = {r["id"] for r in kept}
    assert "web/page1.html" in ids and not any(i.startswith("de-") for i in ids)
    assert sum(r["meta"]["lang"] == "zh" for r in kept) >= 55  # GBK file read and kept
    near = next(r for r in dropped if r["reason"] == "dedup:near")
    assert near["id"] == "near-1" and near["meta"]["dup_of"] in ids
    # per-step accounting chains: each step's input is the previous step's output
    steps = list(stats["steps"].values())
    for a, b in zip(steps, steps[1:]):
        assert a["out"] == b["in"]
        assert b["in"] - b["out"] == sum(b["dropped"].values())
    assert all("seconds" in s for s in steps)


def test_stage_contract(tmp_path, dataset):
    from lmforge.data.stage import run

    corpus = make_corpus(tmp_path, dataset)
    cfg = DataStageConfig.model_validate({"inputs": [str(corpus)], "split": {"val_fraction": 0.2, "test_fraction": 0.1}})
    assert cfg.input_paths() == [str(corpus)]
    res = run(cfg, tmp_path / "data")
    m = res.metrics
    assert m["records_in"] == m["kept"] + m["dropped"] + m["errors"]
    train = read_jsonl(tmp_path / "data" / "splits" / "train.jsonl")
    val = read_jsonl(tmp_path / "data" / "splits" / "val.jsonl")
    test = read_jsonl(tmp_path / "data" / "splits" / "test.jsonl")
    assert (len(train), len(val), m["test_docs"]) == (m["train_docs"], m["val_docs"], len(test))
    assert len(train) + len(val) + len(test) == m["kept"]
    assert abs(len(val) - 0.2 * m["kept"]) <= 1
    assert not {d["id"] for d in train} & {d["id"] for d in val}


def test_quickstart_sample_fast(tmp_path):
    from lmforge.data.stage import run

    raw = REPO / "examples" / "data" / "raw"
    if not raw.exists():
        import pytest

        pytest.skip("examples/data/raw not built")
    t = time.time()
    res = run(DataStageConfig(inputs=[str(raw)]), tmp_path / "qs")
    assert time.time() - t < 60
    m = res.metrics
    assert m["errors"] == 0 and m["kept"] > 0.6 * m["records_in"]
    stats = json.loads((tmp_path / "qs" / "stats.json").read_text())
    quality_drops = sum(stats["steps"]["quality"]["dropped"].values())
    assert quality_drops < 0.01 * m["records_in"]  # short clean review sentences survive
    assert stats["steps"]["dedup"]["dropped"]["dedup:exact"] >= 150


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-c", "from lmforge.data.cli import app; app()", *args]


def test_cli_process_with_overrides(tmp_path, dataset):
    corpus = make_corpus(tmp_path, dataset)
    cfg = tmp_path / "data.yaml"
    cfg.write_text("data:\n  dedup:\n    near: false\n  output:\n    format: jsonl\n")
    res = subprocess.run(_cli("process", str(corpus), "--output", str(tmp_path / "o"), "--languages", "en",
                              "--config", str(cfg), "quality.min_words=5", "--no-progress"),
                         capture_output=True, text=True, cwd=REPO)
    assert res.returncode == 0, res.stderr
    stats = json.loads((tmp_path / "o" / "stats.json").read_text())
    assert "dedup:near" not in stats["drop_reasons"] and "lang:zh" in stats["drop_reasons"]
    assert list((tmp_path / "o" / "kept").glob("*.jsonl"))
    bad = subprocess.run(_cli("process", str(corpus), "--output", str(tmp_path / "o2"), "dedup.treshold=1"),
                         capture_output=True, text=True, cwd=REPO)
    assert bad.returncode != 0 and "threshold" in (bad.stderr + bad.stdout)


def _outputs(out: Path) -> dict[str, bytes]:
    files = sorted([*out.glob("kept/*"), *out.glob("dropped/*"), out / "errors.jsonl"])
    return {str(p.relative_to(out)): p.read_bytes() for p in files}


def test_kill_and_resume_gives_identical_output(tmp_path, dataset):
    src = tmp_path / "src"
    src.mkdir()
    for name in ("austen-persuasion.txt", "blake-poems.txt", "chesterton-brown.txt"):
        (src / name).write_bytes(dataset(f"pretrain/gutenberg/{name}").read_bytes())
    (src / "bad.jsonl").write_text('{"text": "ok then fine"}\n{broken\n')
    args = ("process", str(src), "--no-progress", "shard_mb=0.04", "workers=1")
    ref = subprocess.run(_cli(*args, "--output", str(tmp_path / "ref")), capture_output=True, text=True, cwd=REPO)
    assert ref.returncode == 0, ref.stderr
    out = tmp_path / "killed"
    proc = subprocess.Popen(_cli(*args, "--output", str(out)), cwd=REPO, start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline and len(list((out / ".work" / "p1").glob("*.done"))) < 3:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = len(list((out / ".work" / "p1").glob("*.done")))
    assert 3 <= done_before < 20 and not (out / "stats.json").exists()
    again = subprocess.run(_cli(*args, "--output", str(out)), capture_output=True, text=True, cwd=REPO)
    assert again.returncode == 0, again.stderr
    assert _outputs(out) == _outputs(tmp_path / "ref")
    a, b = (json.loads((d / "stats.json").read_text()) for d in (out, tmp_path / "ref"))
    timing = ("seconds", "steps", "phase_seconds")
    assert {k: v for k, v in a.items() if k not in timing} == \
           {k: v for k, v in b.items() if k not in timing}


def test_stats_card(tmp_path, dataset):
    corpus = make_corpus(tmp_path, dataset)
    process(DataStageConfig(inputs=[str(corpus)], languages=["en", "zh"]), tmp_path / "out")
    res = subprocess.run(_cli("stats", str(tmp_path / "out"), "--output", str(tmp_path / "card.html")),
                         capture_output=True, text=True, cwd=REPO)
    assert res.returncode == 0, res.stderr
    page = (tmp_path / "card.html").read_text(encoding="utf-8")
    for needle in ("Length of kept documents", "Language mix", "dedup:exact", "lang:de", "<svg", "Duplicate clusters"):
        assert needle in page
    from lmforge.data.card import summarize

    s = summarize([tmp_path / "out"])
    assert s["documents"] == json.loads((tmp_path / "out" / "stats.json").read_text())["kept"]
    assert set(s["languages"]) == {"en", "zh"} and s["cluster_sizes"]


def test_paragraph_dedup_removes_repeated_lines(tmp_path, dataset):
    paras = paragraphs(dataset("pretrain/gutenberg/austen-sense.txt"), 6, 200)
    boiler = "Subscribe to our newsletter for weekly updates about new books and authors."
    recs = [{"id": f"d{i}", "text": f"{p}\n{boiler}"} for i, p in enumerate(paras[:5])]
    recs.append({"id": "only-boiler", "text": boiler})
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in recs))
    stats = process(DataStageConfig.model_validate({"inputs": [str(src)], "dedup": {"paragraph": True}}),
                    tmp_path / "out")
    kept = {r["id"]: r["text"] for r in read_dir(tmp_path / "out" / "kept")}
    assert kept["d0"].endswith(boiler)  # the first occurrence stays
    assert all(kept[f"d{i}"] == paras[i] for i in range(1, 5))
    assert "only-boiler" not in kept
    assert stats["steps"]["paragraph_dedup"]["dropped"] == {"dedup:paragraph": 1}
    assert stats["records_in"] == stats["kept"] + stats["dropped"] + stats["errors"]


def test_large_file_split_into_byte_ranges(tmp_path, dataset):
    rows = dataset("classification/sst2/train.tsv").read_text(encoding="utf-8").splitlines()[1:6001]
    lines = [json.dumps({"id": f"s{i}", "text": r.split("\t")[0]}) for i, r in enumerate(rows)]
    lines[1234] = '{"id": "broken", "text": '  # a malformed line somewhere in the middle
    src = tmp_path / "big.jsonl"
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    txt = tmp_path / "lines.txt"
    txt.write_text("\n".join(r.split("\t")[0] for r in rows), encoding="utf-8")
    base = {"inputs": [str(src), str(txt)], "read": {"unit": "line"}, "workers": 1}
    whole = process(DataStageConfig.model_validate({**base, "shard_mb": 64}), tmp_path / "whole")
    split = process(DataStageConfig.model_validate({**base, "shard_mb": 0.05}), tmp_path / "split")
    assert whole["shards"] == 1 and split["shards"] > 10
    assert read_dir(tmp_path / "split" / "kept") == read_dir(tmp_path / "whole" / "kept")
    by_id = lambda rows: sorted(rows, key=lambda r: (r["meta"]["source"], r["meta"]["line"]))  # noqa: E731
    assert by_id(read_dir(tmp_path / "split" / "dropped")) == by_id(read_dir(tmp_path / "whole" / "dropped"))
    assert read_jsonl(tmp_path / "split" / "errors.jsonl") == read_jsonl(tmp_path / "whole" / "errors.jsonl")
    assert read_jsonl(tmp_path / "split" / "errors.jsonl")[0]["line"] == 1235
    assert {k: v for k, v in split.items() if k not in ("seconds", "steps", "shards", "phase_seconds")} == \
           {k: v for k, v in whole.items() if k not in ("seconds", "steps", "shards", "phase_seconds")}


def test_parquet_and_zst_outputs(tmp_path, dataset):
    from lmforge.data.writers import iter_jsonl

    corpus = make_corpus(tmp_path, dataset)
    outs = {}
    for fmt in ("parquet", "jsonl.zst"):
        stats = process(DataStageConfig.model_validate({"inputs": [str(corpus)], "output": {"format": fmt}}),
                        tmp_path / fmt)
        files = sorted((tmp_path / fmt / "kept").glob("part-*"))
        assert files and all(f.name.endswith(fmt) for f in files)
        outs[fmt] = [r for f in files for r in iter_jsonl(f)]
        assert len(outs[fmt]) == stats["kept"]
    assert outs["parquet"] == outs["jsonl.zst"]
