"""Data parallelism on 2 CPU processes (gloo, torchrun --standalone on localhost) gives the weights
of one process with gradient accumulation over the same global batch."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from lmforge.train import distributed

WORKER = Path(__file__).with_name("_dist_worker.py")
SRC = Path(__file__).resolve().parents[2] / "src"


def _env():
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    return env


def _run(out, text, mode, steps, batch, accum, nproc=1, optimizer="adamw"):
    args = [str(WORKER), str(out), str(text), mode, str(steps), str(batch), str(accum), optimizer]
    if nproc > 1:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}", *args]
    else:
        cmd = [sys.executable, *args]
    r = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return load_file(out / "model" / "model.safetensors")


def _assert_close(a, b, atol=1e-5):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k], b[k], atol=atol, rtol=1e-4), (k, (a[k] - b[k]).abs().max())


@pytest.fixture(scope="module")
def text(tmp_path_factory, shakespeare):
    p = tmp_path_factory.mktemp("dist") / "text.txt"
    p.write_text(shakespeare[:60_000], encoding="utf-8")
    return p


@pytest.fixture(scope="module")
def one(tmp_path_factory, text):
    """The reference: one process, batch 8 as 2 accumulated micro-batches of 4."""
    return _run(tmp_path_factory.mktemp("one"), text, "none", 8, 8, 2)


def test_ddp_two_processes_equal_one_with_accumulation(tmp_path, text, one):
    ddp = _run(tmp_path / "ddp", text, "ddp", 8, 4, 1, nproc=2)
    _assert_close(one, ddp)
    # and different from a run that saw only half the batch (the test can fail)
    half = _run(tmp_path / "half", text, "none", 8, 4, 1)
    assert any(not torch.allclose(one[k], half[k], atol=1e-5) for k in one)
    # rank 0 alone wrote metrics and the summary
    rows = [json.loads(x) for x in (tmp_path / "ddp" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [4, 8]
    assert rows[-1]["tokens"] == 8 * 8 * 16  # global tokens: 2 ranks x 4 sequences x 16
    summary = json.loads((tmp_path / "ddp" / "train_summary.json").read_text())
    assert summary["distributed"] == "ddp" and summary["world_size"] == 2


def test_ddp_resume(tmp_path, text, one):
    """Stop a 2-rank run at step 4 (its checkpoint), start it again to 8: the weights of an unbroken run."""
    _run(tmp_path / "ddp", text, "ddp", 4, 4, 1, nproc=2)
    assert (tmp_path / "ddp" / "checkpoints" / "latest.txt").read_text().strip() == "step_0000004"
    resumed = _run(tmp_path / "ddp", text, "ddp", 8, 4, 1, nproc=2)  # constant lr: same schedule
    _assert_close(one, resumed)
    rows = [json.loads(x) for x in (tmp_path / "ddp" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [4, 8]


def test_fsdp_two_processes_equal_one_with_accumulation(tmp_path, text, one):
    fsdp = _run(tmp_path / "fsdp", text, "fsdp", 8, 4, 1, nproc=2)
    _assert_close(one, fsdp)


@pytest.mark.slow
def test_fsdp_resume(tmp_path, text, one):
    """FSDP checkpoints hold full weights (gathered to rank 0) and every rank loads its shard back."""
    _run(tmp_path / "fsdp2", text, "fsdp", 4, 4, 1, nproc=2)
    resumed = _run(tmp_path / "fsdp2", text, "fsdp", 8, 4, 1, nproc=2)
    _assert_close(one, resumed)


def test_mode_resolution(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert distributed.resolve_mode("auto") == "none"
    assert distributed.resolve_mode("ddp") == "none"  # one process: nothing to parallelise
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert distributed.resolve_mode("auto") == "ddp"
    assert distributed.resolve_mode("fsdp") == "fsdp"
    cmd = distributed.torchrun_command(2, ["pretrain", "r.yaml"])
    assert cmd[1:5] == ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]
    assert cmd[-3:] == ["lmforge", "pretrain", "r.yaml"]
