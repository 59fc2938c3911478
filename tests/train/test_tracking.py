"""Experiment tracking: TensorBoard and offline W&B see exactly the rows of metrics.jsonl."""

import json
import socket
import sys
import threading

import numpy as np
import pytest
import torch

from lmforge.errors import InputError
from lmforge.models.gpt import GPT, GPTConfig
from lmforge.train import loop, tracking
from lmforge.train.config import TrainConfig
from lmforge.train.loop import Trainer
from lmforge.train.objectives import CausalLM

DATA = np.tile(np.arange(16, dtype=np.uint16), 2000)  # a learnable cycle; no dataset needed


def _trainer(out, **kw) -> Trainer:
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=16, block_size=16, n_layer=1, n_head=2, d_model=16))
    cfg = TrainConfig(**{"max_steps": 20, "batch_size": 4, "lr": 3e-3, "warmup_steps": 0, "eval_every": 5,
                         "eval_batches": 2, "save_every": 10, "log_every": 5, **kw})
    return Trainer(model, CausalLM(DATA[:28_000], DATA[28_000:], 16, 4, seed=1), cfg, out, progress=False)


def _rows(out) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def _events(out):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(out / "tensorboard"), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    return acc


@pytest.mark.parametrize("kw", [{"track": ["tensorboard"]}, {"tensorboard": True}])  # and the older spelling
def test_tensorboard_scalars_equal_metrics_jsonl(tmp_path, kw):
    pytest.importorskip("tensorboard")
    _trainer(tmp_path, **kw).train()
    rows, acc = _rows(tmp_path), _events(tmp_path)
    assert [r["step"] for r in rows] == [5, 10, 15, 20]
    for tag in ("train_loss", "val_loss", "lr", "tokens"):
        events = acc.Scalars(tag)
        assert [e.step for e in events] == [r["step"] for r in rows]
        assert [e.value for e in events] == pytest.approx([r[tag] for r in rows], rel=1e-6)  # float32
    # hyperparameters at the start, final metrics (last row + best) at the end
    assert "config/text_summary" in acc.Tags()["tensors"]
    config = acc.Tensors("config/text_summary")[0].tensor_proto.string_val[0].decode()
    assert '"max_steps": 20' in config and '"n_layer": 1' in config
    assert acc.Scalars("final/val_loss")[0].value == pytest.approx(rows[-1]["val_loss"], rel=1e-6)
    assert acc.Scalars("final/best_step")[0].value == json.loads((tmp_path / "train_summary.json").read_text())[
        "best_step"]


def test_tensorboard_resume_hides_the_redone_steps(tmp_path):
    """Killed after step 20's evaluation but before its checkpoint: steps 11-20 are redone, and
    TensorBoard shows them once, as metrics.jsonl does."""
    pytest.importorskip("tensorboard")
    _trainer(tmp_path, track=["tensorboard"]).train()
    (tmp_path / "checkpoints" / "latest.txt").write_text("step_0000010\n")
    _trainer(tmp_path, track=["tensorboard"]).train()
    rows, acc = _rows(tmp_path), _events(tmp_path)
    assert [r["step"] for r in rows] == [5, 10, 15, 20]
    events = acc.Scalars("val_loss")
    assert [e.step for e in events] == [5, 10, 15, 20]
    assert [e.value for e in events] == pytest.approx([r["val_loss"] for r in rows], rel=1e-6)


class _Recorder:
    """A local listener standing in for every network endpoint: it counts whoever connects."""

    def __init__(self):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.url, self.hits, self.stop = f"http://127.0.0.1:{self.sock.getsockname()[1]}", 0, False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while not self.stop:
            try:
                self.sock.accept()[0].close()
                self.hits += 1
            except OSError:
                pass

    def close(self):
        self.stop = True
        self.thread.join()
        self.sock.close()


def test_wandb_offline_run_is_written_locally_without_network(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    rec = _Recorder()
    for var in ("WANDB_BASE_URL", "HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.setenv(var, rec.url)  # any W&B API call, in Python or in wandb-core, would land here
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    real_connect = socket.socket.connect

    def local_only(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6) and address[0] not in ("127.0.0.1", "localhost", "::1"):
            raise AssertionError(f"network connection attempted: {address}")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", local_only)
    try:
        _trainer(tmp_path, track=["wandb"]).train()
        (tmp_path / "checkpoints" / "latest.txt").write_text("step_0000010\n")
        _trainer(tmp_path, track=["wandb"]).train()  # a resume reuses the id and does not crash
    finally:
        rec.close()
    assert rec.hits == 0
    run_id = (tmp_path / "wandb_id").read_text().strip()
    runs = sorted((tmp_path / "wandb").glob(f"offline-run-*-{run_id}"))
    assert len(runs) == 2, "one offline run directory per attempt, ready for `wandb sync`"
    blob = (runs[0] / f"run-{run_id}.wandb").read_bytes()
    assert blob.startswith(b":W&B")
    for key in (b"val_loss", b"train_loss", b"n_layer", b"max_steps", b"best_step"):  # scalars, config, summary
        assert key in blob


@pytest.mark.parametrize("backend,module", [("tensorboard", "torch.utils.tensorboard"), ("wandb", "wandb")])
def test_missing_package_names_the_extra(tmp_path, monkeypatch, backend, module):
    monkeypatch.setitem(sys.modules, module, None)  # import now raises ImportError
    with pytest.raises(InputError, match=backend) as err:
        _trainer(tmp_path, track=[backend])
    assert "pip install 'lmforge[track]'" in err.value.hint
    assert not (tmp_path / "metrics.jsonl").exists()  # fails before training


def test_unknown_backend_is_a_config_error():
    with pytest.raises(ValueError, match="tensorboard"):
        TrainConfig(track=["mlflow"])


def test_a_failing_tracker_warns_once_and_training_goes_on(tmp_path, monkeypatch):
    calls = []

    class Broken:
        name = "wandb"

        def __init__(self, out_dir):
            pass

        def start(self, hparams, step):
            calls.append("start")

        def log(self, row, step):
            calls.append(step)
            if step == 10:
                raise OSError("disk full")

        def finish(self, final):
            calls.append("finish")

    monkeypatch.setitem(tracking.BACKENDS, "wandb", Broken)
    with pytest.warns(UserWarning, match="wandb tracking failed") as caught:
        res = _trainer(tmp_path, track=["wandb"]).train()
    assert len([w for w in caught if "tracking failed" in str(w.message)]) == 1
    assert res.steps == 20 and [r["step"] for r in _rows(tmp_path)] == [5, 10, 15, 20]
    assert calls == ["start", 5, 10]  # dropped after failing: no more rows, no finish


def test_a_run_stopped_by_a_pruner_still_records_its_final_metrics(tmp_path, monkeypatch):
    finals = []

    class Recording:
        name = "wandb"

        def __init__(self, out_dir):
            pass

        def start(self, hparams, step):
            assert hparams["train"]["max_steps"] == 20 and hparams["model"]["n_layer"] == 1

        def log(self, row, step):
            pass

        def finish(self, final):
            finals.append(final)

    def prune(step, metrics):
        if step == 10:
            raise RuntimeError("pruned")

    monkeypatch.setitem(tracking.BACKENDS, "wandb", Recording)
    monkeypatch.setattr(loop, "EVAL_HOOKS", [prune])
    with pytest.raises(RuntimeError, match="pruned"):
        _trainer(tmp_path, track=["wandb"]).train()
    assert len(finals) == 1 and finals[0]["step"] == 10 and finals[0]["best_step"] == 10
    assert finals[0]["val_loss"] == _rows(tmp_path)[-1]["val_loss"]
