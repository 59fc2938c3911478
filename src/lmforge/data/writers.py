"""Writers: JSONL (.gz/.zst) and Parquet shards, written to a temp name and renamed on close.

Output bytes depend only on the records (gzip mtime is 0), so a resumed run writes files identical
to an uninterrupted one.
"""

from __future__ import annotations

import gzip
import io
import json
import os
from pathlib import Path
from typing import Any, Iterable


def dumps(rec: dict[str, Any]) -> str:
    return json.dumps(rec, ensure_ascii=False, default=str)


class ShardWriter:
    """Write dict records to one shard; ``fmt`` is jsonl, jsonl.gz, jsonl.zst or parquet."""

    def __init__(self, path: str | Path, fmt: str = "jsonl"):
        self.path = Path(path)
        self.fmt = fmt
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = self.path.with_name(f".{self.path.name}.tmp")
        self.count = 0
        self._rows: list[dict] = []
        self._raw = None
        self._f: Any = None
        if fmt == "parquet":
            return
        self._raw = open(self.tmp, "wb")
        if fmt == "jsonl.gz":
            self._f = gzip.GzipFile(filename="", mode="wb", fileobj=self._raw, mtime=0, compresslevel=3)  # level 3: ~2x faster than 6, ~5% larger
        elif fmt == "jsonl.zst":
            import zstandard

            self._f = zstandard.ZstdCompressor(level=3).stream_writer(self._raw, closefd=False)
        else:
            self._f = self._raw
        self._text = io.TextIOWrapper(self._f, encoding="utf-8", newline="\n", write_through=False)

    def write(self, rec: dict[str, Any]) -> None:
        self.count += 1
        if self.fmt == "parquet":
            self._rows.append(rec)
            return
        self._text.write(dumps(rec))
        self._text.write("\n")

    def write_raw(self, line: str) -> None:
        """A record already serialised by ``dumps`` (one JSON line), copied without re-encoding."""
        self.count += 1
        self._text.write(line if line.endswith("\n") else line + "\n")

    def write_all(self, recs: Iterable[dict[str, Any]]) -> None:
        for r in recs:
            self.write(r)

    def close(self) -> None:
        if self.fmt == "parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            rows = [{**r, "meta": json.dumps(r.get("meta", {}), ensure_ascii=False, default=str)}
                    for r in self._rows]
            table = pa.Table.from_pylist(rows) if rows else pa.table({"id": pa.array([], pa.string()),
                                                                      "text": pa.array([], pa.string())})
            pq.write_table(table, self.tmp)
        else:
            self._text.flush()
            self._text.detach()
            if self._f is not self._raw:
                self._f.close()
            self._raw.flush()
            os.fsync(self._raw.fileno())
            self._raw.close()
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        try:
            if self._raw is not None:
                self._raw.close()
        finally:
            if self.tmp.exists():
                self.tmp.unlink()

    def __enter__(self) -> "ShardWriter":
        return self

    def __exit__(self, exc_type, *_):
        if exc_type is None:
            self.close()
        else:
            self.abort()


def write_jsonl(path: str | Path, recs: Iterable[dict[str, Any]], fmt: str | None = None) -> int:
    fmt = fmt or ("jsonl.gz" if str(path).endswith(".gz") else "jsonl.zst" if str(path).endswith(".zst")
                  else "parquet" if str(path).endswith(".parquet") else "jsonl")
    with ShardWriter(path, fmt) as w:
        w.write_all(recs)
        return w.count


def iter_jsonl(path: str | Path):
    """Records of a JSONL(.gz/.zst) or Parquet shard written by ShardWriter (trusted input)."""
    path = Path(path)
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        for rec in pq.read_table(path).to_pylist():
            if isinstance(rec.get("meta"), str):
                rec["meta"] = json.loads(rec["meta"])
            yield rec
        return
    from .io import open_binary

    with open_binary(path) as raw, io.TextIOWrapper(raw, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield json.loads(line)


def shard_suffix(fmt: str) -> str:
    return {"jsonl": ".jsonl", "jsonl.gz": ".jsonl.gz", "jsonl.zst": ".jsonl.zst", "parquet": ".parquet"}[fmt]
