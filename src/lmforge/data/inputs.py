"""Inputs: turning INPUT arguments (files, directories, globs) into files to read, their formats,
and byte-range shards of large line-oriented files, so one huge file still uses every core."""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from ..errors import InputError
from .config import ReadConfig
from .document import ReadError
from .io import DecodeError, strip_compression

EXTENSIONS = {
    ".txt": "txt", ".text": "txt", ".md": "txt", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl",
    ".csv": "csv", ".tsv": "tsv", ".parquet": "parquet", ".html": "html", ".htm": "html",
    ".warc": "warc", ".arc": "warc", ".conll": "conll", ".conllu": "conll", ".bio": "conll", ".iob": "conll",
}

@dataclass(frozen=True)
class InputFile:
    path: str  # as given or found
    rel: str  # relative to the INPUT argument it came from: the id of a whole-file document
    start: int = 0  # a byte range of a large line-oriented file (see ranges()); end None = to EOF
    end: int | None = None
    encoding: str | None = None  # detected once for the whole file when it is split into ranges


def ranges(f: InputFile, cfg: ReadConfig, chunk: int) -> list[InputFile]:
    """Split a large uncompressed JSONL file (or a .txt read line by line) into byte ranges of about
    ``chunk`` bytes, so one huge file still spreads over all workers. Each range owns the lines
    that start inside it; anything else stays one piece."""
    from .io import SAMPLE_BYTES, compression, detect_encoding

    fmt = detect_format(f.path, cfg)
    if compression(f.path) or not (fmt == "jsonl" or (fmt == "txt" and cfg.unit == "line")):
        return [f]
    size = os.path.getsize(f.path)
    if size <= chunk * 1.5:
        return [f]
    with open(f.path, "rb") as raw:
        sample = raw.read(SAMPLE_BYTES)
    try:
        enc = detect_encoding(sample, complete=False)
    except DecodeError:
        return [f]
    if enc.startswith("utf-16") or (fmt == "jsonl" and sample.lstrip()[:1] == b"["):
        return [f]  # newline bytes are not line ends in UTF-16; a JSON array is one value
    cuts = list(range(0, size, chunk))
    return [InputFile(f.path, f.rel, a, b, enc) for a, b in zip(cuts, cuts[1:] + [size])]


def _range_lines(f: InputFile) -> Iterator[tuple[int, bytes]]:
    """(line number, raw line) for the lines that start inside ``f``'s byte range."""
    with open(f.path, "rb") as raw:
        lineno = 0
        if f.start:
            pos = 0
            while pos < f.start - 1:  # count the lines before the range, in C-speed blocks
                block = raw.read(min(1 << 20, f.start - 1 - pos))
                lineno += block.count(b"\n")
                pos += len(block)
            raw.seek(f.start - 1)
            if raw.readline().endswith(b"\n"):  # finish the line that began before the range
                lineno += 1
        pos = raw.tell()
        while f.end is None or pos < f.end:
            line = raw.readline()
            if not line:
                break
            lineno += 1
            pos += len(line)
            yield lineno, line


def _decode_line(f: InputFile, lineno: int, line: bytes) -> str | ReadError:
    enc = "utf-8-sig" if lineno == 1 and f.encoding == "utf-8" else f.encoding
    try:
        return line.decode(enc or "utf-8").rstrip("\r\n")
    except UnicodeDecodeError as e:
        return ReadError(f.path, lineno, f"undecodable bytes: {e.reason}")


def expand_inputs(inputs: list[str]) -> list[InputFile]:
    """Files under ``inputs`` (files, directories walked in sorted order, globs), hidden files skipped."""
    out: list[InputFile] = []
    for item in inputs:
        if any(c in item for c in "*?["):
            matches = sorted(glob.glob(item, recursive=True))
            if not matches:
                raise InputError(f"no files match {item}", "check the glob pattern")
            base = _glob_base(item)
            for m in matches:
                if os.path.isfile(m):
                    out.append(InputFile(m, os.path.relpath(m, base)))
            continue
        p = Path(item)
        if p.is_dir():
            for f in sorted(p.rglob("*")):
                rel = f.relative_to(p)
                if f.is_file() and not any(part.startswith(".") for part in rel.parts):
                    out.append(InputFile(str(f), rel.as_posix()))
        elif p.is_file():
            out.append(InputFile(str(p), p.name))
        else:
            raise InputError(f"input not found: {item}", "pass files, directories or glob patterns")
    return out


def _glob_base(pattern: str) -> str:
    parts = Path(pattern).parts
    base = []
    for part in parts:
        if any(c in part for c in "*?["):
            break
        base.append(part)
    return str(Path(*base)) if base else "."


def detect_format(path: str, cfg: ReadConfig) -> str:
    if cfg.format != "auto":
        return cfg.format
    name = strip_compression(Path(path).name.lower())
    if name.endswith(".warc") or ".warc" in Path(path).name.lower():
        return "warc"
    return EXTENSIONS.get(Path(name).suffix, "txt")
