"""The crawler and the JSON API reader against a local HTTP server on 127.0.0.1."""

from __future__ import annotations

import json
import threading
import time
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest

from lmforge.data.config import ReadConfig
from lmforge.data.crawl import CrawlConfig, crawl, crawl_api
from lmforge.data.document import Document
from lmforge.data.readers import read_inputs
from data_helpers import paragraphs, read_jsonl


class _Handler(SimpleHTTPRequestHandler):
    log: list = []

    def log_message(self, *args):  # quiet
        pass

    def do_GET(self):
        type(self).log.append((time.monotonic(), self.path))
        if self.path.startswith("/api"):
            from urllib.parse import parse_qs, urlsplit

            page = int(parse_qs(urlsplit(self.path).query).get("page", ["1"])[0])
            items = [{"id": f"item-{page}-{i}", "text": f"api text {page} {i}", "score": i} for i in range(3)] if page <= 3 else []
            body = json.dumps({"data": items}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        super().do_GET()


@pytest.fixture
def site(tmp_path, dataset):
    root = tmp_path / "site"
    (root / "private").mkdir(parents=True)
    paras = paragraphs(dataset("pretrain/gutenberg/austen-persuasion.txt"), 12, 300)
    nav = '<nav><a href="/index.html">Home</a> <a href="/about.html">About</a></nav>'

    def page(i, links):
        hrefs = " ".join(f'<a href="{h}">link</a>' for h in links)
        return (f"<html><body>{nav}<article><h1>Page {i}</h1><p>{paras[2 * i]}</p><p>{paras[2 * i + 1]}</p>"
                f"</article><div>{hrefs}</div><footer>Copyright</footer></body></html>")

    (root / "index.html").write_text(page(0, ["/a.html", "/b.html", "/private/secret.html", "/img.png",
                                              "http://elsewhere.invalid/x.html", "/big.html#frag"]))
    (root / "a.html").write_text(page(1, ["/c.html", "/index.html"]))
    (root / "b.html").write_text(page(2, ["/d.html"]))
    (root / "c.html").write_text(page(3, ["/e.html"]))
    (root / "d.html").write_text(page(4, []))
    (root / "e.html").write_text(page(5, []))
    (root / "private" / "secret.html").write_text(page(5, []))
    (root / "img.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 100)
    (root / "big.html").write_text("<html><body>" + "x" * 300_000 + "</body></html>")
    (root / "robots.txt").write_text("User-agent: *\nDisallow: /private/\n")
    (root / "sitemap.xml").write_text('<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
                                      "<url><loc>{base}/d.html</loc></url><url><loc>{base}/e.html</loc></url></urlset>")
    _Handler.log = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_Handler, directory=str(root)))
    base = f"http://127.0.0.1:{server.server_address[1]}"
    (root / "sitemap.xml").write_text((root / "sitemap.xml").read_text().replace("{base}", base))
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    yield base, paras
    server.shutdown()


def test_crawl_polite_and_complete(site, tmp_path):
    base, paras = site
    cfg = CrawlConfig(seeds=[f"{base}/index.html"], max_pages=20, max_depth=2, max_bytes=100_000, delay=0.2,
                      concurrency=3)
    res = crawl(cfg, tmp_path / "crawl")
    fetched = [p for _, p in _Handler.log]
    assert "/private/secret.html" not in fetched and fetched[0] == "/robots.txt"
    assert "/e.html" not in fetched  # depth 3
    assert res["pages"] == 5
    assert res["skipped"] == {"content_type": 1, "too_large": 1, "robots": 1, "http": 1}  # http: /about.html 404
    times = [t for t, _ in _Handler.log]
    assert all(b - a >= 0.19 for a, b in zip(times, times[1:]))  # one host: one request per delay
    docs = read_jsonl(tmp_path / "crawl" / "docs.jsonl")
    assert len(docs) == 5 and paras[0][:60] in docs[0]["text"] and "Copyright" not in docs[0]["text"]
    warc_docs = [d for d in read_inputs([str(tmp_path / "crawl" / "pages.warc.gz")], ReadConfig())
                 if isinstance(d, Document)]
    assert sorted(d.id for d in warc_docs) == sorted(d["id"] for d in docs)


def test_crawl_resumes_without_refetching(site, tmp_path):
    base, _ = site
    cfg = CrawlConfig(seeds=[f"{base}/index.html"], max_pages=2, max_depth=3, delay=0.0, concurrency=1)
    first = crawl(cfg, tmp_path / "c")
    assert first["pages"] == 2 and first["queued"] > 0
    n_requests = len(_Handler.log)
    second = crawl(cfg.model_copy(update={"max_pages": 6}), tmp_path / "c")
    pages = [p for _, p in _Handler.log[n_requests:]]
    assert second["pages"] == 6 and "/index.html" not in pages and "/a.html" not in pages
    docs = read_jsonl(tmp_path / "c" / "docs.jsonl")
    assert len(docs) == len({d["id"] for d in docs}) == 6


def test_sitemap_and_api(site, tmp_path):
    base, _ = site
    res = crawl(CrawlConfig(sitemap=f"{base}/sitemap.xml", max_depth=0, delay=0.0), tmp_path / "s")
    assert res["pages"] == 2
    api = crawl_api(f"{base}/api?page=1", tmp_path / "api", CrawlConfig(delay=0.0))
    docs = read_jsonl(tmp_path / "api" / "docs.jsonl")
    assert api == {"pages": 4, "docs": 9, "docs_path": str(tmp_path / "api" / "docs.jsonl")}
    assert docs[0]["id"] == "item-1-0" and docs[0]["meta"]["score"] == 0
