"""Token shard format: round trips in both dtypes, memmap reading, and clear errors on bad files."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from lmforge.errors import InputError
from lmforge.tokenizer import ShardWriter, read_shard, write_shard
from lmforge.tokenizer.shards import HEADER_SIZE


def _docs(rng, n_docs: int, high: int) -> list[np.ndarray]:
    return [rng.integers(0, high, size=rng.integers(0, 50)) for _ in range(n_docs)]


@pytest.mark.parametrize("vocab,dtype", [(50_257, np.uint16), (65_536, np.uint16), (100_000, np.uint32)])
def test_round_trip_per_dtype(tmp_path, vocab, dtype):
    rng = np.random.default_rng(0)
    docs = _docs(rng, 40, vocab)
    docs[3][:1] = vocab - 1  # the largest id must survive
    tokens = np.concatenate(docs)
    offsets = np.cumsum([0] + [len(d) for d in docs])
    path = write_shard(tmp_path / "s.bin", tokens, offsets, vocab_size=vocab)

    shard = read_shard(path)
    assert shard.dtype == dtype and shard.tokens.dtype == dtype
    assert isinstance(shard.tokens, np.memmap)
    assert shard.vocab_size == vocab and shard.n_docs == 40 and len(shard) == len(tokens)
    np.testing.assert_array_equal(shard.tokens, tokens)
    np.testing.assert_array_equal(shard.doc_offsets, offsets)
    for i in (0, 3, 39):
        np.testing.assert_array_equal(shard.doc(i), docs[i])
    itemsize = np.dtype(dtype).itemsize
    index_at = (HEADER_SIZE + len(tokens) * itemsize + 7) // 8 * 8
    assert path.stat().st_size == index_at + 41 * 8


def test_dtype_from_largest_id_when_vocab_unknown(tmp_path):
    assert read_shard(write_shard(tmp_path / "a.bin", np.array([1, 65535]))).dtype == np.uint16
    shard = read_shard(write_shard(tmp_path / "b.bin", np.array([1, 65536])))
    assert shard.dtype == np.uint32 and shard.tokens[1] == 65536
    assert shard.n_docs == 1  # no offsets: one document


def test_streaming_writer_matches_write_shard(tmp_path):
    rng = np.random.default_rng(1)
    docs = _docs(rng, 100, 1000)
    with ShardWriter(tmp_path / "stream.bin", vocab_size=1000) as w:
        w.add_many([d.tolist() for d in docs[:60]])
        for d in docs[60:]:
            w.add(d)
    tokens = np.concatenate(docs)
    write_shard(tmp_path / "whole.bin", tokens, np.cumsum([0] + [len(d) for d in docs]), vocab_size=1000)
    assert (tmp_path / "stream.bin").read_bytes() == (tmp_path / "whole.bin").read_bytes()


def test_empty_shard(tmp_path):
    shard = read_shard(write_shard(tmp_path / "e.bin", np.array([], dtype=np.int64), [0]))
    assert len(shard) == 0 and shard.n_docs == 0


def test_failed_write_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError):
        with ShardWriter(tmp_path / "x.bin", vocab_size=10) as w:
            w.add([1, 2, 3])
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_writer_rejects_out_of_range_ids_and_bad_offsets(tmp_path):
    with pytest.raises(ValueError, match="out of range"):
        with ShardWriter(tmp_path / "x.bin", vocab_size=1000) as w:
            w.add([70_000])
    with pytest.raises(ValueError, match="doc_offsets"):
        write_shard(tmp_path / "y.bin", np.arange(10), [0, 5])
    with pytest.raises(ValueError, match="doc_offsets"):
        write_shard(tmp_path / "y.bin", np.arange(10), [0, 6, 5, 10])
    assert not list(tmp_path.glob("*.bin"))


@pytest.fixture
def good(tmp_path):
    return write_shard(tmp_path / "good.bin", np.arange(100), [0, 30, 100], vocab_size=200)


def _corrupt(path, data: bytes, name: str):
    p = path.with_name(name)
    p.write_bytes(data)
    return p


def test_truncated_shard(good):
    bad = _corrupt(good, good.read_bytes()[:-10], "trunc.bin")
    with pytest.raises(InputError, match=r"trunc\.bin.*header says 100 tokens"):
        read_shard(bad)


def test_shorter_than_header(good):
    bad = _corrupt(good, good.read_bytes()[:20], "short.bin")
    with pytest.raises(InputError, match=r"short\.bin.*only 20 bytes"):
        read_shard(bad)


def test_foreign_file(good):
    bad = _corrupt(good, b"\x89PNG\r\n\x1a\n" + bytes(200), "image.bin")
    with pytest.raises(InputError, match=r"image\.bin.*bad magic"):
        read_shard(bad)


def test_unknown_version_and_dtype(good):
    data = bytearray(good.read_bytes())
    data[8:12] = struct.pack("<I", 99)
    with pytest.raises(InputError, match="version 99"):
        read_shard(_corrupt(good, bytes(data), "v99.bin"))
    data = bytearray(good.read_bytes())
    data[12:16] = struct.pack("<I", 3)
    with pytest.raises(InputError, match="dtype code 3"):
        read_shard(_corrupt(good, bytes(data), "dtype.bin"))


def test_scrambled_index(good):
    data = bytearray(good.read_bytes())
    data[-16:-8] = struct.pack("<Q", 500)  # middle offset beyond the token count
    with pytest.raises(InputError, match="document index"):
        read_shard(_corrupt(good, bytes(data), "index.bin"))


def test_missing_shard(tmp_path):
    with pytest.raises(InputError, match="not found"):
        read_shard(tmp_path / "nope.bin")
