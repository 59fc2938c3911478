"""Opening files: transparent .gz/.zst, and text decoding by detection (never mojibake)."""

from __future__ import annotations

import codecs
import gzip
import io
from pathlib import Path
from typing import BinaryIO

SAMPLE_BYTES = 1 << 20
PREFERRED = ("gb18030", "gbk", "gb2312", "big5", "cp1252", "latin_1", "iso8859_15", "cp1251", "shift_jis",
             "euc_kr", "koi8_r")


class DecodeError(Exception):
    """The bytes are binary or in no encoding we can detect."""


def compression(path: str | Path) -> str | None:
    name = str(path).lower()
    if name.endswith(".gz"):
        return "gz"
    if name.endswith(".zst") or name.endswith(".zstd"):
        return "zst"
    return None


def strip_compression(name: str) -> str:
    low = name.lower()
    for ext in (".gz", ".zst", ".zstd"):
        if low.endswith(ext):
            return name[: -len(ext)]
    return name


def open_binary(path: str | Path) -> BinaryIO:
    """A readable binary stream of the decompressed content."""
    kind = compression(path)
    if kind == "gz":
        return gzip.open(path, "rb")  # type: ignore[return-value]
    if kind == "zst":
        import zstandard

        raw = open(path, "rb")
        return zstandard.ZstdDecompressor().stream_reader(raw, closefd=True)  # type: ignore[return-value]
    return open(path, "rb")


def looks_binary(sample: bytes) -> bool:
    """NUL bytes outside a UTF-16/32 BOM file, or many control bytes, mean not text."""
    if not sample:
        return False
    if sample.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE, codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
        return False
    if b"\x00" in sample[:8192]:
        return True
    ctrl = sum(1 for b in sample[:8192] if b < 9 or 13 < b < 32)
    return ctrl / min(len(sample), 8192) > 0.05


def detect_encoding(sample: bytes, complete: bool) -> str:
    """UTF-8 when the sample decodes as UTF-8, otherwise charset-normalizer's best guess.

    ``complete`` says the sample is the whole file, so a cut multi-byte char at its end is an error.
    """
    if sample.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if sample.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    try:
        codecs.getincrementaldecoder("utf-8")().decode(sample, final=complete)
        return "utf-8"
    except UnicodeDecodeError:
        pass
    if looks_binary(sample):
        raise DecodeError("binary file (NUL or control bytes), not text")
    from charset_normalizer import from_bytes

    matches = list(from_bytes(sample))
    if not matches:
        raise DecodeError("undecodable: no text encoding fits these bytes")
    best = matches[0]
    # Mostly-ASCII text often fits several single-byte code pages equally well (cp1250 and cp1252
    # both read English); among near-ties prefer the most widely used encoding, so latin-1 English
    # gets 'è', not the Central European 'č'.
    ties = [m for m in matches if m.chaos <= best.chaos + 0.005 and m.coherence >= best.coherence - 0.1]
    names = {m.encoding for m in ties}
    enc = next((e for e in PREFERRED if e in names), best.encoding)
    # charset-normalizer names GBK-family text 'gb2312' or 'gbk'; gb18030 is the superset that
    # decodes every valid GBK byte sequence, so a rare character later in the file is not an error.
    if enc.lower().replace("-", "").replace("_", "") in {"gb2312", "gbk", "hzgb2312"}:
        enc = "gb18030"
    return enc


def open_text(path: str | Path) -> tuple[io.TextIOBase, str]:
    """Open ``path`` as text with the detected encoding; universal newlines (CRLF -> LF).

    Only the first MiB is held for detection, so files larger than memory still stream.
    """
    stream = open_binary(path)
    try:
        sample = stream.read(SAMPLE_BYTES)
        while len(sample) < SAMPLE_BYTES:  # decompressors may return short reads
            more = stream.read(SAMPLE_BYTES - len(sample))
            if not more:
                break
            sample += more
        rest = stream.read(1)
        if not sample:
            raise DecodeError("empty file")
        if looks_binary(sample):
            raise DecodeError("binary file (NUL or control bytes), not text")
        enc = detect_encoding(sample, complete=not rest)
    except BaseException:
        stream.close()
        raise
    buffered = io.BufferedReader(_Concat(sample + rest, stream))
    return io.TextIOWrapper(buffered, encoding=enc, errors="strict", newline=None), enc


class _Concat(io.RawIOBase):
    """Bytes already read, followed by the rest of a stream."""

    def __init__(self, head: bytes, tail: BinaryIO):
        self.head = memoryview(head)
        self.tail = tail

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:  # type: ignore[override]
        if len(self.head):
            n = min(len(b), len(self.head))
            b[:n] = self.head[:n]
            self.head = self.head[n:]
            return n
        data = self.tail.read(len(b))
        n = len(data)
        b[:n] = data
        return n

    def close(self) -> None:
        self.tail.close()
        super().close()


def read_text(path: str | Path) -> tuple[str, str]:
    """The whole file as text (for whole-file units: html, small txt)."""
    f, enc = open_text(path)
    with f:
        return f.read(), enc
