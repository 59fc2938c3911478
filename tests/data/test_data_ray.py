"""The same pipeline on a local Ray instance gives the same output as local processes."""

from __future__ import annotations

import pytest

from lmforge.data.config import DataStageConfig
from lmforge.data.pipeline import process
from data_helpers import read_dir

ray = pytest.importorskip("ray")


def test_ray_executor_matches_local(tmp_path, dataset):
    src = tmp_path / "src"
    src.mkdir()
    for name in ("blake-poems.txt", "austen-persuasion.txt"):
        (src / name).write_bytes(dataset(f"pretrain/gutenberg/{name}").read_bytes())
    (src / "zh.txt").write_bytes(dataset("pretrain/zh_novels/西游记.txt").read_bytes()[:300_000])
    base = {"inputs": [str(src)], "shard_mb": 0.1, "languages": ["en", "zh"]}
    local = process(DataStageConfig.model_validate({**base, "workers": 1}), tmp_path / "local")
    try:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        remote = process(DataStageConfig.model_validate({**base, "executor": "ray"}), tmp_path / "ray")
    finally:
        ray.shutdown()
    assert remote["shards"] == 3 and remote["executor"] == "ray"
    assert read_dir(tmp_path / "ray" / "kept") == read_dir(tmp_path / "local" / "kept")
    assert read_dir(tmp_path / "ray" / "dropped") == read_dir(tmp_path / "local" / "dropped")
    assert remote["records_in"] == local["records_in"] == remote["kept"] + remote["dropped"] + remote["errors"]
