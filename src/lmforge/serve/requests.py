"""What a request is on both sides of the engine: its sampling parameters, the events it streams, and
the handle asyncio iterates (events arrive from the decode thread via ``loop.call_soon_threadsafe``)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from dataclasses import dataclass, field


@dataclass
class SamplingParams:
    """One request's sampling, OpenAI/vLLM names. ``logprobs``: None = none, k = the chosen token's
    logprob plus the top k (0 = only the chosen one)."""

    max_tokens: int = 16
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = -1  # <= 0: off
    seed: int | None = None
    repetition_penalty: float = 1.0
    min_tokens: int = 0
    ignore_eos: bool = False
    stop: list[str] = field(default_factory=list)
    stop_token_ids: list[int] = field(default_factory=list)
    logprobs: int | None = None
    n: int = 1
    skip_special_tokens: bool = True


@dataclass
class Event:
    """A new token of choice ``index`` (``token`` None on a row's last event, which has ``finish_reason``)."""

    index: int
    token: int | None
    text: str
    logprob: float | None = None
    top_logprobs: list[tuple[int, float]] | None = None
    finish_reason: str | None = None  # "stop" | "length"


_CANCELLED = object()  # put in a handle's queue by cancel(): iteration ends


def _on_loop(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


class RequestHandle:
    """An async iterator over a request's events; ``cancel()`` frees its rows at the next step."""

    def __init__(self, prompt_ids: list[int], params: SamplingParams, loop: asyncio.AbstractEventLoop,
                 wake: threading.Condition):
        self.prompt_ids, self.params = prompt_ids, params
        self.created = time.monotonic()
        self.cancelled = False
        self.completion_tokens = [0] * params.n  # sampled tokens per choice (EOS included, as vLLM counts)
        self._loop, self._wake = loop, wake
        self._queue: asyncio.Queue = asyncio.Queue()
        self._buffer: deque[Event] = deque()
        self._open = params.n

    @property
    def prompt_tokens(self) -> int:
        return len(self.prompt_ids)

    def cancel(self) -> None:
        """Free this request's rows at the next step; a consumer still iterating sees the end."""
        if self.cancelled:
            return
        self.cancelled = True
        self._queue.put_nowait(_CANCELLED) if _on_loop(self._loop) else self._deliver(_CANCELLED)
        with self._wake:
            self._wake.notify_all()

    def _deliver(self, item) -> None:
        try:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, item)
        except RuntimeError:  # the loop is closed: nobody is listening any more
            self.cancelled = True

    def __aiter__(self) -> RequestHandle:
        return self

    async def __anext__(self) -> Event:
        while not self._buffer:
            if self._open <= 0:
                raise StopAsyncIteration
            item = await self._queue.get()
            if item is _CANCELLED:
                self._open = 0
                raise StopAsyncIteration
            if isinstance(item, BaseException):
                self._open = 0
                raise item
            self._buffer.extend(item)
        ev = self._buffer.popleft()
        if ev.finish_reason is not None:
            self._open -= 1
        return ev
