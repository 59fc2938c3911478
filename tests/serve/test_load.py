"""A bounded load test of a live ``lmforge serve`` on loopback: 32 concurrent asyncio clients mixing
``/v1/classify`` and streamed ``/v1/chat/completions`` for a few seconds. No 5xx, every stream well
formed and ending with ``[DONE]``, every result correct-shaped, no 429 while the clients stay under
``--max-concurrent``; with ``--max-concurrent 4`` some 429s carrying Retry-After and still no 5xx; the
request counters in ``/metrics`` match what the clients saw; the process lives on and ``/health`` is
ok. A client that hangs up mid-stream frees its batch row and its concurrency slot at once."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter

import httpx
import pytest

from .live import live_server, metric, save_classifier

CLIENTS, PER_CLIENT, BUDGET_S = 32, 10, 10.0
LABELS = ("neg", "pos")


@pytest.fixture(scope="module")
def model_specs(tmp_path_factory, serve_tok, chat_dir):
    """chat + clf for the load, and ``long``: a decoder with a 2048-token context, so a stream left to run
    would take seconds (the hang-up test sees it stop early)."""
    from lmforge.models.io import save_model

    from .conftest import tiny_gpt

    root = tmp_path_factory.mktemp("load_models")
    clf = save_classifier(root, serve_tok, LABELS)
    serve_tok.save(root / "long-tok")
    long = save_model(tiny_gpt(serve_tok.vocab_size, block_size=2048, seed=5), root / "long",
                      extra_files=sorted((root / "long-tok").iterdir()))
    return [f"chat={chat_dir}", f"clf={clf}", f"long={long}"]


@pytest.fixture(scope="module")
def server(model_specs, tmp_path_factory):
    with live_server(model_specs, tmp_path_factory.mktemp("load"), "--request-timeout", "30") as s:
        yield s


@pytest.fixture(scope="module")
def tight_server(model_specs, tmp_path_factory):
    with live_server(model_specs, tmp_path_factory.mktemp("load4"), "--max-concurrent", "4") as s:
        yield s


# -- one client's requests, checked as they come back -----------------------------------------------------


class Outcome:
    def __init__(self, route: str, status: int, problem: str | None = None, retry_after: str | None = None):
        self.route, self.status, self.problem, self.retry_after = route, status, problem, retry_after


def _check_classify(body: dict, texts: list[str]) -> str | None:
    results = body.get("results")
    if body.get("model") != "clf" or not isinstance(results, list) or len(results) != len(texts):
        return f"classify: bad body {body}"
    for r in results:
        if r.get("label") not in LABELS or set(r.get("scores", {})) != set(LABELS) or not 0 <= r["score"] <= 1:
            return f"classify: bad result {r}"
    return None


def _check_stream(events: list[str], max_tokens: int) -> str | None:
    if not events or events[-1] != "[DONE]":
        return f"stream did not end with [DONE]: {events[-3:]}"
    chunks = [json.loads(e) for e in events[:-1]]
    if any("error" in c for c in chunks):
        return f"error event: {[c for c in chunks if 'error' in c]}"
    if not all(c["object"] == "chat.completion.chunk" and len(c["choices"]) == 1 for c in chunks):
        return f"malformed chunk in {chunks}"
    if chunks[0]["choices"][0]["delta"] != {"role": "assistant", "content": ""}:
        return f"first chunk is not the role: {chunks[0]}"
    finishes = [c["choices"][0]["finish_reason"] for c in chunks]
    if finishes[-1] not in ("stop", "length") or any(f is not None for f in finishes[:-1]):
        return f"finish_reason not on the last chunk only: {finishes}"
    if len({c["id"] for c in chunks}) != 1 or len(chunks) > max_tokens + 2:
        return f"ids or chunk count wrong: {len(chunks)} chunks"
    return None


async def _classify(c: httpx.AsyncClient, k: int) -> Outcome:
    texts = [f"client text {k} number {j}" for j in range(1 + k % 3)]
    r = await c.post("/v1/classify", json={"model": "clf", "input": texts})
    if r.status_code != 200:
        return Outcome("/v1/classify", r.status_code, None, r.headers.get("retry-after"))
    return Outcome("/v1/classify", 200, _check_classify(r.json(), texts))


async def _chat(c: httpx.AsyncClient, k: int) -> Outcome:
    max_tokens = 4 + k % 9
    payload = {"model": "chat", "messages": [{"role": "user", "content": f"Hello number {k}!"}],
               "max_tokens": max_tokens, "temperature": 0.8, "seed": k, "stream": True}
    async with c.stream("POST", "/v1/chat/completions", json=payload) as r:
        if r.status_code != 200:
            await r.aread()
            return Outcome("/v1/chat/completions", r.status_code, None, r.headers.get("retry-after"))
        events = [line[6:] async for line in r.aiter_lines() if line.startswith("data: ")]
    return Outcome("/v1/chat/completions", 200, _check_stream(events, max_tokens))


async def _load(url: str, clients: int = CLIENTS, per_client: int = PER_CLIENT, budget: float = BUDGET_S):
    """``clients`` concurrent loops of ``per_client`` requests each (classify and chat alternating, from a
    different start per client), none started after ``budget`` seconds."""
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    deadline = time.monotonic() + budget
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as c:
        async def client(i: int) -> list[Outcome]:
            out = []
            for j in range(per_client):
                if time.monotonic() > deadline:
                    break
                k = i * per_client + j
                out.append(await (_chat(c, k) if (i + j) % 2 else _classify(c, k)))
            return out

        return [o for os_ in await asyncio.gather(*(client(i) for i in range(clients))) for o in os_]


def _wait_for(fn, what: str, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while not (got := fn()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)
    return got


def _metrics(url: str) -> str:
    return httpx.get(f"{url}/metrics", timeout=5).text


def _idle_metrics(url: str, model: str | None = None) -> str | None:
    """``/metrics`` once nothing is in flight at the door (nor running in ``model``'s engine); else None."""
    text = _metrics(url)
    busy = metric(text, "lmforge_requests_in_flight") + (metric(text, "lmforge_active_requests", model=model)
                                                          if model else 0)
    return None if busy else text


# -- the tests ----------------------------------------------------------------------------------------------


def test_32_clients_under_the_limit_all_succeed_and_are_counted(server):
    t0 = time.monotonic()
    outcomes = asyncio.run(_load(server.url))
    took = time.monotonic() - t0
    statuses = Counter((o.route, o.status) for o in outcomes)
    assert all(o.status == 200 for o in outcomes), statuses  # no 5xx, and no 429 under --max-concurrent 64
    assert [o.problem for o in outcomes if o.problem] == []
    assert len(outcomes) >= CLIENTS * 2 and took < BUDGET_S + 20, (len(outcomes), took)
    assert {r for r, _ in statuses} == {"/v1/classify", "/v1/chat/completions"}

    def counted() -> bool:  # a stream is counted when its response ends, a moment after the client's [DONE]
        text = _metrics(server.url)
        return all(metric(text, "lmforge_requests_total", route=r, method="POST", status="200") == n
                   for (r, _), n in statuses.items())

    _wait_for(counted, f"the request counters to reach {dict(statuses)}", 5)
    text = _metrics(server.url)
    assert metric(text, "lmforge_requests_in_flight") == 0
    assert metric(text, "lmforge_active_requests", model="chat") == 0
    assert metric(text, "lmforge_batch_size_count", model="clf") < statuses[("/v1/classify", 200)]  # batched
    assert server.proc.poll() is None and httpx.get(f"{server.url}/health").json() == {"status": "ok"}


def test_over_max_concurrent_is_429_with_retry_after_never_5xx(tight_server):
    outcomes = asyncio.run(_load(tight_server.url, per_client=3))
    statuses = Counter(o.status for o in outcomes)
    assert set(statuses) <= {200, 429} and statuses[429] > 0 and statuses[200] > 0, statuses
    assert all(o.retry_after == "1" for o in outcomes if o.status == 429)
    assert [o.problem for o in outcomes if o.problem] == []  # what was let in is answered in full
    text = _wait_for(lambda: _idle_metrics(tight_server.url), "the in-flight requests to finish", 5)
    n429 = sum(metric(text, "lmforge_requests_total", route=r, method="POST", status="429")
               for r in ("/v1/classify", "/v1/chat/completions"))
    assert n429 == statuses[429]
    assert tight_server.proc.poll() is None and httpx.get(f"{tight_server.url}/health").status_code == 200


def _hang_up_after_two_chunks(url: str, max_tokens: int) -> list[dict]:
    payload = {"model": "long", "prompt": "Once upon a time", "max_tokens": max_tokens, "ignore_eos": True,
               "stream": True}
    got = []
    with httpx.Client(base_url=url, timeout=30) as c:  # closing the client drops the connection
        with c.stream("POST", "/v1/completions", json=payload) as r:
            assert r.status_code == 200
            for line in r.iter_lines():
                if line.startswith("data: "):
                    got.append(json.loads(line[6:]))
                    if len(got) == 2:
                        break
    return got


def test_a_client_that_hangs_up_mid_stream_frees_its_row_and_its_slot(tight_server):
    url, max_tokens = tight_server.url, 2000
    before = metric(_metrics(url), "lmforge_generated_tokens_total", model="long")
    for _ in range(4):  # as many as --max-concurrent: each hang-up must give its slot back
        assert len(_hang_up_after_two_chunks(url, max_tokens)) == 2

    text = _wait_for(lambda: _idle_metrics(url, "long"), "the engine and the door to be idle after the hang-ups", 5)
    assert metric(text, "lmforge_queue_depth", model="long") == 0
    generated = metric(text, "lmforge_generated_tokens_total", model="long") - before
    assert 0 < generated < max_tokens, generated  # all four stopped early: nothing decoded for nobody
    assert metric(text, "lmforge_requests_total", route="/v1/completions", method="POST", status="200") >= 4

    async def four_at_once():  # all 4 slots are free again
        async with httpx.AsyncClient(base_url=url, timeout=30) as c:
            return await asyncio.gather(*(_classify(c, k) for k in range(4)))

    assert [o.status for o in asyncio.run(four_at_once())] == [200] * 4
    assert tight_server.proc.poll() is None
