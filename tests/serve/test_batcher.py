"""The dynamic batcher's grouping by length and its wait policy, on plain functions (no model)."""

from __future__ import annotations

import asyncio
import random
import time

from lmforge.serve.batcher import DynamicBatcher, by_length, length_groups


def test_length_groups_cover_every_input_once_and_pad_little():
    rng = random.Random(0)
    lengths = [rng.randint(3, 64) for _ in range(200)]
    groups = length_groups(lengths, slack=0.2, min_size=4)
    assert sorted(i for g in groups for i in g) == list(range(200))
    padded = sum(max(lengths[i] for i in g) * len(g) for g in groups)
    assert padded <= 1.25 * sum(lengths)  # one padded batch: ~1.8x
    assert max(lengths) * len(lengths) > 1.7 * sum(lengths)
    assert all(len(g) >= 4 for g in groups[:-1])
    assert length_groups([]) == [] and length_groups([5]) == [[0]]


def test_by_length_keeps_the_callers_order():
    calls = []

    def fn(xs):
        calls.append(len(xs))
        return [x.upper() for x in xs]

    words = ["a" * n for n in (9, 1, 30, 2, 2, 31, 1, 8, 29, 3)]
    assert by_length(fn, len)(words) == [w.upper() for w in words]
    assert len(calls) > 1 and sum(calls) == len(words)


def _timed(batcher: DynamicBatcher, values: list) -> tuple[list, float]:
    async def go():
        batcher.start()
        t = time.perf_counter()
        out = await asyncio.gather(*(batcher.submit(v) for v in values))
        return out, time.perf_counter() - t

    try:
        return asyncio.run(go())
    finally:
        batcher.stop()


def test_a_lone_request_does_not_wait_for_company():
    sizes = []

    def fn(xs):
        sizes.append(len(xs))
        return [x * 2 for x in xs]

    alone = DynamicBatcher(fn, wait_ms=500, incoming=lambda: 1)  # only this request is in flight
    out, seconds = _timed(alone, [21])
    assert out == [42] and seconds < 0.3

    crowd = DynamicBatcher(fn, wait_ms=200, max_batch=8, incoming=lambda: 100)  # more are on their way
    out, _ = _timed(crowd, list(range(8)))
    assert out == [2 * i for i in range(8)] and sizes[-1] == 8  # gathered into one batch
