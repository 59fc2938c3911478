"""Token shards: one ``.bin`` file = header + tokens + document index, read with ``numpy.memmap``.

Layout (little-endian)::

    0   8s  magic  b"LMFTOKS\\0"
    8   u32 version (1)
    12  u32 dtype code: 2 = uint16, 4 = uint32 (the item size)
    16  u64 token count N
    24  u64 document count D
    32  u64 vocab size (0 = unknown)
    40  24 bytes reserved (zero)
    64  N tokens of the dtype
        padding to a multiple of 8
        D + 1 uint64 document offsets: document i is tokens[off[i]:off[i+1]]; off[0] = 0, off[D] = N

The offsets come after the tokens so a writer can stream tokens of unknown count and patch the
header at the end; the file is written to a temp name and renamed, so a reader never sees half a shard.
"""

from __future__ import annotations

import contextlib
import os
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError

MAGIC = b"LMFTOKS\0"
VERSION = 1
HEADER = struct.Struct("<8sIIQQQ24x")
HEADER_SIZE = HEADER.size  # 64
_DTYPES = {2: np.dtype("<u2"), 4: np.dtype("<u4")}


def dtype_for_vocab(vocab_size: int) -> np.dtype:
    return _DTYPES[2] if vocab_size <= 65536 else _DTYPES[4]


def _index_start(n_tokens: int, itemsize: int) -> int:
    end = HEADER_SIZE + n_tokens * itemsize
    return (end + 7) // 8 * 8


@dataclass
class Shard:
    """A read shard. ``tokens`` is a memmap (nothing loaded); ``doc_offsets`` has D + 1 entries."""

    path: Path
    tokens: np.ndarray
    doc_offsets: np.ndarray
    dtype: np.dtype
    vocab_size: int

    @property
    def n_docs(self) -> int:
        return len(self.doc_offsets) - 1

    def __len__(self) -> int:
        return len(self.tokens)

    def doc(self, i: int) -> np.ndarray:
        return self.tokens[self.doc_offsets[i]:self.doc_offsets[i + 1]]


class ShardWriter:
    """Stream documents into a shard; ``close()`` writes the index and renames into place.

    Use as a context manager: on an exception the temp file is removed and nothing appears at ``path``.
    """

    def __init__(self, path: str | Path, vocab_size: int | None = None, dtype: np.dtype | None = None):
        self.path = Path(path)
        self.vocab_size = int(vocab_size or 0)
        self.dtype = np.dtype(dtype) if dtype is not None else dtype_for_vocab(self.vocab_size or 65536)
        if self.dtype.itemsize not in _DTYPES:
            raise ValueError(f"unsupported shard dtype {self.dtype}")
        self.dtype = _DTYPES[self.dtype.itemsize]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, self._tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp")
        self._f = os.fdopen(fd, "wb")
        self._f.write(b"\0" * HEADER_SIZE)
        self.n_tokens = 0
        self._offsets: list[int] = [0]
        self._max = np.iinfo(self.dtype).max

    def add(self, tokens: np.ndarray | list[int]) -> None:
        """Append one document."""
        self.add_many([tokens])

    def add_many(self, docs: list) -> None:
        """Append several documents in one write."""
        if not docs:
            return
        lengths = [len(d) for d in docs]
        flat = np.concatenate([np.asarray(d, dtype=np.int64).ravel() for d in docs]) if sum(lengths) else np.empty(0, np.int64)
        if flat.size and (flat.min() < 0 or flat.max() > self._max):
            raise ValueError(f"token id out of range for {self.dtype} in shard {self.path}")
        self._f.write(flat.astype(self.dtype).tobytes())
        for n in lengths:
            self.n_tokens += n
            self._offsets.append(self.n_tokens)

    def add_flat(self, tokens: np.ndarray, offsets: np.ndarray) -> None:
        """Append documents given as one token array plus D + 1 offsets (e.g. copied from another shard)."""
        tokens = np.asarray(tokens)
        if tokens.size and int(tokens.max()) > self._max:
            raise ValueError(f"token id out of range for {self.dtype} in shard {self.path}")
        self._f.write(tokens.astype(self.dtype, copy=False).tobytes())
        base = self.n_tokens
        self._offsets.extend(int(o) + base for o in offsets[1:])
        self.n_tokens += len(tokens)

    def close(self) -> Path:
        pad = _index_start(self.n_tokens, self.dtype.itemsize) - HEADER_SIZE - self.n_tokens * self.dtype.itemsize
        self._f.write(b"\0" * pad)
        self._f.write(np.asarray(self._offsets, dtype="<u8").tobytes())
        self._f.seek(0)
        self._f.write(HEADER.pack(MAGIC, VERSION, self.dtype.itemsize, self.n_tokens,
                                  len(self._offsets) - 1, self.vocab_size))
        self._f.flush()
        os.fsync(self._f.fileno())
        self._f.close()
        os.replace(self._tmp, self.path)
        return self.path

    def abort(self) -> None:
        with contextlib.suppress(Exception):
            self._f.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._tmp)

    def __enter__(self) -> "ShardWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def write_shard(path: str | Path, tokens: np.ndarray, doc_offsets: np.ndarray | None = None,
                vocab_size: int | None = None) -> Path:
    """Write ``tokens`` with D + 1 ``doc_offsets`` (default: one document) atomically.

    The dtype is uint16 when every id fits (``vocab_size`` <= 65536, or the largest id if no vocab
    size is given), else uint32.
    """
    tokens = np.asarray(tokens).ravel()
    if tokens.size and tokens.min() < 0:
        raise ValueError("negative token id")
    offsets = np.asarray([0, tokens.size] if doc_offsets is None else doc_offsets, dtype=np.int64).ravel()
    if offsets.size < 1 or offsets[0] != 0 or offsets[-1] != tokens.size or np.any(np.diff(offsets) < 0):
        raise ValueError("doc_offsets must rise from 0 to len(tokens) (D + 1 entries for D documents)")
    top = vocab_size if vocab_size else (int(tokens.max()) + 1 if tokens.size else 1)
    with ShardWriter(path, vocab_size=vocab_size, dtype=dtype_for_vocab(top)) as w:
        w.add_flat(tokens, offsets)
    return Path(path)


def read_shard(path: str | Path) -> Shard:
    """Open a shard: tokens as a read-only memmap; every header field checked against the file size."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"token shard not found: {path}", "encode one with `lmforge tokenizer encode`")
    size = path.stat().st_size
    if size < HEADER_SIZE:
        raise InputError(f"{path}: not a token shard (only {size} bytes, the header alone is {HEADER_SIZE})",
                         "the file is truncated or not written by lmforge; re-encode it")
    with open(path, "rb") as f:
        magic, version, code, n_tokens, n_docs, vocab = HEADER.unpack(f.read(HEADER_SIZE))
        if magic != MAGIC:
            raise InputError(f"{path}: not a token shard (bad magic {magic!r})",
                             "pass a .bin written by `lmforge tokenizer encode`")
        if version != VERSION:
            raise InputError(f"{path}: token shard version {version} is not supported (expected {VERSION})",
                             "re-encode it with this version of lmforge")
        if code not in _DTYPES:
            raise InputError(f"{path}: unknown token dtype code {code}", "the header is corrupt; re-encode the shard")
        dtype = _DTYPES[code]
        idx = _index_start(n_tokens, dtype.itemsize)
        expected = idx + (n_docs + 1) * 8
        if size != expected:
            raise InputError(f"{path}: corrupt token shard: header says {n_tokens} tokens and {n_docs} documents "
                             f"({expected} bytes) but the file has {size} bytes",
                             "the file is truncated or was overwritten; re-encode it")
        f.seek(idx)
        offsets = np.frombuffer(f.read((n_docs + 1) * 8), dtype="<u8").astype(np.int64)
    if offsets[0] != 0 or offsets[-1] != n_tokens or np.any(np.diff(offsets) < 0):
        raise InputError(f"{path}: corrupt token shard: document index is not increasing from 0 to {n_tokens}",
                         "re-encode the shard")
    if n_tokens:
        tokens = np.memmap(path, dtype=dtype, mode="r", offset=HEADER_SIZE, shape=(n_tokens,))
    else:
        tokens = np.empty(0, dtype=dtype)
    return Shard(path=path, tokens=tokens, doc_offsets=offsets, dtype=dtype, vocab_size=int(vocab))
