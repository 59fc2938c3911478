import json
import os

import pytest

from lmforge.runs import RunDir, StageResult, atomic_dir, atomic_write_json, fingerprint, hash_inputs


def test_atomic_write_leaves_no_temp(tmp_path):
    atomic_write_json(tmp_path / "a.json", {"x": 1})
    assert json.loads((tmp_path / "a.json").read_text()) == {"x": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_atomic_dir_keeps_old_on_failure(tmp_path):
    target = tmp_path / "out"
    with atomic_dir(target) as d:
        (d / "f").write_text("v1")
    with pytest.raises(RuntimeError):
        with atomic_dir(target) as d:
            (d / "f").write_text("v2")
            raise RuntimeError("killed")
    assert (target / "f").read_text() == "v1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_atomic_dir_replaces_on_success(tmp_path):
    target = tmp_path / "out"
    for v in ("v1", "v2"):
        with atomic_dir(target) as d:
            (d / "f").write_text(v)
    assert (target / "f").read_text() == "v2"


def test_hash_inputs_walks_dirs(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.txt").write_text("a")
    h1 = hash_inputs([tmp_path / "d"])
    (tmp_path / "d" / "a.txt").write_text("b")
    h2 = hash_inputs([tmp_path / "d"])
    assert h1 != h2 and len(h1) == 1
    assert hash_inputs([tmp_path / "missing"]) == {str(tmp_path / "missing"): "missing"}


def test_fingerprint_is_order_independent():
    assert fingerprint({"a": 1, "b": 2}) == fingerprint({"b": 2, "a": 1})
    assert fingerprint({"a": 1}) != fingerprint({"a": 2})


def test_manifest_records_stage(tmp_path):
    run = RunDir(tmp_path / "r", config={"name": "r"})
    run.begin("data", "fp1", {"x": "h"})
    run.stage_dir("data").mkdir()
    run.finish("data", StageResult(metrics={"kept": 3}), 1.5)
    m = json.loads((tmp_path / "r" / "manifest.json").read_text())
    assert m["config"] == {"name": "r"}
    assert m["stages"]["data"]["status"] == "done"
    assert m["stages"]["data"]["metrics"] == {"kept": 3}
    assert m["packages"]["torch"]
    assert RunDir(tmp_path / "r").is_fresh("data", "fp1")
    assert not RunDir(tmp_path / "r").is_fresh("data", "fp2")
    os.rename(run.stage_dir("data"), tmp_path / "r" / "gone")
    assert not RunDir(tmp_path / "r").is_fresh("data", "fp1")
