"""A polite crawler: seeds or a sitemap -> WARC of raw pages + JSONL of extracted documents.

Politeness: robots.txt (and its Crawl-delay), at most one request at a time per host with ``delay``
seconds between them, a global concurrency cap, depth / domain / size limits and content-type
checks. Resumable: the frontier, the seen set and the byte lengths of the outputs are saved after
every page; a restarted crawl truncates the outputs to the saved lengths and goes on, so a page is
never written twice. Standard library HTTP only; no JavaScript.
"""

from __future__ import annotations

import io
import json
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import urllib.robotparser
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from pydantic import Field

from ..config import StrictModel
from ..errors import InputError
from ..runs import atomic_write_json


class CrawlConfig(StrictModel):
    seeds: list[str] = Field(default_factory=list)
    sitemap: str | None = None
    max_pages: int = 100
    max_depth: int = 2
    max_bytes: int = 5_000_000
    delay: float = 1.0  # seconds between two requests to one host
    concurrency: int = 4
    same_domain: bool = True
    user_agent: str = "lmforge-crawler/0.1"
    timeout: float = 10.0
    content_types: list[str] = Field(default_factory=lambda: ["text/html", "application/xhtml+xml", "text/plain"])
    min_chars: int = 20  # extracted text shorter than this is not written as a document


@dataclass
class Fetched:
    url: str
    depth: int
    status: int = 0
    ctype: str = ""
    body: bytes = b""
    headers: list[tuple[str, str]] | None = None
    skip: str | None = None


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag == "a":
            href = dict(attrs).get("href")
            if href:
                self.links.append(href)


def extract_links(base: str, html: str) -> list[str]:
    p = _Links()
    try:
        p.feed(html)
    except Exception:  # malformed HTML: keep what was parsed
        pass
    out = []
    for href in p.links:
        url, _ = urllib.parse.urldefrag(urllib.parse.urljoin(base, href.strip()))
        if urllib.parse.urlsplit(url).scheme in ("http", "https"):
            out.append(url)
    return out


class Politeness:
    """robots.txt per host and a per-host clock: one request at a time, ``delay`` apart."""

    def __init__(self, cfg: CrawlConfig):
        self.cfg = cfg
        self.robots: dict[str, urllib.robotparser.RobotFileParser | None] = {}
        self.next_time: dict[str, float] = {}
        self.locks: dict[str, threading.Lock] = {}
        self.guard = threading.Lock()

    def host_lock(self, host: str) -> threading.Lock:
        with self.guard:
            return self.locks.setdefault(host, threading.Lock())

    def wait_turn(self, host: str) -> None:
        """Called with the host lock held: sleep until the host may be asked again."""
        delay = self.cfg.delay
        rp = self.robots.get(host)
        if rp is not None:
            cd = rp.crawl_delay(self.cfg.user_agent)
            if cd:
                delay = max(delay, float(cd))
        now = time.monotonic()
        t = self.next_time.get(host, 0.0)
        if t > now:
            time.sleep(t - now)
        self.next_time[host] = time.monotonic() + delay

    def allowed(self, url: str) -> bool:
        parts = urllib.parse.urlsplit(url)
        host = parts.netloc
        with self.host_lock(host):
            if host not in self.robots:
                self.wait_turn(host)
                rp = urllib.robotparser.RobotFileParser()
                try:
                    req = urllib.request.Request(f"{parts.scheme}://{host}/robots.txt",
                                                 headers={"User-Agent": self.cfg.user_agent})
                    with urllib.request.urlopen(req, timeout=self.cfg.timeout) as r:
                        rp.parse(r.read(500_000).decode("utf-8", "replace").splitlines())
                except urllib.error.HTTPError as e:
                    rp = None if e.code in (404, 410) else _deny_all()  # 5xx/401/403: stay out
                except (urllib.error.URLError, OSError):
                    rp = None
                self.robots[host] = rp
        rp = self.robots[host]
        return rp is None or rp.can_fetch(self.cfg.user_agent, url)


def _deny_all() -> urllib.robotparser.RobotFileParser:
    rp = urllib.robotparser.RobotFileParser()
    rp.parse(["User-agent: *", "Disallow: /"])
    return rp


def fetch(url: str, depth: int, cfg: CrawlConfig, polite: Politeness) -> Fetched:
    if not polite.allowed(url):
        return Fetched(url, depth, skip="robots")
    host = urllib.parse.urlsplit(url).netloc
    with polite.host_lock(host):
        polite.wait_turn(host)
        req = urllib.request.Request(url, headers={"User-Agent": cfg.user_agent})
        try:
            with urllib.request.urlopen(req, timeout=cfg.timeout) as r:
                ctype = r.headers.get("Content-Type", "")
                headers = list(r.headers.items())
                length = int(r.headers.get("Content-Length") or 0)
                if length > cfg.max_bytes:
                    return Fetched(url, depth, r.status, ctype, skip="too_large")
                if not any(ctype.lower().startswith(t) for t in cfg.content_types):
                    return Fetched(url, depth, r.status, ctype, skip=f"content_type:{ctype.split(';')[0] or 'none'}")
                body = r.read(cfg.max_bytes + 1)
                if len(body) > cfg.max_bytes:
                    return Fetched(url, depth, r.status, ctype, skip="too_large")
                return Fetched(url, depth, r.status, ctype, body, headers)
        except urllib.error.HTTPError as e:
            return Fetched(url, depth, e.code, skip=f"http:{e.code}")
        except (urllib.error.URLError, OSError, ValueError) as e:
            return Fetched(url, depth, skip=f"error:{type(e).__name__}")


def sitemap_urls(url: str, cfg: CrawlConfig, polite: Politeness, _depth: int = 0) -> list[str]:
    import xml.etree.ElementTree as ET

    f = fetch(url, 0, cfg.model_copy(update={"content_types": ["text/xml", "application/xml", "text/plain"]}), polite)
    if f.skip or not f.body:
        raise InputError(f"sitemap {url} could not be read ({f.skip or 'empty'})", "check the URL")
    root = ET.fromstring(f.body)
    locs = [el.text.strip() for el in root.iter() if el.tag.endswith("loc") and el.text]
    if root.tag.endswith("sitemapindex") and _depth < 2:
        return [u for sm in locs for u in sitemap_urls(sm, cfg, polite, _depth + 1)]
    return locs


class _State:
    def __init__(self, out: Path):
        self.path = out / "frontier.json"
        self.data: dict[str, Any] = {"queue": [], "seen": [], "pages": 0, "docs": 0, "skipped": {},
                                     "warc_bytes": 0, "docs_bytes": 0}
        if self.path.exists():
            self.data = json.loads(self.path.read_text(encoding="utf-8"))

    def save(self) -> None:
        atomic_write_json(self.path, self.data)


def _truncate(path: Path, size: int) -> None:
    with open(path, "ab") as f:
        f.truncate(size)


def crawl(cfg: CrawlConfig, out: str | Path) -> dict:
    """Crawl into ``out``: pages.warc.gz (responses), docs.jsonl (extracted text), frontier.json."""
    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    from .readers import extract_html

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    state = _State(out)
    polite = Politeness(cfg)
    d = state.data
    d["queue"] = d.pop("inflight", []) + d["queue"]  # fetches a killed run had started
    if not d["queue"] and not d["seen"]:
        seeds = list(cfg.seeds) + (sitemap_urls(cfg.sitemap, cfg, polite) if cfg.sitemap else [])
        d["queue"] = [[u, 0] for u in dict.fromkeys(seeds)]
        d["seen"] = list(dict.fromkeys(seeds))
    seen = set(d["seen"])
    hosts = {urllib.parse.urlsplit(u).netloc for u in [*cfg.seeds, *(u for u, _ in d["queue"])]}
    warc_path, docs_path = out / "pages.warc.gz", out / "docs.jsonl"
    for p, size in ((warc_path, d["warc_bytes"]), (docs_path, d["docs_bytes"])):
        _truncate(p, size)  # drop whatever a killed run wrote after its last saved state
    with open(warc_path, "ab") as wf, open(docs_path, "a", encoding="utf-8") as df, \
            ThreadPoolExecutor(max(1, cfg.concurrency)) as pool:
        writer = WARCWriter(wf, gzip=True)
        running: dict = {}
        while (d["queue"] or running) and d["pages"] < cfg.max_pages:
            while d["queue"] and len(running) < cfg.concurrency and d["pages"] + len(running) < cfg.max_pages:
                url, depth = d["queue"].pop(0)
                d.setdefault("inflight", []).append([url, depth])
                running[pool.submit(fetch, url, depth, cfg, polite)] = [url, depth]
            done, _ = wait(list(running), return_when=FIRST_COMPLETED)
            for fut in done:
                d["inflight"].remove(running.pop(fut))
                f: Fetched = fut.result()
                if f.skip:
                    d["skipped"][f.skip.split(":")[0]] = d["skipped"].get(f.skip.split(":")[0], 0) + 1
                    state.save()
                    continue
                d["pages"] += 1
                http = StatusAndHeaders(f"{f.status} OK", f.headers or [], protocol="HTTP/1.1")
                writer.write_record(writer.create_warc_record(f.url, "response", payload=io.BytesIO(f.body),
                                                              http_headers=http))
                from .io import detect_encoding

                try:
                    text = f.body.decode(detect_encoding(f.body, complete=True)) if f.body else ""
                except Exception:
                    text = ""
                html = "html" in f.ctype
                content = extract_html(text, cfg.min_chars) if html else text
                if len(content.strip()) >= cfg.min_chars:
                    df.write(json.dumps({"id": f.url, "text": content, "meta": {"url": f.url, "depth": f.depth,
                                                                                "content_type": f.ctype}},
                                        ensure_ascii=False) + "\n")
                    d["docs"] += 1
                if html and f.depth < cfg.max_depth:
                    for link in extract_links(f.url, text):
                        host = urllib.parse.urlsplit(link).netloc
                        if link in seen or (cfg.same_domain and host not in hosts):
                            continue
                        seen.add(link)
                        d["seen"].append(link)
                        d["queue"].append([link, f.depth + 1])
                wf.flush()
                df.flush()
                d["warc_bytes"], d["docs_bytes"] = wf.tell(), df.tell()
                state.save()
    return {"pages": d["pages"], "docs": d["docs"], "queued": len(d["queue"]), "skipped": d["skipped"],
            "warc": str(warc_path), "docs_path": str(docs_path)}


def crawl_api(url: str, out: str | Path, cfg: CrawlConfig, text_field: str = "text") -> dict:
    """Read a paged JSON API into docs.jsonl: follows a ``next`` URL in the response, or else
    increments a ``page`` query parameter until a page comes back empty."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    polite = Politeness(cfg)
    n_docs = pages = 0
    next_url: str | None = url
    with open(out / "docs.jsonl", "w", encoding="utf-8") as df:
        while next_url and pages < cfg.max_pages:
            f = fetch(next_url, 0, cfg.model_copy(update={"content_types": ["application/json", "text/"]}), polite)
            if f.skip:
                raise InputError(f"API page {next_url} failed ({f.skip})", "check the URL and the server")
            data = json.loads(f.body.decode("utf-8"))
            pages += 1
            records = data if isinstance(data, list) else next(
                (data[k] for k in ("data", "items", "results", "records") if isinstance(data.get(k), list)), [])
            for i, rec in enumerate(records):
                text = rec.get(text_field) or rec.get("body") or rec.get("content")
                if not isinstance(text, str):
                    continue
                rid = str(rec.get("id", f"{next_url}#{i}"))
                meta = {k: v for k, v in rec.items() if k not in (text_field, "id")}
                df.write(json.dumps({"id": rid, "text": text, "meta": {**meta, "api": url}}, ensure_ascii=False) + "\n")
                n_docs += 1
            if isinstance(data, dict) and data.get("next"):
                next_url = urllib.parse.urljoin(next_url, data["next"])
            elif records:
                parts = urllib.parse.urlsplit(next_url)
                q = dict(urllib.parse.parse_qsl(parts.query))
                q["page"] = str(int(q.get("page", "1")) + 1)
                next_url = urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(q)))
            else:
                next_url = None
    return {"pages": pages, "docs": n_docs, "docs_path": str(out / "docs.jsonl")}
