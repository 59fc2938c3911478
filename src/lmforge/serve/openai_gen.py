"""POST /v1/completions and /v1/chat/completions over the continuous-batching engine, OpenAI-compatible.

Each prompt becomes one engine request with ``n`` rows; events from several prompts are merged as
they come. Streaming is server-sent events (``data: {json}`` ... ``data: [DONE]``); a client that goes
away cancels its requests, so their batch rows are freed at the next step. Client mistakes are 400s
(``openai_schemas`` validates the bodies); the request timeout (``settings.request_timeout``)
cancels the work and answers 408 (or, mid-stream, an error event) instead of hanging.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import torch
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse

from ..errors import LmforgeError
from .engine import Event, RequestHandle, SamplingParams
from .errors import APIError
from .openai_schemas import (POST_ERRORS, ChatCompletion, ChatRequest, Completion, CompletionRequest, _Sampling,
                             errors, event_stream)
from .registry import ServedModel, get_model

router = APIRouter()


# -- shared -----------------------------------------------------------------------------------


def _setting(request: Request, name: str, default: Any = None) -> Any:
    return getattr(getattr(request.app.state, "settings", None), name, default)


def _served(request: Request, name: str) -> ServedModel:
    m = get_model(getattr(request.app.state, "models", {}), name, kinds=("decoder", "chat"))
    if m.engine is None:
        raise APIError(400, f"model '{name}' has no generation engine", param="model")
    return m


def _context(m: ServedModel) -> int:
    return m.context or getattr(m.engine, "context", 0)


def _max_tokens(requested: int | None, prompt_len: int, context: int, default: int | None, what: str) -> int:
    """vLLM's rule: prompt + max_tokens must fit the context. Unset, it is the server's default
    (``settings.max_tokens_default``; else 16 for completions, as OpenAI, and what is left for chat),
    cut to what the context leaves."""
    if requested is not None:
        if context and prompt_len + requested > context:
            raise APIError(400, f"This model's maximum context length is {context} tokens. However, you requested "
                           f"{prompt_len + requested} tokens ({prompt_len} in the {what}, {requested} in the "
                           f"completion). Please reduce the length of the {what} or completion.", param="max_tokens")
        return requested
    m = default or (16 if what == "prompt" or not context else context - prompt_len)
    if context:
        m = min(m, context - prompt_len)
        if m < 1:
            raise APIError(400, f"This model's maximum context length is {context} tokens. However, your {what} "
                           f"has {prompt_len} tokens, leaving no room for a completion. Please reduce the length "
                           f"of the {what}.", param="messages" if what == "messages" else "prompt")
    return m


# Temperatures below this are greedy (vLLM's rule): dividing the logits by a tinier one overflows to inf.
GREEDY_BELOW = 1e-5


def _params(body: _Sampling, max_tokens: int, logprobs: int | None, stop_ids: list[int] = ()) -> SamplingParams:
    rp, t = body.repetition_penalty, 1.0 if body.temperature is None else body.temperature
    return SamplingParams(max_tokens=max_tokens, temperature=0.0 if t < GREEDY_BELOW else t,
                          top_p=1.0 if body.top_p is None else body.top_p, top_k=body.top_k or -1, seed=body.seed,
                          repetition_penalty=1.0 if rp is None else rp, min_tokens=body.min_tokens,
                          ignore_eos=body.ignore_eos, stop=body.stops(), stop_token_ids=list(stop_ids),
                          logprobs=logprobs, n=body.n, skip_special_tokens=body.skip_special_tokens)


async def _events(handles: list[RequestHandle]) -> AsyncIterator[tuple[int, Event]]:
    """``(prompt index, event)`` from every handle, in arrival order."""
    if len(handles) == 1:
        async for ev in handles[0]:
            yield 0, ev
        return
    queue: asyncio.Queue = asyncio.Queue()

    async def pump(k: int, h: RequestHandle) -> None:
        try:
            async for ev in h:
                queue.put_nowait((k, ev))
            queue.put_nowait((k, None))
        except Exception as err:  # noqa: BLE001  (an engine error reaches the request that waits for it)
            queue.put_nowait((k, err))

    tasks = [asyncio.create_task(pump(k, h)) for k, h in enumerate(handles)]
    try:
        left = len(handles)
        while left:
            k, ev = await queue.get()
            if ev is None:
                left -= 1
            elif isinstance(ev, Exception):
                raise ev
            else:
                yield k, ev
    finally:
        for t in tasks:
            t.cancel()


def _timeout_error(seconds: float) -> APIError:
    return APIError(408, f"the request did not finish within the server's request timeout ({seconds:g} s); "
                    "ask for fewer tokens (max_tokens) or retry later", type="timeout_error", code="request_timeout")


async def _watch_disconnect(request: Request, handles: list[RequestHandle]) -> None:
    """Non-streaming requests: a client that hung up frees its rows instead of decoding for nobody."""
    while True:
        await asyncio.sleep(0.25)
        if await request.is_disconnected():
            for h in handles:
                h.cancel()
            return


def _sse(obj: Any) -> str:
    return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n"


def _usage(handles: list[RequestHandle]) -> dict[str, int]:
    p = sum(h.prompt_tokens for h in handles)
    c = sum(sum(h.completion_tokens) for h in handles)
    return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}


def _submit(m: ServedModel, prompts: list[list[int]], params: list[SamplingParams]) -> list[RequestHandle]:
    handles: list[RequestHandle] = []
    try:
        for ids, p in zip(prompts, params):
            handles.append(m.engine.submit(ids, p))
    except BaseException:
        for h in handles:
            h.cancel()
        raise
    return handles


class _Choice:
    """What one choice has produced so far."""

    def __init__(self) -> None:
        self.text, self.finish, self.tokens = "", None, []  # tokens: (id, logprob, top [(id, lp)])

    def add(self, ev: Event) -> None:
        self.text += ev.text
        if ev.token is not None and ev.logprob is not None:
            self.tokens.append((ev.token, ev.logprob, ev.top_logprobs or []))
        if ev.finish_reason is not None:
            self.finish = ev.finish_reason


async def _stream(request: Request, handles: list[RequestHandle], chunk, first: list[dict] = (),
                  usage_chunk=None) -> StreamingResponse:
    """SSE: the ``first`` chunks, then ``chunk(k, ev)`` (dict or None) per event, then ``usage_chunk()``."""
    timeout = _setting(request, "request_timeout")

    async def body() -> AsyncIterator[str]:
        try:
            for c in first:
                yield _sse(c)
            async with asyncio.timeout(timeout):
                async for k, ev in _events(handles):
                    c = chunk(k, ev)
                    if c is not None:
                        yield _sse(c)
            if usage_chunk is not None:
                yield _sse(usage_chunk())
        except TimeoutError:
            yield _sse(_timeout_error(timeout).body())
        except APIError as err:
            yield _sse(err.body())
        finally:  # finished, timed out, or the client went away (Starlette cancels this generator)
            for h in handles:
                h.cancel()
        yield "data: [DONE]\n\n"

    return StreamingResponse(body(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


async def _collect(request: Request, handles: list[RequestHandle], choices: dict[tuple[int, int], _Choice]) -> None:
    timeout = _setting(request, "request_timeout")
    watcher = asyncio.create_task(_watch_disconnect(request, handles))
    try:
        async with asyncio.timeout(timeout):
            async for k, ev in _events(handles):
                choices[(k, ev.index)].add(ev)
    except TimeoutError:
        raise _timeout_error(timeout) from None
    finally:
        watcher.cancel()
        for h in handles:
            h.cancel()


def _token_str(tok, i: int) -> str:
    return tok.decode([i])


# -- /v1/completions --------------------------------------------------------------------------


def _legacy_logprobs(tok, entries: list[tuple[int, float | None, list]], offset: int) -> dict:
    tokens, lps, tops, offsets = [], [], [], []
    for i, lp, top in entries:
        s = _token_str(tok, i)
        tokens.append(s)
        lps.append(lp)
        tops.append(None if top is None else {_token_str(tok, t): v for t, v in top})
        offsets.append(offset)
        offset += len(s)
    return {"tokens": tokens, "token_logprobs": lps, "top_logprobs": tops, "text_offset": offsets}


@torch.no_grad()
def _prompt_logprobs(model, ids: list[int], k: int) -> list[tuple[int, float | None, list | None]]:
    """Echo with logprobs: each prompt token's logprob given the ones before it (the first has none)."""
    device = next(model.parameters()).device
    logits = model(torch.tensor([ids], device=device))[0][0].float().log_softmax(-1)
    out: list = [(ids[0], None, None)]
    for pos in range(1, len(ids)):
        row = logits[pos - 1]
        v, i = row.topk(min(k, row.numel())) if k else (row[:0], row[:0].long())
        out.append((ids[pos], float(row[ids[pos]]), list(zip(i.tolist(), v.tolist()))))
    return out


@router.post("/v1/completions", response_model=None, responses={
    200: {"model": Completion, "description": "The completion; with `stream: true`, server-sent events",
          "content": event_stream("CompletionChunk")}, **errors(*POST_ERRORS)})
async def completions(body: CompletionRequest, request: Request):
    m = _served(request, body.model)
    body.unsupported()
    try:
        prompts = [m.tok.encode(p) if isinstance(p, str) else list(p) for p in body.prompts()]
    except LmforgeError as err:
        raise APIError(400, str(err), param="prompt") from None
    context, default = _context(m), _setting(request, "max_tokens_default")
    if any(len(p) == 0 for p in prompts):
        raise APIError(400, "a prompt encodes to no tokens; give some text or token ids", param="prompt")
    params = [_params(body, _max_tokens(body.max_tokens, len(p), context, default, "prompt"), body.logprobs)
              for p in prompts]
    handles = _submit(m, prompts, params)
    rid, created, n, tok = f"cmpl-{uuid.uuid4().hex}", int(time.time()), body.n, m.tok
    echo_text = [tok.decode(p) if body.echo else "" for p in prompts]

    def head(**kw) -> dict:
        return {"id": rid, "object": "text_completion", "created": created, "model": body.model, **kw}

    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        offsets: dict[tuple[int, int], int] = {}
        echoed: set[tuple[int, int]] = set()

        def chunk(k: int, ev: Event) -> dict | None:
            key = (k, ev.index)
            text = ev.text
            if body.echo and key not in echoed:
                echoed.add(key)
                text = echo_text[k] + text
            lp = None
            if body.logprobs is not None and ev.token is not None:
                lp = _legacy_logprobs(tok, [(ev.token, ev.logprob, ev.top_logprobs or [])], offsets.get(key, 0))
                offsets[key] = offsets.get(key, 0) + len(_token_str(tok, ev.token))
            if not text and lp is None and ev.finish_reason is None:
                return None
            c = head(choices=[{"index": k * n + ev.index, "text": text, "logprobs": lp,
                               "finish_reason": ev.finish_reason}])
            return {**c, "usage": None} if include_usage else c

        return await _stream(request, handles, chunk,
                             usage_chunk=(lambda: head(choices=[], usage=_usage(handles))) if include_usage else None)

    choices = {(k, j): _Choice() for k in range(len(prompts)) for j in range(n)}
    await _collect(request, handles, choices)
    echo_lps = None
    if body.echo and body.logprobs is not None:
        echo_lps = [await asyncio.to_thread(_prompt_logprobs, m.model, p, body.logprobs) for p in prompts]
    out = []
    for (k, j), c in sorted(choices.items()):
        lp = None
        if body.logprobs is not None:
            entries = (echo_lps[k] if echo_lps else []) + c.tokens
            lp = _legacy_logprobs(tok, entries, 0)
        out.append({"index": k * n + j, "text": echo_text[k] + c.text, "logprobs": lp, "finish_reason": c.finish})
    return JSONResponse(head(choices=out, usage=_usage(handles)))


# -- /v1/chat/completions ---------------------------------------------------------------------


def _chat_prompt(m: ServedModel, body: ChatRequest) -> tuple[list[int], list[int], list[str]]:
    """Prompt ids (the conversation + the assistant header), stop token ids and stop strings."""
    from ..tokenizer.chat import prompt

    template = m.chat_template
    if template is None:
        raise APIError(400, f"model '{body.model}' has no chat template (no chat_template.json beside its "
                       "tokenizer), so /v1/chat/completions cannot format messages for it; use /v1/completions, "
                       "or fine-tune it with finetune.task.kind: chat", param="model", code="no_chat_template")
    messages = [{"role": msg.role, "content": msg.text(i)} for i, msg in enumerate(body.messages)]
    try:
        ids = prompt(m.tok, template, messages)
    except LmforgeError as err:
        raise APIError(400, str(err), param="messages") from None
    added = {t.content: i for i, t in m.tok.hf.get_added_tokens_decoder().items()}
    stop_ids = [added[s] for s in template.stop_strings if s in added]
    if m.tok.eos_id is not None:
        stop_ids.append(m.tok.eos_id)
    return ids, list(dict.fromkeys(stop_ids)), list(template.stop_strings)


def _chat_logprob(tok, token: int, lp: float, top: list) -> dict:
    s = _token_str(tok, token)
    return {"token": s, "logprob": lp, "bytes": list(s.encode("utf-8")),
            "top_logprobs": [{"token": (t := _token_str(tok, i)), "logprob": v, "bytes": list(t.encode("utf-8"))}
                             for i, v in top]}


@router.post("/v1/chat/completions", response_model=None, responses={
    200: {"model": ChatCompletion, "description": "The reply; with `stream: true`, server-sent events",
          "content": event_stream("ChatCompletionChunk")}, **errors(*POST_ERRORS)})
async def chat_completions(body: ChatRequest, request: Request):
    m = _served(request, body.model)
    body.unsupported()
    ids, stop_ids, template_stops = _chat_prompt(m, body)
    requested = body.max_completion_tokens if body.max_completion_tokens is not None else body.max_tokens
    max_tokens = _max_tokens(requested, len(ids), _context(m), _setting(request, "max_tokens_default"), "messages")
    k = (body.top_logprobs or 0) if body.logprobs else None
    params = _params(body, max_tokens, k, stop_ids)
    params.stop = list(dict.fromkeys(params.stop + [s for s in template_stops if s not in m.tok.special_tokens]))
    handles = _submit(m, [ids], [params])
    rid, created, tok = f"chatcmpl-{uuid.uuid4().hex}", int(time.time()), m.tok

    def head(**kw) -> dict:
        return {"id": rid, "object": "chat.completion.chunk" if body.stream else "chat.completion",
                "created": created, "model": body.model, **kw}

    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)

        def choice(i: int, delta: dict, lp=None, finish=None) -> dict:
            c = head(choices=[{"index": i, "delta": delta, "logprobs": lp, "finish_reason": finish}])
            return {**c, "usage": None} if include_usage else c

        def chunk(_k: int, ev: Event) -> dict | None:
            lp = None
            if k is not None and ev.token is not None:
                lp = {"content": [_chat_logprob(tok, ev.token, ev.logprob, ev.top_logprobs or [])]}
            if ev.finish_reason is not None:
                return choice(ev.index, {"content": ev.text} if ev.text else {}, lp, ev.finish_reason)
            if not ev.text and lp is None:
                return None
            return choice(ev.index, {"content": ev.text}, lp)

        roles = [choice(i, {"role": "assistant", "content": ""}) for i in range(body.n)]
        return await _stream(request, handles, chunk, first=roles,
                             usage_chunk=(lambda: head(choices=[], usage=_usage(handles))) if include_usage else None)

    choices = {(0, j): _Choice() for j in range(body.n)}
    await _collect(request, handles, choices)
    out = []
    for (_, j), c in sorted(choices.items()):
        lp = {"content": [_chat_logprob(tok, t, v, top) for t, v, top in c.tokens]} if k is not None else None
        out.append({"index": j, "message": {"role": "assistant", "content": c.text}, "logprobs": lp,
                    "finish_reason": c.finish})
    return JSONResponse(head(choices=out, usage=_usage(handles)))
