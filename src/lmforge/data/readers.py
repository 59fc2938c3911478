"""Readers: every supported input format as a stream of Documents and ReadErrors.

Which files to read, and in which byte ranges, is decided in ``inputs.py``; this file parses formats.

A reader never raises on bad input: a malformed line, undecodable bytes or broken CSV quoting
becomes a ReadError (path, line, error) and reading goes on with the next line or file.
"""

from __future__ import annotations

import csv
import json
import sys
from typing import Any, Iterator

from ..text.scripts import is_cjk_char
from .config import ReadConfig
from .document import Document, ReadError
from .inputs import EXTENSIONS, InputFile, _decode_line, _range_lines, detect_format, expand_inputs, ranges  # noqa: F401
from .io import DecodeError, open_binary, open_text, strip_compression

Item = Document | ReadError

TEXT_COLUMNS = ("text", "sentence", "review", "content", "body", "article", "document")
csv.field_size_limit(min(sys.maxsize, 2**31 - 1))


def read_file(f: InputFile, cfg: ReadConfig) -> Iterator[Item]:
    """All records of one input file, in order."""
    fmt = detect_format(f.path, cfg)
    reader = READERS[fmt]
    try:
        yield from reader(f, cfg)
    except DecodeError as e:
        yield ReadError(f.path, None, str(e))
    except (OSError, EOFError, ValueError) as e:  # corrupt archives, truncated gzip, bad parquet
        yield ReadError(f.path, None, f"{type(e).__name__}: {e}")


def _too_long(f: InputFile, line: int | None, text: str, cfg: ReadConfig) -> ReadError | None:
    if len(text) > cfg.max_chars:
        return ReadError(f.path, line, f"record of {len(text):,} chars exceeds read.max_chars={cfg.max_chars:,}")
    return None


def _doc(f: InputFile, id_: str, text: str, line: int | None, cfg: ReadConfig, **meta: Any) -> Item:
    err = _too_long(f, line, text, cfg)
    if err:
        return err
    meta = {"source": f.rel, **meta}
    if line is not None:
        meta["line"] = line
    return Document(id_, text, meta)


def read_txt(f: InputFile, cfg: ReadConfig) -> Iterator[Item]:
    if f.end is not None:  # a byte range of a large file, read line by line
        for lineno, raw in _range_lines(f):
            line = _decode_line(f, lineno, raw)
            if isinstance(line, ReadError) or line.strip():
                yield line if isinstance(line, ReadError) else _doc(f, f"{f.rel}:{lineno}", line, lineno, cfg)
        return
    stream, _ = open_text(f.path)
    lineno = 0
    try:
        with stream:
            if cfg.unit == "file":
                text = stream.read(cfg.max_chars + 1)
                yield _doc(f, f.rel, text, None, cfg)
                return
            buf: list[str] = []
            start = 0
            for lineno, line in enumerate(stream, 1):
                line = line.rstrip("\n")
                if cfg.unit == "line":
                    if line.strip():
                        yield _doc(f, f"{f.rel}:{lineno}", line, lineno, cfg)
                    continue
                if line.strip():
                    if not buf:
                        start = lineno
                    buf.append(line)
                elif buf:
                    yield _doc(f, f"{f.rel}:{start}", "\n".join(buf), start, cfg)
                    buf = []
            if buf:
                yield _doc(f, f"{f.rel}:{start}", "\n".join(buf), start, cfg)
    except UnicodeDecodeError as e:
        yield ReadError(f.path, lineno + 1, f"undecodable bytes: {e.reason}; rest of file skipped")


def _record_fields(rec: dict, cfg: ReadConfig) -> tuple[Any, Any, dict]:
    text = rec.get(cfg.text_field)
    rid = rec.get(cfg.id_field)
    meta = rec.get("meta") if isinstance(rec.get("meta"), dict) else {}
    extra = {k: v for k, v in rec.items() if k not in (cfg.text_field, cfg.id_field, "meta")}
    return text, rid, {**extra, **meta}


def read_jsonl(f: InputFile, cfg: ReadConfig) -> Iterator[Item]:
    if f.end is not None:  # a byte range of a large file
        for lineno, raw in _range_lines(f):
            line = _decode_line(f, lineno, raw)
            if isinstance(line, ReadError):
                yield line
            elif line.strip():
                yield _json_line(f, line, lineno, cfg)
        return
    stream, _ = open_text(f.path)
    lineno = 0
    try:
        with stream:
            first = stream.read(1)
            while first and first.isspace():
                first = stream.read(1)
            if first == "[":  # a JSON array file
                try:
                    records = json.loads("[" + stream.read())
                except json.JSONDecodeError as e:
                    yield ReadError(f.path, e.lineno, f"invalid JSON array: {e.msg}")
                    return
                for i, rec in enumerate(records, 1):
                    yield _json_record(f, rec, i, cfg)
                return
            for lineno, line in enumerate(stream, 1):
                if lineno == 1:
                    line = first + line
                if line.strip():
                    yield _json_line(f, line, lineno, cfg)
    except UnicodeDecodeError as e:
        yield ReadError(f.path, lineno + 1, f"undecodable bytes: {e.reason}; rest of file skipped")


def _json_line(f: InputFile, line: str, lineno: int, cfg: ReadConfig) -> Item:
    line = line.rstrip("\r\n")
    if len(line) > cfg.max_chars * 2:
        return ReadError(f.path, lineno, f"line of {len(line):,} chars exceeds read.max_chars")
    try:
        rec = json.loads(line)
    except json.JSONDecodeError as e:
        return ReadError(f.path, lineno, f"malformed JSON: {e.msg} at column {e.colno}")
    return _json_record(f, rec, lineno, cfg)


def _json_record(f: InputFile, rec: Any, lineno: int, cfg: ReadConfig) -> Item:
    if not isinstance(rec, dict):
        return ReadError(f.path, lineno, f"expected a JSON object, got {type(rec).__name__}")
    text, rid, meta = _record_fields(rec, cfg)
    if not isinstance(text, str):
        return ReadError(f.path, lineno, f"no string field '{cfg.text_field}' (set read.text_field)")
    return _doc(f, str(rid) if rid is not None else f"{f.rel}:{lineno}", text, lineno, cfg, **meta)


def read_csv(f: InputFile, cfg: ReadConfig, delimiter: str = ",") -> Iterator[Item]:
    stream, _ = open_text(f.path)
    quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
    with stream:
        reader = csv.reader(stream, delimiter=delimiter, quoting=quoting, strict=True)
        try:
            header = next(reader)
        except StopIteration:
            yield ReadError(f.path, None, "empty file")
            return
        except (csv.Error, UnicodeDecodeError) as e:
            yield ReadError(f.path, 1, f"bad CSV header: {e}")
            return
        header = [h.strip().lstrip("\ufeff") for h in header]
        col = _text_column(header, cfg)
        if col is None:
            yield ReadError(f.path, 1, f"no text column among {header} (set read.text_field)")
            return
        idc = header.index(cfg.id_field) if cfg.id_field in header else None
        while True:
            lineno = reader.line_num + 1
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as e:
                yield ReadError(f.path, lineno, f"broken CSV quoting: {e}; rest of file skipped")
                return
            except UnicodeDecodeError as e:
                yield ReadError(f.path, lineno, f"undecodable bytes: {e.reason}; rest of file skipped")
                return
            if not row or all(not c.strip() for c in row):
                continue
            if len(row) != len(header):
                yield ReadError(f.path, lineno, f"expected {len(header)} fields, got {len(row)}")
                continue
            meta = {h: v for i, (h, v) in enumerate(zip(header, row)) if i not in (col, idc)}
            rid = row[idc] if idc is not None else f"{f.rel}:{lineno}"
            yield _doc(f, rid, row[col], lineno, cfg, **meta)


def _text_column(header: list[str], cfg: ReadConfig) -> int | None:
    low = [h.lower() for h in header]
    for name in (cfg.text_field, *TEXT_COLUMNS):
        if name.lower() in low:
            return low.index(name.lower())
    return None


def read_tsv(f: InputFile, cfg: ReadConfig) -> Iterator[Item]:
    return read_csv(f, cfg, delimiter="\t")


def read_parquet(f: InputFile, cfg: ReadConfig) -> Iterator[Item]:
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(f.path)
    if cfg.text_field not in pf.schema_arrow.names:
        yield ReadError(f.path, None, f"no column '{cfg.text_field}' in {pf.schema_arrow.names}")
        return
    row = 0
    for batch in pf.iter_batches(batch_size=1024):
        for rec in batch.to_pylist():
            row += 1
            yield _json_record(f, rec, row, cfg)


def extract_html(html: str, min_chars: int = 20) -> str:
    """Main text of a page: navigation, scripts, cookie banners and footers removed (trafilatura)."""
    import trafilatura
    from trafilatura.settings import use_config

    conf = use_config()
    conf.set("DEFAULT", "MIN_EXTRACTED_SIZE", str(min_chars))
    conf.set("DEFAULT", "MIN_OUTPUT_SIZE", str(min_chars))
    conf.set("DEFAULT", "EXTRACTION_TIMEOUT", "0")
    text = trafilatura.extract(html, config=conf, include_comments=False, include_tables=True,
                               favor_precision=True, deduplicate=False)
    return text or ""


def read_html(f: InputFile, cfg: ReadConfig) -> Iterator[Item]:
    stream, _ = open_text(f.path)
    with stream:
        try:
            html = stream.read()
        except UnicodeDecodeError as e:
            yield ReadError(f.path, None, f"undecodable bytes: {e.reason}")
            return
    text = extract_html(html, cfg.html_min_chars)
    yield _doc(f, f.rel, text, None, cfg, format="html")


def read_warc(f: InputFile, cfg: ReadConfig) -> Iterator[Item]:
    from warcio.archiveiterator import ArchiveIterator
    from warcio.exceptions import ArchiveLoadFailed

    n = 0
    with open(f.path, "rb") as raw:
        try:
            for rec in ArchiveIterator(raw):
                if rec.rec_type != "response":
                    continue
                n += 1
                url = rec.rec_headers.get_header("WARC-Target-URI") or f"{f.rel}:{n}"
                ctype = (rec.http_headers.get_header("Content-Type") if rec.http_headers else "") or ""
                body = rec.content_stream().read()
                if "html" not in ctype and not ctype.startswith("text/"):
                    yield Document(url, "", {"source": f.rel, "url": url, "_drop": f"content_type:{ctype or 'none'}"})
                    continue
                try:
                    from .io import detect_encoding

                    text = body.decode(detect_encoding(body, complete=True)) if body else ""
                except (DecodeError, UnicodeDecodeError, LookupError) as e:
                    yield ReadError(f.path, n, f"{url}: {e}")
                    continue
                if "html" in ctype:
                    text = extract_html(text, cfg.html_min_chars)
                yield _doc(f, url, text, None, cfg, url=url, format="warc")
        except ArchiveLoadFailed as e:
            yield ReadError(f.path, n + 1, f"not a WARC file or corrupt record: {e}")




def read_conll(f: InputFile, cfg: ReadConfig) -> Iterator[Item]:
    """Column files: first column tokens, last column tags; blank lines separate sentences."""
    stream, _ = open_text(f.path)
    tokens: list[str] = []
    tags: list[str] = []
    start = 0
    lineno = 0

    def flush() -> Item:
        sep = "" if all(is_cjk_char(t) for t in tokens) else " "
        return _doc(f, f"{f.rel}:{start}", sep.join(tokens), start, cfg, tokens=list(tokens), tags=list(tags))

    try:
        with stream:
            for lineno, line in enumerate(stream, 1):
                cols = line.split()
                if not cols or cols[0] == "-DOCSTART-":
                    if tokens:
                        yield flush()
                        tokens, tags = [], []
                    continue
                if not tokens:
                    start = lineno
                tokens.append(cols[0])
                tags.append(cols[-1] if len(cols) > 1 else "")
            if tokens:
                yield flush()
    except UnicodeDecodeError as e:
        yield ReadError(f.path, lineno + 1, f"undecodable bytes: {e.reason}; rest of file skipped")


READERS = {"txt": read_txt, "jsonl": read_jsonl, "csv": read_csv, "tsv": read_tsv, "parquet": read_parquet,
           "html": read_html, "warc": read_warc, "conll": read_conll}


def read_inputs(inputs: list[str], cfg: ReadConfig) -> Iterator[Item]:
    for f in expand_inputs(inputs):
        yield from read_file(f, cfg)


# ---------------------------------------------------------------------------------------------
# Structured records for the task layer (labelled examples): the same decoding and compression
# handling as documents, but a malformed line is the user's to fix, so it raises with file:line.


def read_records(path: str, header: bool | None = None, columns: list[str] | None = None,
                 delimiter: str | None = None) -> Iterator[tuple[int, dict]]:
    """``(line, record)`` for every record of a .jsonl/.json/.csv/.tsv file (optionally .gz/.zst).

    Delimited files: ``header`` True/False, or None to detect a header row (a first row whose cells
    are all non-numeric names while a later row has a number where it has a name). Without a header,
    columns are named ``columns`` if given, else "0", "1", ... so fields can be chosen by position.
    """
    from ..errors import InputError

    name = strip_compression(path.lower())
    fmt = "tsv" if name.endswith(".tsv") else "csv" if name.endswith(".csv") else "jsonl" \
        if name.endswith((".jsonl", ".json", ".ndjson")) else None
    if fmt is None:
        raise InputError(f"{path}: unsupported format", "use .jsonl, .json, .csv or .tsv (optionally .gz/.zst)")
    try:
        stream, _ = open_text(path)
    except FileNotFoundError:
        raise InputError(f"file not found: {path}", "check the path in the recipe or on the command line") from None
    except DecodeError as e:
        if str(e) == "empty file":
            return  # no records; callers say what an empty file means for them
        raise InputError(f"{path}: {e}", "pass a UTF-8 (or other text) file with one example per line") from None
    with stream:
        if fmt == "jsonl":
            yield from _json_records(path, stream)
        else:
            yield from _delimited_records(path, stream, delimiter or ("\t" if fmt == "tsv" else ","), header, columns)


def _json_records(path: str, stream) -> Iterator[tuple[int, dict]]:
    from ..errors import InputError

    head = ""
    while (c := stream.read(1)) and c.isspace():  # peek past leading blank space: a JSON array?
        head += c
    if c == "[":  # a JSON array file (read whole; JSON lines stream line by line below)
        text = head + c + stream.read()
        try:
            records = json.loads(text)
        except json.JSONDecodeError as e:
            raise InputError(f"{path}:{e.lineno}: invalid JSON ({e.msg})", "fix the file's JSON syntax") from None
        pairs = enumerate(records, 1)
    else:
        pairs = _json_lines(path, _physical_lines(head + c + stream.readline(), stream))
    for n, rec in pairs:
        if not isinstance(rec, dict):
            raise InputError(f"{path}:{n}: expected a JSON object, got {type(rec).__name__}",
                             "write one object per line, e.g. {\"text\": ..., \"label\": ...}")
        yield n, rec


def _physical_lines(first: str, stream) -> Iterator[str]:
    """``first`` (may hold several lines) then the stream's lines, split on newlines only (JSON
    strings may hold U+2028 and other characters that ``str.splitlines`` would split on)."""
    yield from first[:-1].split("\n") if first.endswith("\n") else first.split("\n")
    for line in stream:
        yield line[:-1] if line.endswith("\n") else line


def _json_lines(path: str, lines: Iterator[str]) -> Iterator[tuple[int, Any]]:
    from ..errors import InputError

    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            yield n, json.loads(line)
        except json.JSONDecodeError as e:
            raise InputError(f"{path}:{n}: invalid JSON ({e.msg} at column {e.colno})",
                             "fix or remove that line") from None


def _looks_numeric(cell: str) -> bool:
    try:
        float(cell)
        return True
    except ValueError:
        return False


def _delimited_records(path: str, stream, delimiter: str, header: bool | None,
                       columns: list[str] | None) -> Iterator[tuple[int, dict]]:
    from ..errors import InputError

    quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
    reader = csv.reader(stream, delimiter=delimiter, quoting=quoting, strict=True)
    rows: list[tuple[int, list[str]]] = []
    try:
        while True:
            lineno = reader.line_num + 1
            try:
                row = next(reader)
            except StopIteration:
                break
            if row and any(c.strip() for c in row):
                rows.append((lineno, [c.strip() for c in row]))
    except csv.Error as e:
        raise InputError(f"{path}:{lineno}: broken quoting ({e})", "fix the quotes on that line") from None
    if not rows:
        return
    first = [c.lstrip("\ufeff") for c in rows[0][1]]
    if header is None:  # a header has no numeric cell where the data has one
        later = rows[1][1] if len(rows) > 1 else []
        header = not any(_looks_numeric(c) for c in first) and (
            not later or any(_looks_numeric(c) for c in later) or len(set(first)) == len(first) and all(
                c.isidentifier() for c in first))
    if header:
        names, body = first, rows[1:]
    else:
        width = len(first)
        names, body = list(columns or [str(i) for i in range(width)]), rows
    for lineno, row in body:
        if len(row) != len(names):
            raise InputError(f"{path}:{lineno}: expected {len(names)} fields, got {len(row)}",
                             "fix that line (a stray delimiter?) or remove it")
        rec = dict(zip(names, row))
        if not header:
            rec.update({str(i): v for i, v in enumerate(row)})
        yield lineno, rec


__all__ = ["InputFile", "expand_inputs", "read_file", "read_inputs", "read_records", "extract_html", "open_binary",
           "Item"]
