"""Read documents from txt/jsonl/csv/tsv/parquet files and encode them into token shards.

Reading streams (a line or a paragraph at a time), encoding goes in bounded batches through the
Rust thread pool, and tokens go straight to a ``ShardWriter``, so memory stays flat whatever the
corpus size. With ``workers > 1`` and several files, files are encoded in separate processes into
part shards that are then concatenated in order.
"""

from __future__ import annotations

import gzip
import io
import os
import tempfile
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Iterator

import numpy as np

from ..errors import InputError
from .shards import ShardWriter, read_shard
from .tok import Tok

JSONL_SUFFIXES = (".jsonl", ".jsonl.gz", ".jsonl.zst", ".json", ".ndjson")
RECORD_SUFFIXES = (".csv", ".tsv", ".csv.gz", ".tsv.gz", ".csv.zst", ".tsv.zst")
TEXT_SUFFIXES = (".txt", ".text", ".md", ".txt.gz", ".txt.zst")
BATCH_CHARS = 1 << 20  # encode ~1M characters per batch: big enough for the thread pool, small in RAM
MAX_DOC_CHARS = 1 << 24  # a txt "paragraph" longer than this (a file without blank lines) is cut at a line end


def expand_inputs(paths: list[str | Path]) -> list[Path]:
    """Files as given; directories expand to their txt/jsonl/parquet files (sorted). Missing -> InputError."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file() and _format(f, strict=False))
            if not found:
                raise InputError(f"directory {p} holds no .txt, .jsonl or .parquet files", "pass the files themselves")
            out += found
        elif p.is_file():
            out.append(p)
        else:
            raise InputError(f"input file not found: {p}", "check the path")
    return out


def _format(path: Path, strict: bool = True) -> str | None:
    """jsonl | records (csv/tsv) | parquet | txt. Given explicitly (``strict``), any other name is
    read as plain text (line-aligned corpora such as ``train.en``/``train.de``; binary files are
    refused when read); in a directory only the known suffixes are picked up."""
    name = path.name.lower()
    if name.endswith(JSONL_SUFFIXES):
        return "jsonl"
    if name.endswith(RECORD_SUFFIXES):
        return "records"
    if name.endswith(".parquet"):
        return "parquet"
    if name.endswith(TEXT_SUFFIXES) or strict:
        return "txt"
    return None


def iter_documents(path: str | Path, txt_split: str = "paragraph") -> Iterator[str]:
    """Document texts of one file. txt: by ``txt_split`` (paragraph | line | file); jsonl/parquet: 'text'."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"input file not found: {path}", "check the path")
    fmt = _format(path)
    if fmt in ("jsonl", "records"):
        yield from _iter_records(path)
    elif fmt == "parquet":
        yield from _iter_parquet(path)
    else:
        yield from _iter_txt(path, txt_split)


def iter_corpus(paths: list[Path], txt_split: str = "paragraph") -> Iterator[str]:
    for p in paths:
        yield from iter_documents(p, txt_split)


def _open_text(path: Path) -> io.TextIOBase:
    name = path.name.lower()
    if name.endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8")
    if name.endswith(".zst"):
        import zstandard

        return io.TextIOWrapper(zstandard.ZstdDecompressor().stream_reader(open(path, "rb")), encoding="utf-8")
    return open(path, encoding="utf-8", newline="")


def _utf8_error(path: Path, line: int) -> InputError:
    return InputError(f"{path}:{line}: not valid UTF-8",
                      "convert it (e.g. iconv -f latin1 -t utf-8) or run it through `lmforge data`, which detects encodings")


def _iter_txt(path: Path, split: str) -> Iterator[str]:
    with open(path, "rb") as f:
        if b"\0" in f.read(4096):
            raise InputError(f"{path}: looks like a binary file, not text", "pass UTF-8 .txt or .jsonl files")
    lineno = 0
    try:
        with _open_text(path) as f:
            if split == "file":
                text = f.read()
                if text.strip():
                    yield text
                return
            para: list[str] = []
            size = 0
            for lineno, line in enumerate(f, 1):
                line = line.replace("\r\n", "\n")
                if split == "line":
                    if line.strip():
                        yield line.rstrip("\n")
                elif line.strip():
                    para.append(line)
                    size += len(line)
                    if size >= MAX_DOC_CHARS:  # keep memory bounded on files without blank lines
                        yield "".join(para).rstrip("\n")
                        para, size = [], 0
                elif para:
                    yield "".join(para).rstrip("\n")
                    para, size = [], 0
            if para:
                yield "".join(para).rstrip("\n")
    except UnicodeDecodeError:
        raise _utf8_error(path, lineno + 1) from None


def _iter_records(path: Path) -> Iterator[str]:
    """The 'text' field of every record of a jsonl/json/csv/tsv file, through the one record reader
    the tasks use (``data.readers.read_records``: streaming, encoding detection, file:line errors)."""
    from ..data.readers import read_records

    for lineno, rec in read_records(str(path)):
        text = rec.get("text")
        if not isinstance(text, str):
            raise InputError(f"{path}:{lineno}: no string 'text' field",
                             "each record needs a 'text' field, e.g. a Document {\"id\": ..., \"text\": ..., "
                             "\"meta\": {...}}, or a csv/tsv header with a 'text' column")
        if text:
            yield text


def _iter_parquet(path: Path) -> Iterator[str]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise InputError(f"{path}: reading parquet needs pyarrow", "pip install pyarrow, or use jsonl") from None
    try:
        pf = pq.ParquetFile(path)
    except Exception as err:
        raise InputError(f"{path}: not a readable parquet file ({err})", "check the file") from None
    if "text" not in pf.schema_arrow.names:
        raise InputError(f"{path}: parquet file has no 'text' column", "documents need a 'text' column")
    for batch in pf.iter_batches(columns=["text"], batch_size=1024):
        yield from (t for t in batch.column(0).to_pylist() if t)


def _batches(docs: Iterator[str]) -> Iterator[list[str]]:
    batch: list[str] = []
    size = 0
    for text in docs:
        batch.append(text)
        size += len(text)
        if size >= BATCH_CHARS or len(batch) >= 8192:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


def _encode_into(writer: ShardWriter, files: list[Path], tok: Tok, append_eos: bool, txt_split: str,
                 on_bytes=None) -> dict:
    """Encode ``files`` into ``writer``; returns counts. The one loop both modes share."""
    eos = [tok.eos_id] if append_eos and tok.eos_id is not None else []
    docs = tokens = nbytes = 0
    for path in files:
        for batch in _batches(iter_documents(path, txt_split)):
            ids = tok.encode_batch(batch)
            writer.add_many([x + eos for x in ids] if eos else ids)
            docs += len(batch)
            tokens += sum(map(len, ids))
            b = sum(len(t.encode("utf-8")) for t in batch)
            nbytes += b
            if on_bytes:
                on_bytes(b)
    return {"docs": docs, "content_tokens": tokens, "bytes": nbytes}


def _encode_part(args: tuple) -> dict:
    """Worker process: one file into one part shard."""
    tok_json, meta, path, part, append_eos, txt_split = args
    from tokenizers import Tokenizer

    tok = Tok(Tokenizer.from_str(tok_json), meta)
    with ShardWriter(part, vocab_size=tok.vocab_size) as w:
        return _encode_into(w, [Path(path)], tok, append_eos, txt_split)


def encode_corpus(files: list[Path], tok: Tok, out_path: Path, append_eos: bool = True,
                  workers: int | None = None, txt_split: str = "paragraph", progress: bool = True) -> dict:
    """Encode documents of ``files`` into one shard at ``out_path``; EOS ends each document when
    the family has one (gpt, seq2seq; BERT shards rely on the document index alone).

    Returns ``{docs, tokens, bytes, bytes_per_token, eos_tokens}``; ``tokens`` includes the appended
    EOS tokens, ``bytes_per_token`` counts text tokens only, so it compares across families.
    ``workers > 1`` spawns processes, so a calling script needs the usual ``if __name__ == "__main__":``.
    """
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

    files = expand_inputs(files)
    for f in files:
        _format(f)  # fail on an unsupported file before encoding anything
    total = sum(f.stat().st_size for f in files)
    columns = [TextColumn("encode {task.fields[name]}"), BarColumn(), DownloadColumn(), TimeRemainingColumn()]
    with Progress(*columns, transient=True, disable=not progress, console=Console(stderr=True)) as bar:
        task = bar.add_task("encode", total=total, name=Path(out_path).name)
        with ShardWriter(out_path, vocab_size=tok.vocab_size) as writer:
            if workers and workers > 1 and len(files) > 1:
                counts = _encode_parallel(writer, files, tok, append_eos, txt_split, workers,
                                          lambda f: bar.advance(task, f.stat().st_size))
            else:
                counts = _encode_into(writer, files, tok, append_eos, txt_split, lambda b: bar.advance(task, b))
            n_tokens = writer.n_tokens
    content = counts["content_tokens"]
    return {"docs": counts["docs"], "tokens": n_tokens, "bytes": counts["bytes"],
            "bytes_per_token": round(counts["bytes"] / content, 4) if content else 0.0,
            "eos_tokens": n_tokens - content}


def _encode_parallel(writer: ShardWriter, files: list[Path], tok: Tok, append_eos: bool, txt_split: str,
                     workers: int, on_file) -> dict:
    """Files in worker processes (spawned: the tokenizer's thread pool does not survive fork)."""
    with tempfile.TemporaryDirectory(dir=writer.path.parent, prefix=f".{writer.path.name}.parts.") as tmp:
        tok_json = tok.hf.to_str()
        jobs = [(tok_json, tok.meta, str(f), os.path.join(tmp, f"{i:06d}.bin"), append_eos, txt_split)
                for i, f in enumerate(files)]
        totals = {"docs": 0, "content_tokens": 0, "bytes": 0}
        with ProcessPoolExecutor(max_workers=min(workers, len(files)), mp_context=get_context("spawn")) as pool:
            for job, counts in zip(jobs, pool.map(_encode_part, jobs)):
                part = read_shard(job[3])
                for start in range(0, part.n_docs, 65536):  # copy in bounded slices
                    offs = part.doc_offsets[start:start + 65537]
                    writer.add_flat(np.asarray(part.tokens[offs[0]:offs[-1]]), offs - offs[0])
                del part
                os.unlink(job[3])
                for k in totals:
                    totals[k] += counts[k]
                on_file(Path(job[2]))
        return totals
