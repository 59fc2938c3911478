"""The tokenizer stage end to end, and the ``lmforge tokenizer`` commands."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from typer.testing import CliRunner

from lmforge.errors import InputError
from lmforge.tokenizer import Tok, TokenizerConfig, read_shard, stage
from lmforge.tokenizer.cli import app


def _documents(path, texts):
    path.write_text("".join(json.dumps({"id": f"d{i}", "text": t, "meta": {"source": "test"}}) + "\n"
                            for i, t in enumerate(texts)), encoding="utf-8")
    return path


@pytest.fixture
def splits(tmp_path, shakespeare_text):
    """The data stage's output for tiny Shakespeare: 90/10 split of paragraphs as Document JSONL."""
    paras = [p for p in shakespeare_text.split("\n\n") if p.strip()]
    cut = int(len(paras) * 0.9)
    d = tmp_path / "data" / "splits"
    d.mkdir(parents=True)
    return _documents(d / "train.jsonl", paras[:cut]), _documents(d / "val.jsonl", paras[cut:]), paras


def test_stage_writes_tokenizer_shards_and_stats(tmp_path, splits):
    train, val, paras = splits
    start = time.perf_counter()
    result = stage.run(TokenizerConfig(vocab_size=4096), [train], [val], tmp_path / "tok")
    assert time.perf_counter() - start < 20

    out = tmp_path / "tok"
    for name in ("tokenizer.json", "tokenizer_meta.json", "train.bin", "val.bin", "stats.json"):
        assert (out / name).exists(), name
    m = result.metrics
    assert m["vocab_size"] == 4096
    assert 2 < m["bytes_per_token"] < 6
    assert m["unk_rate"] == 0.0 and 0 < m["vocab_coverage"] <= 1

    tok = Tok.load(out)
    tr, va = read_shard(out / "train.bin"), read_shard(out / "val.bin")
    assert (len(tr), len(va)) == (m["train_tokens"], m["val_tokens"])
    assert tr.n_docs + va.n_docs == len(paras)
    assert tok.decode(va.doc(0)[:-1]) == paras[int(len(paras) * 0.9)]
    assert va.doc(0)[-1] == tok.eos_id

    stats = json.loads((out / "stats.json").read_text())
    assert stats["val_bytes_per_token"] == m["bytes_per_token"] == stats["val"]["bytes_per_token"]
    assert stats["trained_on"] == [str(train)] and stats["measured_on"] == "val"


def test_stage_trains_on_cfg_files_when_given(tmp_path, splits, zh_text):
    train, val, _ = splits
    zh = tmp_path / "zh.txt"
    zh.write_text(zh_text[:50_000], encoding="utf-8")
    cfg = TokenizerConfig(kind="char", files=[str(zh)])
    result = stage.run(cfg, [train], [val], tmp_path / "tok")
    tok = Tok.load(tmp_path / "tok")
    assert tok.token_to_id("悟") is not None and tok.token_to_id("Q") is None
    assert result.metrics["unk_rate"] > 0.5  # Shakespeare measured with a Chinese character vocabulary
    assert cfg.input_paths() == [str(zh)]


def test_stage_without_val_measures_on_train(tmp_path, splits):
    train, _, _ = splits
    result = stage.run(TokenizerConfig(kind="wordpiece", family="bert", vocab_size=2000), [train], [], tmp_path / "t")
    assert result.metrics["val_tokens"] == 0 and result.metrics["train_tokens"] > 0
    assert read_shard(tmp_path / "t" / "val.bin").n_docs == 0
    assert json.loads((tmp_path / "t" / "stats.json").read_text())["measured_on"] == "train"


def test_stage_missing_input(tmp_path):
    with pytest.raises(InputError, match="missing.jsonl"):
        stage.run(TokenizerConfig(), [tmp_path / "missing.jsonl"], [], tmp_path / "t")


runner = CliRunner()


def test_cli_train_encode_stats(tmp_path, splits):
    train, val, _ = splits
    r = runner.invoke(app, ["train", str(train), "--output", str(tmp_path / "tok"), "--kind", "byte_bpe",
                            "--vocab-size", "1000", "--family", "seq2seq"])
    assert r.exit_code == 0, r.output
    tok = Tok.load(tmp_path / "tok")
    assert tok.vocab_size == 1000 and tok.family == "seq2seq" and tok.eos_id == 2

    r = runner.invoke(app, ["encode", str(train), str(val), "--tokenizer", str(tmp_path / "tok"),
                            "--output", str(tmp_path / "all.bin"), "--workers", "2"])
    assert r.exit_code == 0, r.output
    stats = json.loads(r.stdout.strip().splitlines()[-1])
    shard = read_shard(tmp_path / "all.bin")
    assert stats["tokens"] == len(shard) and stats["docs"] == shard.n_docs
    assert np.all(shard.tokens[shard.doc_offsets[1:] - 1] == 2)  # every document ends with </s>

    r = runner.invoke(app, ["stats", "--tokenizer", str(tmp_path / "tok"), str(val)])
    assert r.exit_code == 0, r.output
    assert 2 < json.loads(r.stdout)["bytes_per_token"] < 6


def test_cli_errors_are_input_errors(tmp_path):
    r = runner.invoke(app, ["encode", str(tmp_path / "none.txt"), "--tokenizer", str(tmp_path), "--output",
                            str(tmp_path / "o.bin")])
    assert isinstance(r.exception, InputError) and "tokenizer" in str(r.exception)
    (tmp_path / "a.txt").write_text("hello world\n")
    r = runner.invoke(app, ["train", str(tmp_path / "a.txt"), str(tmp_path / "b.txt"), "-o", str(tmp_path / "t")])
    assert isinstance(r.exception, InputError) and "b.txt" in str(r.exception)


@pytest.mark.parametrize("command", ["train", "encode", "stats"])
def test_cli_help_has_an_example(command):
    r = runner.invoke(app, [command, "--help"])
    assert r.exit_code == 0 and f"lmforge tokenizer {command}" in r.output


def test_cli_bad_option_names_the_option(tmp_path):
    from lmforge.errors import ConfigError

    (tmp_path / "a.txt").write_text("hello world\n")
    r = runner.invoke(app, ["train", str(tmp_path / "a.txt"), "-o", str(tmp_path / "t"), "--kind", "sentencepiece"])
    assert isinstance(r.exception, ConfigError) and "--kind" in str(r.exception)
    r = runner.invoke(app, ["train", str(tmp_path / "a.txt"), "-o", str(tmp_path / "t"), "--special-tokens", "<s>,<s>"])
    assert isinstance(r.exception, ConfigError) and "--special-tokens" in str(r.exception)


def test_cli_special_tokens_and_lowercase(tmp_path, splits):
    train, _, _ = splits
    r = runner.invoke(app, ["train", str(train), "-o", str(tmp_path / "t"), "--kind", "wordpiece", "--vocab-size", "800",
                            "--special-tokens", "[PAD],[UNK],[CLS],[SEP],[MASK],[E1]", "--lowercase"])
    assert r.exit_code == 0, r.output
    tok = Tok.load(tmp_path / "t")
    assert tok.token_to_id("[E1]") == 5 and tok.family == "gpt" and tok.mask_id == 4
    assert tok.encode("KING") == tok.encode("king")
