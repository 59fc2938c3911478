"""Readers on real files: every format, encodings by detection, and bad input as errors."""

from __future__ import annotations

import csv
import gzip
import io
import json

import pytest

from lmforge.data.config import ReadConfig
from lmforge.data.document import Document, ReadError
from lmforge.data.readers import expand_inputs, read_file, read_inputs


def docs_and_errors(paths, **kw):
    items = list(read_inputs([str(p) for p in paths], ReadConfig(**kw)))
    return [i for i in items if isinstance(i, Document)], [i for i in items if isinstance(i, ReadError)]


def test_document_roundtrip():
    d = Document("a", "text", {"k": 1})
    assert Document.from_dict(json.loads(json.dumps(d.to_dict()))) == d


def test_txt_units(dataset):
    path = dataset("pretrain/gutenberg/austen-persuasion.txt")
    files, _ = docs_and_errors([path], unit="file")
    paras, _ = docs_and_errors([path], unit="paragraph")
    lines, _ = docs_and_errors([path], unit="line")
    assert len(files) == 1 and files[0].id == "austen-persuasion.txt"
    assert 500 < len(paras) < len(lines)
    assert all("\n\n" not in p.text for p in paras)
    assert paras[1].id == f"austen-persuasion.txt:{paras[1].meta['line']}"


def test_latin1_file_decoded_without_mojibake(dataset):
    path = dataset("pretrain/gutenberg/chesterton-ball.txt")
    raw = path.read_bytes()
    with pytest.raises(UnicodeDecodeError):
        raw.decode("utf-8")
    (doc,), errors = docs_and_errors([path], unit="file")
    assert not errors
    assert doc.text == raw.decode("latin-1").replace("\r\n", "\n")
    assert "Ã" not in doc.text and "\ufffd" not in doc.text


def test_gbk_chinese_decoded(dataset, tmp_path):
    text = dataset("pretrain/zh_novels/红楼梦.txt").read_text(encoding="utf-8")[:20000]
    p = tmp_path / "hongloumeng_gbk.txt"
    p.write_bytes(text.encode("gbk", errors="ignore"))
    (doc,), errors = docs_and_errors([p], unit="file")
    assert not errors
    assert doc.text == text.encode("gbk", errors="ignore").decode("gbk").replace("\r\n", "\n")


def test_jsonl_compressed_and_ids(tmp_path):
    recs = [{"id": f"r{i}", "text": f"record number {i}", "label": i % 2} for i in range(5)]
    body = "".join(json.dumps(r) + "\n" for r in recs).encode()
    (tmp_path / "a.jsonl").write_bytes(body)
    (tmp_path / "b.jsonl.gz").write_bytes(gzip.compress(body))
    import zstandard

    (tmp_path / "c.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(body))
    (tmp_path / "d.jsonl").write_text('{"text": "no id here"}\n')
    docs, errors = docs_and_errors([tmp_path])
    assert not errors
    assert [d.id for d in docs[:5]] == [f"r{i}" for i in range(5)]
    assert len(docs) == 16 and docs[-1].id == "d.jsonl:1"
    assert docs[1].meta["label"] == 1


def test_csv_multiline_and_tsv(dataset, tmp_path):
    p = tmp_path / "q.csv"
    with open(p, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["label", "review"])
        w.writerow([1, 'A "quoted" review,\nspanning two lines.'])
        w.writerow([0, "plain"])
    docs, errors = docs_and_errors([p])
    assert not errors
    assert docs[0].text == 'A "quoted" review,\nspanning two lines.' and docs[0].meta["label"] == "1"
    sst, errors = docs_and_errors([dataset("classification/sst2/dev.tsv")])
    assert not errors and len(sst) == 872 and set(d.meta["label"] for d in sst) == {"0", "1"}


def test_chinese_csv(dataset):
    docs, errors = docs_and_errors([dataset("classification/chnsenticorp/ChnSentiCorp_htl_all.csv")])
    assert len(docs) + len(errors) >= 7766 - 5 and len(docs) > 7700
    assert any("酒店" in d.text for d in docs[:50])


def test_parquet(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"id": ["x", "y"], "text": ["first doc", "second doc"], "n": [1, 2]}),
                   tmp_path / "t.parquet")
    docs, errors = docs_and_errors([tmp_path / "t.parquet"])
    assert [d.id for d in docs] == ["x", "y"] and docs[1].meta["n"] == 2 and not errors


PAGE = """<html><head><title>Reviews</title><script>var tracking = "do not keep this";</script></head>
<body><nav><a href="/">Home</a> | <a href="/about">About us</a> | <a href="/login">Login</a></nav>
<div class="cookie-banner" id="cookie-consent">We use cookies to improve your experience. Accept all cookies</div>
<article><h1>A charming film</h1>
<p>{p1}</p><p>{p2}</p></article>
<footer>Copyright 2024 Example Corp. All rights reserved. Privacy policy. Terms of use.</footer></body></html>"""


def test_html_main_text(dataset, tmp_path):
    from data_helpers import paragraphs

    p1, p2 = paragraphs(dataset("pretrain/gutenberg/austen-emma.txt"), 2, 300)
    (tmp_path / "web").mkdir()
    (tmp_path / "web" / "page1.html").write_text(PAGE.format(p1=p1, p2=p2))
    (doc,), errors = docs_and_errors([tmp_path])
    assert doc.id == "web/page1.html" and not errors
    assert p1[:80] in doc.text and p2[-80:] in doc.text
    for junk in ("tracking", "About us", "cookies", "Copyright", "Login"):
        assert junk not in doc.text


def test_warc(dataset, tmp_path):
    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    from data_helpers import paragraphs

    p1, p2 = paragraphs(dataset("pretrain/gutenberg/austen-sense.txt"), 2, 300)
    path = tmp_path / "crawl.warc.gz"
    with open(path, "wb") as f:
        w = WARCWriter(f, gzip=True)
        for url, ctype, body in [("http://a.test/1", "text/html", PAGE.format(p1=p1, p2=p2).encode()),
                                 ("http://a.test/img.png", "image/png", b"\x89PNG\r\n\x1a\n\x00\x00"),
                                 ("http://a.test/t.txt", "text/plain; charset=utf-8", p2.encode())]:
            headers = StatusAndHeaders("200 OK", [("Content-Type", ctype)], protocol="HTTP/1.0")
            w.write_record(w.create_warc_record(url, "response", payload=io.BytesIO(body), http_headers=headers))
    docs, errors = docs_and_errors([path])
    assert not errors and [d.id for d in docs] == ["http://a.test/1", "http://a.test/img.png", "http://a.test/t.txt"]
    assert p1[:60] in docs[0].text and "cookies" not in docs[0].text
    assert docs[1].meta["_drop"].startswith("content_type:image/png")
    assert docs[2].text == p2


def test_conll(dataset):
    path = dataset("ner/conll2003/eng.testa")
    docs, errors = docs_and_errors([path], format="conll")
    assert not errors and len(docs) == 3250
    assert docs[0].meta["tokens"][0] == docs[0].text.split()[0]
    assert len(docs[0].meta["tokens"]) == len(docs[0].meta["tags"])


def test_conll_chinese_characters_joined(dataset, tmp_path):
    lines = dataset("ner/msra/train.bio").read_text(encoding="utf-8").split("\n")[:400]
    p = tmp_path / "msra.bio"
    p.write_text("\n".join(lines))
    docs, _ = docs_and_errors([p])
    assert docs and " " not in docs[0].text and len(docs[0].text) == len(docs[0].meta["tokens"])


def test_bad_inputs_are_errors_and_reading_goes_on(tmp_path):
    (tmp_path / "a_good.jsonl").write_text('{"text": "fine"}\n{"text": broken\n{"text": "also fine"}\n[1,2]\n')
    (tmp_path / "b_binary.txt").write_bytes(bytes(range(256)) * 40)
    (tmp_path / "c_empty.txt").write_bytes(b"")
    (tmp_path / "d_huge.txt").write_text("x" * (5 * 1024 * 1024), encoding="utf-8")
    (tmp_path / "e_broken.csv").write_text('text,label\n"ok",1\n"unterminated,0\nmore,1\n')
    (tmp_path / "f_tail.txt").write_text("a normal last file")
    docs, errors = docs_and_errors([tmp_path], unit="line")
    by_file = {}
    for e in errors:
        by_file.setdefault(e.path.split("/")[-1], []).append(e)
    assert [d.text for d in docs] == ["fine", "also fine", "ok", "a normal last file"]
    assert [e.line for e in by_file["a_good.jsonl"]] == [2, 4]
    assert "binary" in by_file["b_binary.txt"][0].error
    assert "empty" in by_file["c_empty.txt"][0].error
    assert "max_chars" in by_file["d_huge.txt"][0].error and by_file["d_huge.txt"][0].line == 1
    assert "quoting" in by_file["e_broken.csv"][0].error and by_file["e_broken.csv"][0].line == 3


def test_globs_and_missing(tmp_path):
    from lmforge.errors import InputError

    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "one.txt").write_text("one")
    (tmp_path / "x" / ".hidden.txt").write_text("hidden")
    files = expand_inputs([str(tmp_path / "x" / "*.txt")])
    assert [f.rel for f in files] == ["one.txt"]
    assert [f.rel for f in expand_inputs([str(tmp_path)])] == ["x/one.txt"]
    with pytest.raises(InputError):
        expand_inputs([str(tmp_path / "nope")])


def test_read_file_never_raises_on_corrupt_gzip(tmp_path):
    p = tmp_path / "bad.jsonl.gz"
    p.write_bytes(gzip.compress(b'{"text": "a"}\n' * 100)[:40])
    items = list(read_file(expand_inputs([str(p)])[0], ReadConfig()))
    assert any(isinstance(i, ReadError) for i in items)
