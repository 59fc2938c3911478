"""Continuous batching: each row decodes exactly as alone (greedy and seeded), rows join mid-flight and
leave when done, cancel frees the slot, stop strings never leak, queue limits, drain and stop."""

import asyncio
import time

import pytest
import torch

from lmforge.models.generate import SamplingConfig, generate, truncate_at_stop
from lmforge.serve.engine import GenerationEngine, SamplingParams
from lmforge.serve.errors import APIError

from .conftest import tiny_gpt

PROMPTS = [[3, 14, 15, 9, 2, 6], [7], [1, 2, 3], list(range(5, 40)), [8, 8, 9, 10, 11], [100, 200, 300, 40]]


async def collect(handle):
    """Per choice: (tokens, text, finish_reason, events)."""
    out: dict[int, dict] = {}
    async for ev in handle:
        row = out.setdefault(ev.index, {"tokens": [], "text": "", "finish": None, "events": []})
        row["events"].append(ev)
        row["text"] += ev.text
        if ev.token is not None:
            row["tokens"].append(ev.token)
        if ev.finish_reason:
            row["finish"] = ev.finish_reason
    return [out[i] for i in sorted(out)]


def one(engine, prompt, params):
    """Submit one request (inside a running loop, as the server does) and collect its choices."""
    async def go():
        return await collect(engine.submit(prompt, params))
    return asyncio.run(go())


async def staggered(engine, requests, wait_tokens=3):
    """Submit each request once the previous one has streamed ``wait_tokens`` events: joins mid-flight."""
    tasks = []
    for prompt, params in requests:
        handle = engine.submit(prompt, params)
        first: asyncio.Queue = asyncio.Queue()

        async def run(h=handle, q=first):
            events = []
            async for ev in h:
                events.append(ev)
                if len(events) == wait_tokens:
                    q.put_nowait(None)
            q.put_nowait(None)
            return events

        tasks.append(asyncio.create_task(run()))
        await first.get()
    results = []
    for t in tasks:
        events = await t
        results.append([ev.token for ev in events if ev.token is not None])
    return results


@pytest.fixture
def engine_for():
    made = []

    def make(model, tok, **kw):
        e = GenerationEngine(model, tok, **kw)
        e.start()
        made.append(e)
        return e

    yield make
    for e in made:
        e.stop()


@pytest.mark.parametrize("kw", [{}, dict(positions="rope", norm="rmsnorm", mlp="swiglu", n_kv_head=2)],
                         ids=["learned", "rope-gqa"])
@pytest.mark.parametrize("penalty", [1.0, 1.3], ids=["argmax", "sample_next"])
def test_greedy_rows_joining_mid_flight_equal_generate_alone(serve_tok, engine_for, kw, penalty):
    model = tiny_gpt(serve_tok.vocab_size, **kw)
    lengths = [24, 5, 18, 20, 12, 9]  # finishing at different steps, while others join
    alone = [generate(model, p, SamplingConfig(max_new_tokens=m, temperature=0, top_k=None,
                                               repetition_penalty=penalty)) for p, m in zip(PROMPTS, lengths)]
    assert len({tuple(a) for a in alone}) == len(alone)
    engine = engine_for(model, serve_tok, max_batch=8)
    reqs = [(p, SamplingParams(max_tokens=m, temperature=0, repetition_penalty=penalty)) for p, m in zip(PROMPTS, lengths)]
    got = asyncio.run(staggered(engine, reqs))
    assert got == alone
    assert engine.stats["mid_flight_joins"] >= 3 and engine.stats["max_batch_seen"] >= 3
    assert engine.active == 0 and engine.queue_depth == 0


def test_seeded_sampling_is_the_same_whatever_else_runs(decoder, engine_for):
    model, tok = decoder
    prompt = [5, 6, 7, 8]
    params = dict(max_tokens=20, temperature=1.0, seed=11)
    reference = generate(model, prompt, SamplingConfig(max_new_tokens=20, temperature=1.0, top_k=None, seed=11))
    engine = engine_for(model, tok, max_batch=8)

    async def scenario():
        alone = (await collect(engine.submit(prompt, SamplingParams(**params))))[0]["tokens"]
        # the same request amid unseeded sampling, greedy rows and an n=3 request, arriving at different times
        others = [(p, SamplingParams(max_tokens=15, temperature=1.0, top_k=20, n=1 + i % 3)) for i, p in enumerate(PROMPTS)]
        mixed = await staggered(engine, others[:3] + [(prompt, SamplingParams(**params))] + others[3:], wait_tokens=2)
        two = await collect(engine.submit(prompt, SamplingParams(**params, n=2)))
        return alone, mixed[3], two

    alone, amid, two = asyncio.run(scenario())
    assert alone == reference == amid
    assert two[0]["tokens"] == reference and two[1]["tokens"] != reference  # choice i draws with seed + i
    assert engine.stats["mid_flight_joins"] >= 4


def test_cancel_frees_the_slot_and_lets_the_queue_move(decoder, engine_for):
    model, tok = decoder
    engine = engine_for(model, tok, max_batch=1)

    async def scenario():
        first = engine.submit([1, 2, 3], SamplingParams(max_tokens=60, temperature=0))
        second = engine.submit([4, 5], SamplingParams(max_tokens=4, temperature=0))
        seen = [await first.__anext__() for _ in range(2)]
        assert engine.active == 1 and engine.queue_depth == 1  # one batch slot: the second waits
        first.cancel()
        rest = await collect(second)
        for _ in range(200):
            if engine.active == 0:
                break
            await asyncio.sleep(0.01)
        return seen, rest

    seen, rest = asyncio.run(scenario())
    assert len(seen) == 2 and rest[0]["finish"] == "length" and len(rest[0]["tokens"]) == 4
    assert engine.active == 0 and engine.queue_depth == 0
    assert engine.stats["tokens"] < 60  # the cancelled request stopped decoding


def test_stop_strings_across_token_boundaries_never_leak(decoder, engine_for):
    model, tok = decoder
    prompt = tok.encode("Hello there! How")
    full = generate(model, prompt, SamplingConfig(max_new_tokens=40, temperature=0, top_k=None, repetition_penalty=1.3))
    text = tok.decode(full, skip_special_tokens=True)
    # a stop string that spans a token boundary: the last character of one token and the first of the next
    words = [tok.decode([t], skip_special_tokens=True) for t in full]
    at = next(k for k in range(3, len(full)) if words[k - 1].strip() and words[k].strip()
              and "\ufffd" not in words[k - 1] + words[k])
    stop = words[at - 1][-1] + words[at][0]
    reference = truncate_at_stop(text, [stop])
    engine = engine_for(model, tok)
    params = SamplingParams(max_tokens=40, temperature=0, repetition_penalty=1.3, stop=[stop])
    [row] = one(engine, prompt, params)
    assert row["text"] == reference and row["finish"] == "stop"
    shown = ""
    for ev in row["events"]:
        shown += ev.text
        assert reference.startswith(shown)  # never ahead: no part of the stop string is ever sent
    assert row["tokens"] == full[: len(row["tokens"])] and len(row["tokens"]) < len(full)


def test_eos_min_tokens_ignore_eos_length_context_and_logprobs(decoder, engine_for):
    model, tok = decoder
    prompt = [9, 3, 4]
    greedy = generate(model, prompt, SamplingConfig(max_new_tokens=12, temperature=0, top_k=None))
    k = next(i for i in range(2, 12) if greedy[i] not in greedy[:i])
    eos = greedy[k]  # a token greedy decoding reaches: as EOS it ends the row early
    engine = engine_for(model, tok, eos_token_id=eos)

    def run(**kw):
        return one(engine, prompt, SamplingParams(temperature=0, **kw))[0]

    stopped = run(max_tokens=12)
    assert stopped["tokens"] == greedy[:k] and stopped["finish"] == "stop"
    assert engine.stats["tokens"] == k + 1  # EOS is sampled (and counted), never emitted
    assert run(max_tokens=12, ignore_eos=True)["tokens"] == greedy
    banned = run(max_tokens=12, min_tokens=8)["tokens"]
    assert eos not in banned[:8] and banned[:k] == greedy[:k] and len(banned) >= 8
    assert run(max_tokens=3)["finish"] == "length"
    # the context: 60 prompt tokens in a 64-token block leave room for 5 (the last is never fed), as generate
    long = list(range(20, 80))
    row = one(engine, long, SamplingParams(temperature=0, max_tokens=30, ignore_eos=True))[0]
    assert row["tokens"] == generate(model, long, SamplingConfig(max_new_tokens=30, temperature=0, top_k=None))
    assert len(row["tokens"]) == 5 and row["finish"] == "length"
    # logprobs are the model's own log-softmax at each position; the top list is sorted, greedy first
    row = run(max_tokens=6, ignore_eos=True, logprobs=3)
    with torch.no_grad():
        logits = model(torch.tensor([prompt + row["tokens"]]))[0][0].float().log_softmax(-1)
    events = [ev for ev in row["events"] if ev.token is not None]
    for k, ev in enumerate(events):
        want = logits[len(prompt) - 1 + k]
        assert abs(ev.logprob - float(want[ev.token])) < 1e-4
        assert [t for t, _ in ev.top_logprobs] == want.topk(3).indices.tolist() and ev.top_logprobs[0][0] == ev.token


def test_queue_limit_drain_stop_and_bad_requests(decoder):
    model, tok = decoder
    engine = GenerationEngine(model, tok, max_batch=1, max_queue=1)
    engine.start()

    async def scenario():
        handles, refused = [], None
        for _ in range(4):
            try:
                handles.append(engine.submit([1, 2], SamplingParams(max_tokens=60, temperature=0)))
            except APIError as err:
                refused = err
                break
        for bad, match in [([], "empty"), ([1, 10**6], "token ids"), (list(range(70)), "maximum context length is 64")]:
            with pytest.raises(APIError, match=match):
                engine.submit(bad, SamplingParams())
        with pytest.raises(APIError, match="n must be between 1 and 1"):
            engine.submit([1], SamplingParams(n=2))
        await handles[0].__anext__()  # decoding has begun
        finished = await engine.drain(timeout=0)
        with pytest.raises(APIError) as draining:
            engine.submit([1], SamplingParams())
        engine.stop()
        errors = []
        for h in handles:
            try:
                await collect(h)
            except APIError as err:
                errors.append(err.status)
        return refused, finished, draining.value, errors

    refused, finished, draining, errors = asyncio.run(scenario())
    assert refused.status == 429 and refused.headers["Retry-After"] == "1"
    assert not finished and draining.status == 503 and draining.code == "draining"
    assert errors and set(errors) == {503}  # what was in flight at stop() is answered, not left hanging


def test_recurrent_models_are_served_one_request_at_a_time(serve_tok, engine_for):
    from lmforge.models.rnn import RNNConfig, RNNModel

    torch.manual_seed(0)
    model = RNNModel(RNNConfig(vocab_size=serve_tok.vocab_size, block_size=16, n_layer=1, d_model=32, cell="gru")).eval()
    prompts = [[1, 2, 3], list(range(10, 30)), [7]]
    alone = [generate(model, p, SamplingConfig(max_new_tokens=20, temperature=0, top_k=None)) for p in prompts]
    engine = engine_for(model, serve_tok)

    async def scenario():
        handles = [engine.submit(p, SamplingParams(max_tokens=20, temperature=0, n=2)) for p in prompts]
        return [await collect(h) for h in handles]

    got = asyncio.run(scenario())
    assert [[c["tokens"] for c in rows] for rows in got] == [[a, a] for a in alone]  # no context limit either
    assert engine.stats["max_batch_seen"] == 2 and engine.stats["mid_flight_joins"] == 0


def test_metrics_hooks_are_called(decoder):
    model, tok = decoder

    class Recorder:  # the app's metrics interface (serve/app.py), recording what the engine reports
        def __init__(self):
            self.calls = []

        def __getattr__(self, name):
            return lambda model, value: self.calls.append((name, model, value))

    rec = Recorder()
    engine = GenerationEngine(model, tok, metrics=rec, name="tiny")
    t0 = time.monotonic()
    one(engine, [1, 2, 3], SamplingParams(max_tokens=5, temperature=0, n=2))
    engine.stop()
    names = [c[0] for c in rec.calls]
    assert {"observe_batch", "add_tokens", "set_queue_depth", "observe_ttft"} <= set(names)
    assert all(c[1] == "tiny" for c in rec.calls)
    assert sum(c[2] for c in rec.calls if c[0] == "add_tokens") == 10
    assert 0 < next(c[2] for c in rec.calls if c[0] == "observe_ttft") < time.monotonic() - t0
