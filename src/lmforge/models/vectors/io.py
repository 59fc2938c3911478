"""word2vec text/binary and GloVe text files: what gensim, word2vec.c and Stanford GloVe read and write.

Readers are strict and say where a file is wrong (file and line, or entry and byte offset for
binary files); nothing here unpickles. Duplicate words keep their first vector, as gensim does.
"""

from __future__ import annotations

import mmap
import re
from pathlib import Path
from typing import Literal

import numpy as np

from ...errors import InputError

Format = Literal["word2vec", "word2vec_binary", "glove"]
_HEADER = re.compile(rb"^\s*(\d+)\s+(\d+)\s*$")
_HINT = "expected word2vec text ('COUNT DIM' header, then 'word v1 .. vDIM' lines), word2vec binary, or GloVe text"


def detect_format(path: str | Path) -> Format:
    """word2vec binary / text (a 'COUNT DIM' first line) or GloVe text (no header), from the first bytes."""
    path = Path(path)
    with open(path, "rb") as f:
        first = f.readline()
        rest = f.read(4096)
    if not first.strip():
        raise InputError(f"{path}:1: empty vector file" if not rest else f"{path}:1: empty first line", _HINT)
    m = _HEADER.match(first)
    if m:
        if path.suffix == ".bin":
            return "word2vec_binary"
        # text if the next line reads as 'word v1 .. vDIM' (even with bad bytes in the word), else binary
        parts = rest.split(b"\n", 1)[0].split()
        if len(parts) >= 2 and all(_is_float(p.decode("ascii", "replace")) for p in parts[1:]):
            return "word2vec"
        return "word2vec_binary" if (b"\0" in rest or not _decodes(rest)) else "word2vec"
    if path.suffix == ".bin" or b"\0" in first:
        raise InputError(f"{path}:1: bad header {first[:60]!r}", "a word2vec binary file starts with 'COUNT DIM'")
    return "glove"


def _decodes(chunk: bytes) -> bool:
    try:
        chunk.decode("utf-8")
    except UnicodeDecodeError as err:
        return err.start >= len(chunk) - 3  # a character cut by the 4 KiB window is fine
    return True


def read_vectors(path: str | Path, fmt: Format | None = None, limit: int | None = None) -> tuple[list[str], np.ndarray]:
    """(words, float32 matrix) from a vector file; ``limit`` keeps the first N vectors."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"vector file not found: {path}", "pass a vectors.txt / .bin file or a `vectors train` directory")
    fmt = fmt or detect_format(path)
    if fmt == "word2vec_binary":
        return _read_binary(path, limit)
    return _read_text(path, fmt == "word2vec", limit)


def _read_text(path: Path, header: bool, limit: int | None) -> tuple[list[str], np.ndarray]:
    words: list[str] = []
    seen: set[str] = set()
    rows: list[np.ndarray] = []
    entries = 0  # vector lines, duplicates included (what a header counts)
    count = dim = None
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise InputError(f"{path}:{lineno}: not valid UTF-8 (byte {err.start + 1} of the line)",
                                 "re-encode the file as UTF-8 (e.g. iconv -f latin1 -t utf-8)") from None
            if header and lineno == 1:
                m = _HEADER.match(raw)
                count, dim = int(m.group(1)), int(m.group(2))
                if dim == 0:
                    raise InputError(f"{path}:1: header says dimension 0", _HINT)
                continue
            parts = line.split()
            if not parts:
                continue
            if dim is None:
                dim = len(parts) - 1
                if dim == 0:
                    raise InputError(f"{path}:{lineno}: a word without numbers", _HINT)
            if len(parts) != dim + 1:
                more = ", or a word with spaces" if len(parts) > dim + 1 else ""
                raise InputError(f"{path}:{lineno}: {len(parts) - 1} values, expected {dim} (inconsistent dimensions{more})",
                                 "every line must be 'word v1 .. vDIM' with the same DIM")
            if count is not None and entries >= count:
                raise InputError(f"{path}:{lineno}: more vectors than the header's count {count}",
                                 "fix the 'COUNT DIM' header")
            entries += 1
            try:
                vec = np.array(parts[1:], dtype=np.float32)
            except ValueError:
                bad = next(p for p in parts[1:] if not _is_float(p))
                raise InputError(f"{path}:{lineno}: '{bad[:30]}' is not a number", _HINT) from None
            if parts[0] in seen:
                continue
            seen.add(parts[0])
            words.append(parts[0])
            rows.append(vec)
            if limit is not None and len(words) >= limit:
                break
    if count is not None and limit is None and entries != count:
        raise InputError(f"{path}: header promises {count} vectors, the file holds {entries}",
                         "fix the 'COUNT DIM' header or the truncated file")
    if not rows:
        raise InputError(f"{path}: no vectors in the file", _HINT)
    return words, np.vstack(rows)


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _read_binary(path: Path, limit: int | None) -> tuple[list[str], np.ndarray]:
    with open(path, "rb") as f:
        first = f.readline()
        m = _HEADER.match(first)
        if not m:
            raise InputError(f"{path}:1: bad header {first[:60]!r}", "a word2vec binary file starts with 'COUNT DIM'")
        count, dim = int(m.group(1)), int(m.group(2))
        if dim == 0:
            raise InputError(f"{path}:1: header says dimension 0", _HINT)
        n = count if limit is None else min(count, limit)
        mat = np.empty((n, dim), dtype=np.float32)
        words: list[str] = []
        seen: set[str] = set()
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            pos, size, nbytes = len(first), len(mm), 4 * dim
            for i in range(n):
                while pos < size and mm[pos] in (0x0A, 0x0D):  # word2vec.c ends each vector with '\n'
                    pos += 1
                sp = mm.find(b" ", pos, pos + 4096)
                if sp < 0 or sp + 1 + nbytes > size:
                    raise InputError(f"{path}: entry {i + 1} of {count} (byte {pos}) is truncated or has no word",
                                     "the header's COUNT or DIM does not match the file, or it is cut off")
                try:
                    word = mm[pos:sp].decode("utf-8")
                except UnicodeDecodeError:
                    raise InputError(f"{path}: entry {i + 1} (byte {pos}): word is not valid UTF-8",
                                     "write the file with UTF-8 words") from None
                mat[len(words)] = np.frombuffer(mm, dtype="<f4", count=dim, offset=sp + 1)
                pos = sp + 1 + nbytes
                if word in seen:
                    continue
                seen.add(word)
                words.append(word)
            if limit is None:
                while pos < size and mm[pos] in (0x0A, 0x0D, 0x20):
                    pos += 1
                if pos != size:
                    raise InputError(f"{path}: {size - pos} bytes after the header's {count} vectors",
                                     "the header's COUNT or DIM does not match the file")
    return words, mat[: len(words)].copy()


def write_vectors(path: str | Path, words: list[str], matrix: np.ndarray, fmt: Format = "word2vec") -> Path:
    """Write vectors in ``fmt`` (word2vec text with header, word2vec binary, or GloVe text)."""
    path = Path(path)
    matrix = np.asarray(matrix, dtype=np.float32)
    if matrix.ndim != 2 or matrix.shape[0] != len(words):
        raise ValueError(f"{len(words)} words but a matrix of shape {matrix.shape}")
    for w in words:
        if not w or any(c.isspace() for c in w):
            raise InputError(f"word {w!r} is empty or holds whitespace; vector files cannot store it",
                             "drop or rename the word")
    dim = matrix.shape[1]
    tmp = path.with_name(path.name + ".tmp")
    if fmt == "word2vec_binary":
        with open(tmp, "wb") as f:
            f.write(f"{len(words)} {dim}\n".encode())
            for w, row in zip(words, matrix):
                f.write(w.encode("utf-8") + b" " + row.astype("<f4").tobytes() + b"\n")
    else:
        line = " ".join(["%.6g"] * dim) + "\n"
        with open(tmp, "w", encoding="utf-8", newline="\n") as f:
            if fmt == "word2vec":
                f.write(f"{len(words)} {dim}\n")
            for w, row in zip(words, matrix.tolist()):
                f.write(w + " " + line % tuple(row))
    tmp.replace(path)
    return path
