"""Continuous batching for decoder models: requests join and leave the running batch at every step.

One background thread owns the model. Each iteration it (1) drops rows whose request was cancelled,
(2) admits waiting requests: prefills their prompts together (left-padded, masked), samples each
row's first token and joins their KV rows into the running cache (``KVCache.join`` left-pads the
shorter side), (3) decodes one token for every running row in one forward pass and (4) removes
finished rows (``KVCache.select``) and the columns that became padding in every row
(``trim_front``). Each row is exactly what ``models.generate`` would compute for its prompt alone:
padding is masked and positions count from each row's first real token, so greedy output matches and
a seeded request (its own ``torch.Generator``) draws the same tokens whatever else is running.

Sampling reuses ``models.generate.sample_next`` row by row (per-request temperature, top-k/top-p,
repetition penalty, min_tokens) with one batched argmax for plain greedy rows. A request with ``n``
choices is prefilled once; its cache row is copied ``n`` times. Events reach asyncio through
``loop.call_soon_threadsafe``. Recurrent models (``model.recurrent``, models/rnn.py) have no
positions to pad, so they are served one request at a time (its ``n`` rows still decode together).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque

import torch

from ..models.generate import SamplingConfig, sample_next
from .errors import APIError
from .requests import Event, RequestHandle, SamplingParams
from .stops import TextStream

__all__ = ["Event", "GenerationEngine", "RequestHandle", "SamplingParams"]

log = logging.getLogger(__name__)


def _put_all(items: list[tuple[RequestHandle, list[Event]]]) -> None:
    for handle, evs in items:
        handle._queue.put_nowait(evs)


class _Row:
    """One sequence in the running batch."""

    def __init__(self, handle: RequestHandle, index: int, eos: int | None, decode):
        p = handle.params
        self.handle, self.index, self.params = handle, index, p
        stop_ids = [] if p.ignore_eos else list(dict.fromkeys(([eos] if eos is not None else []) + p.stop_token_ids))
        self.stop_ids = set(stop_ids)
        self.extra_stop_ids = stop_ids[1:]  # sample_next bans the first one itself while min_tokens runs
        self.cfg = SamplingConfig(max_new_tokens=p.max_tokens, temperature=p.temperature,
                                  top_k=p.top_k if p.top_k and p.top_k > 0 else None,
                                  top_p=p.top_p if p.top_p < 1 else None, repetition_penalty=p.repetition_penalty,
                                  eos_token_id=stop_ids[0] if stop_ids else None, min_new_tokens=p.min_tokens)
        self.gen = torch.Generator(device="cpu")
        if p.seed is None:
            self.gen.seed()
        else:
            self.gen.manual_seed(p.seed + index)  # choice 0 draws what an n=1 request with this seed draws
        self.ids = list(handle.prompt_ids)  # prompt + generated (repetition penalty)
        self.prompt_len = self.real = len(handle.prompt_ids)  # real = tokens in the cache for this row
        self.generated = 0
        self.pending: int | None = None  # sampled, not yet fed to the model
        self.text = TextStream(lambda ids: decode(ids, p.skip_special_tokens), p.stop)
        self.done = False

    def plain_greedy(self) -> bool:
        return (self.cfg.temperature <= 0 and self.cfg.repetition_penalty == 1.0
                and (not self.stop_ids or self.generated >= self.cfg.min_new_tokens))


class GenerationEngine:
    """Continuous batching over one decoder model; see the module docstring."""

    def __init__(self, model, tok, context: int | None = None, eos_token_id: int | None = None, max_batch: int = 8,
                 max_queue: int = 256, metrics=None, name: str = "model"):
        self.model, self.tok, self.name, self.metrics = model.eval(), tok, name, metrics
        self.recurrent = bool(getattr(model, "recurrent", False))
        block = model.config.block_size
        self.context = 0 if self.recurrent else min(context or block, block)  # 0: no limit
        self.eos_token_id = eos_token_id
        self.max_batch, self.max_queue = max(1, max_batch), max_queue
        self.device = next(model.parameters()).device
        self.stats = {"steps": 0, "max_batch_seen": 0, "mid_flight_joins": 0, "admitted": 0, "tokens": 0}
        self._cv = threading.Condition()
        self._waiting: deque[RequestHandle] = deque()
        self._rows: list[_Row] = []
        self._admitting = 0
        self._cache = None
        self._thread: threading.Thread | None = None
        self._stopping = self._draining = False

    # -- the asyncio side ---------------------------------------------------------------------

    @property
    def queue_depth(self) -> int:
        return len(self._waiting)

    @property
    def active(self) -> int:
        """Requests being prefilled or decoded now."""
        return len({id(r.handle) for r in self._rows}) + self._admitting

    def start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._stopping = False
            self._thread = threading.Thread(target=self._run, name=f"lmforge-engine-{self.name}", daemon=True)
            self._thread.start()

    def submit(self, prompt_ids: list[int], params: SamplingParams) -> RequestHandle:
        """Queue a request (call from the event loop); 429 with Retry-After when the queue is full."""
        if self._draining or self._stopping:
            raise APIError(503, f"model '{self.name}' is shutting down; retry shortly", type="server_error",
                           code="draining", headers={"Retry-After": "5"})
        if not prompt_ids:
            raise APIError(400, "the prompt is empty; give at least one token", param="prompt")
        V = self.model.config.vocab_size
        if any(not isinstance(t, int) or not 0 <= t < V for t in prompt_ids):
            raise APIError(400, f"token ids must be integers in [0, {V})", param="prompt")
        if self.context and len(prompt_ids) > self.context:
            raise APIError(400, f"This model's maximum context length is {self.context} tokens. However, your prompt "
                           f"has {len(prompt_ids)} tokens. Please reduce the length of the prompt.", param="prompt")
        if not 1 <= params.n <= self.max_batch:
            raise APIError(400, f"n must be between 1 and {self.max_batch} for model '{self.name}'", param="n")
        handle = RequestHandle(list(prompt_ids), params, asyncio.get_running_loop(), self._cv)
        with self._cv:
            if len(self._waiting) >= self.max_queue:
                raise APIError(429, f"model '{self.name}' has {len(self._waiting)} requests waiting; retry shortly",
                               type="rate_limit_error", code="queue_full", headers={"Retry-After": "1"})
            self._waiting.append(handle)
            self._cv.notify_all()
        self._metric("set_queue_depth", len(self._waiting))
        self.start()
        return handle

    async def drain(self, timeout: float | None = None) -> bool:
        """Refuse new requests (503) and wait for those in flight; True when all finished in time."""
        self._draining = True
        deadline = None if timeout is None else time.monotonic() + timeout
        while (self.queue_depth or self.active) and (deadline is None or time.monotonic() < deadline):
            await asyncio.sleep(0.02)
        return not (self.queue_depth or self.active)

    def stop(self) -> None:
        """Stop the decode thread; requests still in flight get a 503 error."""
        with self._cv:
            self._stopping = True
            self._cv.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self._fail_all(APIError(503, f"model '{self.name}' stopped before the request finished", type="server_error",
                                code="shutdown"))

    # -- the decode thread ----------------------------------------------------------------------

    def _metric(self, name: str, *args) -> None:
        if self.metrics is not None:
            getattr(self.metrics, name)(self.name, *args)

    def _run(self) -> None:
        with torch.no_grad():
            while True:
                with self._cv:
                    while not self._stopping and not self._waiting and not self._rows:
                        self._cv.wait()
                    if self._stopping:
                        return
                    admit = self._take()
                    self._admitting = len(admit)
                try:
                    self._drop_cancelled()
                    if admit:
                        self._admit(admit)
                    self._admitting = 0
                    if self._rows:
                        self._step()
                except Exception as err:  # a bug or out of memory: fail what is in flight, keep serving
                    log.exception("generation step failed for model %s", self.name)
                    self._admitting = 0
                    self._fail_all(APIError(500, f"generation failed: {type(err).__name__}: {err}",
                                            type="server_error"), waiting=False, admit=admit)

    def _take(self) -> list[RequestHandle]:
        """Waiting requests that fit in the batch now (a recurrent model: one, when nothing runs)."""
        free = (0 if self._rows else self.max_batch) if self.recurrent else self.max_batch - len(self._rows)
        out: list[RequestHandle] = []
        while self._waiting and free > 0:
            h = self._waiting[0]
            if h.cancelled:
                self._waiting.popleft()
                continue
            if (self.recurrent and out) or h.params.n > free:
                break
            out.append(self._waiting.popleft())
            free -= h.params.n
        if out:
            self._metric("set_queue_depth", len(self._waiting))
        return out

    def _decode(self, ids: list[int], skip_special_tokens: bool) -> str:
        return self.tok.decode(ids, skip_special_tokens=skip_special_tokens)

    def _admit(self, handles: list[RequestHandle]) -> None:
        """Prefill the newcomers together, sample their first tokens, join their rows to the batch."""
        lens = [len(h.prompt_ids) for h in handles]
        Lp = max(lens)
        ids = torch.tensor([[0] * (Lp - n) + h.prompt_ids for h, n in zip(handles, lens)], device=self.device)
        keep = torch.arange(Lp, device=self.device)[None, :] >= torch.tensor([Lp - n for n in lens],
                                                                             device=self.device)[:, None]
        cache = self.model.new_cache()
        logits = self.model(ids, cache=cache, attention_mask=None if min(lens) == Lp else keep)[0][:, -1]
        which = [i for i, h in enumerate(handles) for _ in range(h.params.n)]
        rows = [_Row(h, j, self.eos_token_id, self._decode) for h in handles for j in range(h.params.n)]
        if len(which) > len(handles):
            sel = torch.tensor(which, device=self.device)
            logits = logits[sel]
            cache.select(sel)
        events = self._sample(rows, logits)
        now = time.monotonic()
        for h in handles:
            self._metric("observe_ttft", now - h.created)
        self.stats["admitted"] += len(handles)
        if self._rows:
            self.stats["mid_flight_joins"] += len(handles)
        live = [k for k, r in enumerate(rows) if not r.done]
        if not live:
            self._admitting = 0
            self._deliver(events)
            return
        if len(live) < len(rows):
            cache.select(torch.tensor(live, device=self.device))
        if self.recurrent:
            self._cache = cache
        else:
            if self._cache is None:
                self._cache = self.model.new_cache(max_len=self.model.config.block_size)
            self._cache.join(cache)
        self._rows = self._rows + [rows[k] for k in live]
        self._admitting = 0
        self._deliver(events)

    def _step(self) -> None:
        """One token for every running row, in one forward pass."""
        rows = self._rows
        x = torch.tensor([[r.pending] for r in rows], device=self.device)
        mask = None
        if not self.recurrent:
            L = self._cache.length
            pads = [L - r.real for r in rows]
            if any(pads):
                mask = torch.arange(L + 1, device=self.device)[None, :] >= torch.tensor(pads, device=self.device)[:, None]
        logits = self.model(x, cache=self._cache, attention_mask=mask)[0][:, -1]
        for r in rows:
            r.real += 1
        self.stats["steps"] += 1
        self.stats["max_batch_seen"] = max(self.stats["max_batch_seen"], len(rows))
        self._metric("observe_batch", len(rows))
        events = self._sample(rows, logits)
        self._keep([b for b, r in enumerate(rows) if not r.done])
        self._deliver(events)

    def _drop_cancelled(self) -> None:
        if any(r.handle.cancelled for r in self._rows):
            self._keep([b for b, r in enumerate(self._rows) if not r.handle.cancelled])

    def _keep(self, live: list[int]) -> None:
        """Keep batch rows ``live``; drop the columns that are now padding in every row."""
        if len(live) == len(self._rows):
            return
        self._rows = [self._rows[b] for b in live]
        if not self._rows:
            self._cache = None
            return
        self._cache.select(torch.tensor(live, device=self.device))
        if not self.recurrent:
            self._cache.trim_front(self._cache.length - max(r.real for r in self._rows))

    def _sample(self, rows: list[_Row], logits: torch.Tensor) -> list[tuple[RequestHandle, list[Event]]]:
        """Next token per row (B, V logits): the events per request; finished rows are marked ``done``
        (the caller delivers after removing them, so a finished request is never counted ``active``)."""
        logits = logits.float()
        want = [b for b, r in enumerate(rows) if r.params.logprobs is not None]
        logprobs = dict(zip(want, logits[want].log_softmax(-1))) if want else {}
        tokens: list[int] = [0] * len(rows)
        greedy = [b for b, r in enumerate(rows) if r.plain_greedy()]
        if greedy:
            for b, t in zip(greedy, logits[greedy].argmax(-1).tolist()):
                tokens[b] = t
        for b, r in enumerate(rows):
            if b in greedy:
                continue
            row = logits[b:b + 1]
            if r.extra_stop_ids and r.generated < r.cfg.min_new_tokens:
                row = row.index_fill(-1, torch.tensor(r.extra_stop_ids, device=row.device), float("-inf"))
            seen = torch.tensor([r.ids], device=row.device) if r.cfg.repetition_penalty != 1.0 else None
            tokens[b] = int(sample_next(row, r.cfg, r.gen, seen, step=r.generated)[0])
        out: dict[int, tuple[RequestHandle, list[Event]]] = {}
        for b, (r, t) in enumerate(zip(rows, tokens)):
            events = out.setdefault(id(r.handle), (r.handle, []))[1]
            r.generated += 1
            r.handle.completion_tokens[r.index] += 1
            if t in r.stop_ids:
                r.done = True
                events.append(Event(r.index, None, r.text.finish(), finish_reason="stop"))
                continue
            lp = top = None
            if b in logprobs:
                lp = float(logprobs[b][t])
                k = r.params.logprobs
                if k:
                    v, i = logprobs[b].topk(min(k, logprobs[b].numel()))
                    top = list(zip(i.tolist(), v.tolist()))
            r.ids.append(t)
            r.pending = t
            events.append(Event(r.index, t, r.text.add(t), lp, top))
            if r.text.stopped:
                r.done = True
                events.append(Event(r.index, None, "", finish_reason="stop"))
            elif r.generated >= r.params.max_tokens or (self.context and r.prompt_len + r.generated > self.context):
                r.done = True
                rest = r.text.finish()
                events.append(Event(r.index, None, rest, finish_reason="stop" if r.text.stopped else "length"))
        self.stats["tokens"] += len(rows)
        self._metric("add_tokens", len(rows))
        return list(out.values())

    @staticmethod
    def _deliver(events: list[tuple[RequestHandle, list[Event]]]) -> None:
        """One wake-up per event loop per step, however many requests it serves (fewer syscalls)."""
        by_loop: dict[int, tuple] = {}
        for handle, evs in events:
            if not handle.cancelled:  # (a cancelled handle's consumer has stopped listening)
                by_loop.setdefault(id(handle._loop), (handle._loop, []))[1].append((handle, evs))
        for loop, items in by_loop.values():
            try:
                loop.call_soon_threadsafe(_put_all, items)
            except RuntimeError:  # the loop is closed: nobody is listening any more
                for handle, _ in items:
                    handle.cancelled = True

    def _fail_all(self, err: APIError, waiting: bool = True, admit: list[RequestHandle] = ()) -> None:
        handles = {id(r.handle): r.handle for r in self._rows}
        handles.update({id(h): h for h in admit})
        if waiting:
            with self._cv:
                handles.update({id(h): h for h in self._waiting})
                self._waiting.clear()
        self._rows, self._cache = [], None
        for h in handles.values():
            h._deliver(err)
