"""The OpenAI generation endpoints, mounted in a small FastAPI app with the APIError handler, through
httpx's ASGI transport (and a live uvicorn server for a client that hangs up mid-stream)."""

import asyncio
import json
import socket
import threading
import time
from types import SimpleNamespace

import httpx
import pytest
import torch
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from lmforge.models.generate import SamplingConfig, generate
from lmforge.serve.engine import GenerationEngine
from lmforge.serve.errors import APIError
from lmforge.serve.openai_gen import router
from lmforge.serve.registry import ServedModel

from .conftest import tiny_gpt


def make_app(models: dict, **settings) -> FastAPI:
    """What the app shell does for these routes: models and settings on app.state, the two handlers."""
    app = FastAPI()
    app.state.models = models
    app.state.settings = SimpleNamespace(**{"request_timeout": None, "max_tokens_default": None, **settings})

    @app.exception_handler(APIError)
    async def api_error(_request, e: APIError):
        return JSONResponse(e.body(), status_code=e.status, headers=e.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(_request, e: RequestValidationError):
        err = e.errors()[0]
        where = ".".join(str(x) for x in err["loc"][1:])
        return JSONResponse(APIError(400, f"{where}: {err['msg']}", param=where).body(), status_code=400)

    app.include_router(router)
    return app


def served(name, model, tok, kind="decoder", template=None, **kw) -> ServedModel:
    engine = GenerationEngine(model, tok, context=model.config.block_size, eos_token_id=tok.eos_id, name=name, **kw)
    engine.start()
    return ServedModel(name=name, path=None, kind=kind, model=model, tok=tok, context=model.config.block_size,
                       chat_template=template, engine=engine)


@pytest.fixture(scope="module")
def models(decoder, chat):
    (dmodel, dtok), (cmodel, ctok) = decoder, chat
    slow = tiny_gpt(dtok.vocab_size, block_size=320, seed=2)  # long generations, for timeouts and hang-ups
    out = {"tiny": served("tiny", dmodel, dtok), "tiny-chat": served("tiny-chat", cmodel, ctok, "chat", ctok._chat_template),
           "slow": served("slow", slow, dtok)}
    yield out
    for m in out.values():
        m.engine.stop()


def call(app, method, path, **kw):
    async def go():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
            return await client.request(method, path, **kw)
    return asyncio.run(go())


def sse(response) -> list:
    """The ``data:`` payloads of a server-sent event stream (JSON, or the string "[DONE]")."""
    assert response.headers["content-type"].startswith("text/event-stream")
    out = []
    for block in response.text.split("\n\n"):
        if block.strip():
            assert block.startswith("data: "), block
            data = block[len("data: "):]
            out.append(data if data == "[DONE]" else json.loads(data))
    return out


def text_of(tok, ids) -> str:
    """What a completion shows for ``ids``: special tokens skipped, an unfinished last character dropped."""
    return tok.decode(ids, skip_special_tokens=True).rstrip("\ufffd")


def greedy(model, ids, n, **kw):
    return generate(model, ids, SamplingConfig(max_new_tokens=n, temperature=0, top_k=None, **kw))


def test_completions_text_usage_choices_and_prompt_shapes(models, decoder):
    model, tok = decoder
    app = make_app(models)
    r = call(app, "POST", "/v1/completions", json={"model": "tiny", "prompt": "Hello there", "max_tokens": 8,
                                                   "temperature": 0, "ignore_eos": True, "whatever": 1})
    assert r.status_code == 200, r.text
    body = r.json()
    ids = tok.encode("Hello there")
    want = greedy(model, ids, 8)
    assert body["object"] == "text_completion" and body["model"] == "tiny" and body["id"].startswith("cmpl-")
    assert body["choices"] == [{"index": 0, "text": text_of(tok, want), "logprobs": None,
                                "finish_reason": "length"}]
    assert body["usage"] == {"prompt_tokens": len(ids), "completion_tokens": 8, "total_tokens": len(ids) + 8}
    # several prompts (text and token ids), n choices each, seeded: indices prompt * n + choice
    r = call(app, "POST", "/v1/completions", json={"model": "tiny", "prompt": [[5, 6, 7], [9, 10]], "n": 2, "seed": 3,
                                                   "max_tokens": 6, "top_k": 30, "ignore_eos": True})
    choices = r.json()["choices"]
    assert [c["index"] for c in choices] == [0, 1, 2, 3]
    first = generate(model, [5, 6, 7], SamplingConfig(max_new_tokens=6, temperature=1.0, top_k=30, seed=3))
    assert choices[0]["text"] == text_of(tok, first) and r.json()["usage"]["prompt_tokens"] == 5
    r = call(app, "POST", "/v1/completions", json={"model": "tiny", "prompt": [5, 6, 7], "max_tokens": 3, "temperature": 0,
                                                   "ignore_eos": True})
    assert r.json()["choices"][0]["text"] == text_of(tok, greedy(model, [5, 6, 7], 3))
    r = call(app, "POST", "/v1/completions", json={"model": "tiny", "prompt": ["a", "b c"], "max_tokens": 2})
    assert len(r.json()["choices"]) == 2


def test_completions_echo_and_legacy_logprobs(models, decoder):
    model, tok = decoder
    app = make_app(models)
    prompt = "How are you"
    r = call(app, "POST", "/v1/completions", json={"model": "tiny", "prompt": prompt, "max_tokens": 5, "temperature": 0,
                                                   "echo": True, "logprobs": 2, "ignore_eos": True})
    c = r.json()["choices"][0]
    ids = tok.encode(prompt)
    out = greedy(model, ids, 5)
    assert c["text"] == tok.decode(ids) + text_of(tok, out)
    lp = c["logprobs"]
    assert len(lp["tokens"]) == len(ids) + 5 and lp["token_logprobs"][0] is None and lp["top_logprobs"][0] is None
    with torch.no_grad():
        ref = model(torch.tensor([ids + out]))[0][0].float().log_softmax(-1)
    seq = ids + out
    for pos in range(1, len(seq)):
        assert abs(lp["token_logprobs"][pos] - float(ref[pos - 1, seq[pos]])) < 1e-4
        assert len(lp["top_logprobs"][pos]) <= 2
    assert lp["text_offset"] == sorted(lp["text_offset"]) and lp["text_offset"][0] == 0


def test_client_mistakes_are_400s_like_openai(models):
    app = make_app(models)

    def err(payload, path="/v1/completions"):
        r = call(app, "POST", path, json=payload)
        return r.status_code, r.json()["error"]

    status, e = err({"model": "tiny", "prompt": "x", "suffix": "y"})
    assert status == 400 and "suffix" in e["message"] and e["code"] == "unsupported_parameter"
    status, e = err({"model": "nope", "prompt": "x"})
    assert status == 404 and e["code"] == "model_not_found" and "tiny" in e["message"]
    assert err({"model": "tiny", "prompt": "x", "max_tokens": "many"})[0] == 400
    assert err({"model": "tiny", "prompt": "x", "temperature": 5})[1]["param"] == "temperature"
    assert err({"model": "tiny"})[0] == 400  # no prompt
    status, e = err({"model": "tiny", "prompt": "x", "max_tokens": 100})
    assert status == 400 and "maximum context length is 64 tokens" in e["message"] and "100 in the completion" in e["message"]
    assert "up to 4" in err({"model": "tiny", "prompt": "x", "stop": list("abcde")})[1]["message"]
    assert err({"model": "tiny", "prompt": [], "max_tokens": 2})[0] == 400
    assert err({"model": "tiny", "prompt": [1, 99999], "max_tokens": 2})[0] == 400
    assert "repetition_penalty" in err({"model": "tiny", "prompt": "x", "presence_penalty": 1})[1]["message"]
    status, e = err({"model": "tiny", "messages": [{"role": "user", "content": "hi"}]}, "/v1/chat/completions")
    assert status == 400 and "no chat template" in e["message"]
    status, e = err({"model": "tiny-chat", "messages": [{"role": "robot", "content": "hi"}]}, "/v1/chat/completions")
    assert status == 400 and "robot" in e["message"]
    assert err({"model": "tiny-chat", "messages": []}, "/v1/chat/completions")[0] == 400
    assert err({"model": "tiny-chat", "messages": [{"role": "user", "content": "hi"}], "top_logprobs": 2},
               "/v1/chat/completions")[0] == 400


def test_completions_streaming_matches_the_plain_answer(models):
    app = make_app(models)
    payload = {"model": "tiny", "prompt": "Tell me", "max_tokens": 12, "temperature": 0, "n": 2, "ignore_eos": True}
    plain = call(app, "POST", "/v1/completions", json=payload).json()
    r = call(app, "POST", "/v1/completions", json={**payload, "stream": True, "stream_options": {"include_usage": True}})
    events = sse(r)
    assert events[-1] == "[DONE]"
    chunks, usage = events[:-2], events[-2]
    assert usage["choices"] == [] and usage["usage"] == plain["usage"]
    for i in range(2):
        text = "".join(c["choices"][0]["text"] for c in chunks if c["choices"][0]["index"] == i)
        assert text == plain["choices"][i]["text"]
        assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"][0]["index"] == i][-1] == "length"
    assert all(c["object"] == "text_completion" and c["usage"] is None for c in chunks)


def test_chat_completion_plain_streaming_and_logprobs(models, chat):
    model, tok = chat
    app = make_app(models)
    messages = [{"role": "system", "content": "Be kind."}, {"role": "user", "content": [{"type": "text", "text": "Hello!"}]}]
    ids = tok.chat_prompt([{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Hello!"}])
    stop_ids = tok.chat_stop_ids
    out = generate(model, ids, SamplingConfig(max_new_tokens=10, temperature=0, top_k=None, eos_token_id=stop_ids[0]))
    out = [t for t in out[: next((i for i, t in enumerate(out) if t in stop_ids), len(out))]]
    payload = {"model": "tiny-chat", "messages": messages, "max_completion_tokens": 10, "temperature": 0,
               "logprobs": True, "top_logprobs": 2}
    r = call(app, "POST", "/v1/chat/completions", json=payload)
    assert r.status_code == 200, r.text
    body = r.json()
    c = body["choices"][0]
    assert body["object"] == "chat.completion" and c["message"]["role"] == "assistant"
    assert c["message"]["content"] == text_of(tok, out)
    assert body["usage"]["prompt_tokens"] == len(ids)
    content = c["logprobs"]["content"]
    assert [e["token"] for e in content] == [tok.decode([t]) for t in out]
    assert all(len(e["top_logprobs"]) == 2 and e["bytes"] == list(e["token"].encode()) for e in content)
    assert all(e["top_logprobs"][0]["logprob"] >= e["logprob"] - 1e-6 for e in content)
    r = call(app, "POST", "/v1/chat/completions", json={**payload, "stream": True, "n": 2,
                                                         "stream_options": {"include_usage": True}})
    events = sse(r)
    assert events[-1] == "[DONE]" and events[-2]["choices"] == [] and events[-2]["usage"]["prompt_tokens"] == len(ids)
    chunks = events[:-2]
    assert [ch["choices"][0]["delta"] for ch in chunks[:2]] == [{"role": "assistant", "content": ""}] * 2
    assert all(ch["object"] == "chat.completion.chunk" for ch in chunks)
    for i in range(2):
        mine = [ch["choices"][0] for ch in chunks if ch["choices"][0]["index"] == i]
        assert "".join(x["delta"].get("content", "") for x in mine) == c["message"]["content"]
        assert mine[-1]["finish_reason"] == c["finish_reason"] and mine[0]["delta"]["role"] == "assistant"


def test_request_timeout_cancels_and_answers_408(models):
    app = make_app(models, request_timeout=0.05)
    engine = models["slow"].engine
    payload = {"model": "slow", "prompt": "Hello", "max_tokens": 300, "ignore_eos": True}
    t0 = time.monotonic()
    r = call(app, "POST", "/v1/completions", json=payload)
    assert r.status_code == 408 and r.json()["error"]["code"] == "request_timeout" and time.monotonic() - t0 < 5
    events = sse(call(app, "POST", "/v1/completions", json={**payload, "stream": True}))
    assert events[-1] == "[DONE]" and events[-2]["error"]["code"] == "request_timeout"
    for _ in range(200):
        if engine.active == 0:
            break
        time.sleep(0.01)
    assert engine.active == 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_client_that_hangs_up_mid_stream_frees_its_slot(models):
    import uvicorn

    engine = models["slow"].engine
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(make_app(models), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        for _ in range(200):
            if server.started:
                break
            time.sleep(0.02)
        before = engine.stats["tokens"]
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            payload = {"model": "slow", "prompt": "Hello", "max_tokens": 300, "ignore_eos": True, "stream": True}
            with client.stream("POST", "/v1/completions", json=payload) as r:
                lines = r.iter_lines()
                got = [line for line, _ in zip((x for x in lines if x.startswith("data: ")), range(3))]
                assert len(got) == 3 and engine.active == 1
        for _ in range(300):  # the server notices the hang-up and the engine drops the row
            if engine.active == 0:
                break
            time.sleep(0.01)
        assert engine.active == 0
        assert engine.stats["tokens"] - before < 300  # it stopped decoding for nobody
    finally:
        server.should_exit = True
        thread.join(timeout=10)
