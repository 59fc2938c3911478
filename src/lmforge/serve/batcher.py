"""Dynamic batching for encoder and task models: inputs from many requests share one forward pass.

Each request puts its inputs (one item each) into a queue and awaits one future per item. One worker
thread owns the model: it takes the first waiting item, waits up to ``wait_ms`` for more (or until
``max_batch`` items are there; only while the server has requests in flight that have not reached
the queue yet, so a lone client never waits), runs ``fn(items) -> results`` under
``torch.inference_mode`` (``fn`` pads per batch; ``by_length`` splits a batch into groups of similar
length first) and hands each result back to its caller's event loop with
``call_soon_threadsafe``. Torch never runs on the event loop, so the server keeps answering while a
batch computes. A full queue is a 429 with Retry-After; an exception in ``fn`` fails that batch's
callers with a 500 and the worker goes on with the next batch.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import torch

from .errors import APIError

log = logging.getLogger(__name__)


def length_groups(lengths: Sequence[int], slack: float = 0.2, min_size: int = 4) -> list[list[int]]:
    """Indices split into groups of similar length, shortest first, so each group pads little.

    One padded forward pass over a dynamic batch wastes work on padding (SST-2 sentences in a batch of
    32: about half the tokens); a new group starts when padding the next input in would cost more than
    ``slack`` of the group's real tokens, but never before a group holds ``min_size`` inputs (tiny
    groups waste the matmuls instead). 1.6x the sentences/s of one padded batch of 32 on MiniLM.
    """
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    groups: list[list[int]] = []
    cur: list[int] = []
    real = 0
    for i in order:
        n = max(1, lengths[i])
        if len(cur) >= min_size and n * (len(cur) + 1) > (1 + slack) * (real + n):
            groups.append(cur)
            cur, real = [], 0
        cur.append(i)
        real += n
    if cur:
        groups.append(cur)
    return groups


def by_length(fn: Callable[[list[Any]], Sequence[Any]], length: Callable[[Any], int]) -> Callable[[list[Any]], list[Any]]:
    """``fn`` run once per ``length_groups`` group; results back in the inputs' order."""

    def run(items: list[Any]) -> list[Any]:
        out: list[Any] = [None] * len(items)
        for group in length_groups([length(x) for x in items]):
            results = list(fn([items[i] for i in group]))
            if len(results) != len(group):
                raise RuntimeError(f"the batch function returned {len(results)} results for {len(group)} inputs")
            for i, r in zip(group, results):
                out[i] = r
        return out

    return run


class _Item:
    __slots__ = ("value", "future", "loop")

    def __init__(self, value: Any, future: asyncio.Future, loop: asyncio.AbstractEventLoop):
        self.value, self.future, self.loop = value, future, loop


def _resolve(future: asyncio.Future, result: Any = None, error: BaseException | None = None) -> None:
    """On the event loop: a caller that gave up (timeout, hang-up) has a cancelled future; skip it."""
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


class DynamicBatcher:
    """Gathers items for ``fn`` into batches of up to ``max_batch``; see the module docstring."""

    def __init__(self, fn: Callable[[list[Any]], Sequence[Any]], max_batch: int = 32, wait_ms: float = 5.0,
                 max_queue: int = 256, metrics=None, name: str = "model", incoming: Callable[[], int] | None = None):
        self.fn, self.name, self.metrics, self.incoming = fn, name, metrics, incoming
        self._requests = 0  # requests with items here (queued or computing)
        self.max_batch, self.wait, self.max_queue = max(1, max_batch), max(0.0, wait_ms) / 1000, max(1, max_queue)
        self.stats = {"batches": 0, "items": 0, "max_batch_seen": 0, "errors": 0}
        self._cv = threading.Condition()
        self._queue: deque[_Item] = deque()
        self._busy = 0  # items in the batch being computed
        self._thread: threading.Thread | None = None
        self._stopping = self._draining = False

    @property
    def queue_depth(self) -> int:
        return len(self._queue)

    @property
    def active(self) -> int:
        return self._busy

    def start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._stopping = False
            self._thread = threading.Thread(target=self._run, name=f"lmforge-batcher-{self.name}", daemon=True)
            self._thread.start()

    async def submit(self, value: Any) -> Any:
        return (await self.submit_many([value]))[0]

    async def submit_many(self, values: Sequence[Any]) -> list[Any]:
        """Results for ``values`` in order; all of a request's items are queued together or not at all."""
        if self._draining or self._stopping:
            raise APIError(503, f"model '{self.name}' is shutting down; retry shortly", type="server_error",
                           code="draining", headers={"Retry-After": "5"})
        if len(values) > self.max_queue:
            raise APIError(400, f"{len(values)} inputs in one request; model '{self.name}' takes at most "
                           f"{self.max_queue} (the server's max_queue): split the request", param="input")
        loop = asyncio.get_running_loop()
        items = [_Item(v, loop.create_future(), loop) for v in values]
        with self._cv:
            if len(self._queue) + len(items) > self.max_queue:
                raise APIError(429, f"model '{self.name}' has {len(self._queue)} inputs waiting; retry shortly",
                               type="rate_limit_error", code="queue_full", headers={"Retry-After": "1"})
            self._queue.extend(items)
            self._requests += 1
            self._cv.notify_all()
            depth = len(self._queue)
        self._metric("set_queue_depth", depth)
        self.start()
        try:
            return list(await asyncio.gather(*(it.future for it in items)))
        finally:  # timed out or hung up: items not yet run are skipped by the worker
            self._requests -= 1
            for it in items:
                it.future.cancel()

    async def drain(self, timeout: float | None = None) -> bool:
        """Refuse new work (503) and wait for what is queued or running; True when it all finished."""
        self._draining = True
        deadline = None if timeout is None else time.monotonic() + timeout
        while (self._queue or self._busy) and (deadline is None or time.monotonic() < deadline):
            await asyncio.sleep(0.01)
        return not (self._queue or self._busy)

    def stop(self) -> None:
        """Stop the worker; items still queued get a 503."""
        with self._cv:
            self._stopping = True
            left = list(self._queue)
            self._queue.clear()
            self._cv.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self._deliver(left, error=APIError(503, f"model '{self.name}' stopped before the request ran",
                                           type="server_error", code="shutdown"))

    # -- the worker thread ------------------------------------------------------------------------

    def _metric(self, name: str, *args) -> None:
        if self.metrics is not None:
            getattr(self.metrics, name)(self.name, *args)

    def _more_coming(self) -> bool:
        """Whether waiting can pay: the server has requests in flight that have not reached this batcher
        yet (being read, parsed, tokenized). With none (one client at a time), waiting only adds latency."""
        return self.incoming is None or self.incoming() > self._requests

    def _take(self) -> list[_Item] | None:
        """The next batch: wait for a first item, then up to ``wait`` seconds for more. None: stop."""
        with self._cv:
            while not self._stopping and not self._queue:
                self._cv.wait()
            if self._stopping:
                return None
            deadline = time.monotonic() + self.wait
            while not self._stopping and len(self._queue) < self.max_batch and self._more_coming():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cv.wait(left)
            batch = [self._queue.popleft() for _ in range(min(self.max_batch, len(self._queue)))]
            self._busy = len(batch)
            depth = len(self._queue)
        self._metric("set_queue_depth", depth)
        return batch

    def _run(self) -> None:
        with torch.inference_mode():
            while (batch := self._take()) is not None:
                live = [it for it in batch if not it.future.done()]  # (a read from another thread: at worst
                try:                                                # a just-cancelled item still runs)
                    if live:
                        self._compute(live)
                finally:
                    self._busy = 0

    def _compute(self, items: list[_Item]) -> None:
        try:
            results = list(self.fn([it.value for it in items]))
            if len(results) != len(items):
                raise RuntimeError(f"the batch function returned {len(results)} results for {len(items)} inputs")
        except Exception as err:  # a bug or out of memory: fail these callers, keep serving the rest
            log.exception("batch of %d failed for model %s", len(items), self.name)
            self.stats["errors"] += 1
            self._deliver(items, error=APIError(500, f"inference failed: {type(err).__name__}: {err}",
                                                type="server_error"))
            return
        self.stats["batches"] += 1
        self.stats["items"] += len(items)
        self.stats["max_batch_seen"] = max(self.stats["max_batch_seen"], len(items))
        self._metric("observe_batch", len(items))
        self._deliver(items, results)

    @staticmethod
    def _deliver(items: list[_Item], results: Sequence[Any] | None = None, error: BaseException | None = None) -> None:
        for k, it in enumerate(items):
            try:
                it.loop.call_soon_threadsafe(_resolve, it.future, None if results is None else results[k], error)
            except RuntimeError:  # that event loop is closed: nobody is waiting any more
                pass
