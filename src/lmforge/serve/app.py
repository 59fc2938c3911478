"""The ``lmforge serve`` app: load model directories by name, guard the door, route to the engines.

What each directory becomes (``ServedModel.kind``), from what it holds:

- ``task.json`` (a fine-tune): its task kind. ``chat`` is served like a decoder (continuous batching,
  ``/v1/completions`` and ``/v1/chat/completions``) with the tokenizer's chat template; the others
  (classification incl. multi-label, ner, translation, summarization, qa) get a ``DynamicBatcher``
  running the task's own ``collate`` + ``predict``, so ``/v1/classify`` ... answer exactly what
  ``lmforge predict`` writes for the same input.
- a plain GPT or (unidirectional) RNN language model: ``decoder``, with a ``GenerationEngine``.
- a plain BERT-family encoder (an ``lmforge import-hf`` MiniLM too): ``encoder`` for
  ``/v1/embeddings``: mean pooling over the attention mask, L2-normalised (sentence-transformers).

Limits, so bad input is a clear 4xx and never a crashed worker: a body over ``max_body_bytes`` is a
413 (Content-Length or the streamed bytes); more than ``max_concurrent`` ``/v1/*`` requests in flight
is a 429 with Retry-After, as is a full model queue; with ``api_key`` set every ``/v1/*`` route needs
``Authorization: Bearer KEY`` (401; ``/health``, ``/ready``, ``/metrics`` and the playground stay
open); malformed JSON and wrong types are 400s naming the field (OpenAI answers 400, not FastAPI's
422); an unknown model is a 404, a model of the wrong kind a 400; anything unexpected a 500 in
OpenAI's error shape. Inputs longer than a model takes: task endpoints cut them as the task's
``max_len`` says (what ``lmforge predict`` and evaluation do, so served results match them);
``/v1/embeddings`` answers 400 (OpenAI does, and a silently cut embedding is a wrong one); generation
answers 400 (``openai_gen``, vLLM's rule).

Shutdown drains: ``/ready`` turns 503 (load balancers stop sending), engines and batchers finish
what they hold (up to ``drain_timeout``), then stop.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hmac
import json
import logging
import re
import time
from collections.abc import Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import InputError, LmforgeError
from .batcher import DynamicBatcher
from .engine import GenerationEngine
from .errors import APIError
from .metrics import Metrics
from .registry import ServedModel, get_model

log = logging.getLogger(__name__)

TASK_KINDS = ("classification", "ner", "translation", "summarization", "qa")
MAX_INPUTS = 2048  # per request, as OpenAI's embeddings endpoint


@dataclass
class Settings:
    """What ``lmforge serve``'s options set; the routes read it from ``app.state.settings``."""

    host: str = "127.0.0.1"
    port: int = 8000
    api_key: str | None = None
    max_body_bytes: int = 1 << 20
    max_concurrent: int = 64        # /v1/* requests in flight
    max_queue: int = 256            # waiting requests per engine / inputs per batcher
    request_timeout: float | None = 60.0
    max_batch: int = 32             # inputs per dynamic batch (encoders, task models)
    batch_wait_ms: float = 5.0      # how long a batch waits for more inputs
    gen_max_batch: int = 8          # rows per decode step (decoders)
    max_tokens_default: int | None = None
    drain_timeout: float = 30.0


# -- loading ----------------------------------------------------------------------------------

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]*")


def _parse_spec(spec: str) -> tuple[str, str]:
    """``NAME=DIR`` or ``DIR`` (name = the directory's name; ``package:X`` is named X)."""
    name, sep, where = spec.partition("=")
    if sep and _NAME.fullmatch(name) and where and not Path(spec).is_dir():  # (a directory may have a '=')
        return name, where
    where = spec
    return (where.split(":", 1)[1] if where.startswith("package:") else Path(where).resolve().name), where


def load_models(specs: list[str]) -> dict[str, ServedModel]:
    """The models to serve, by name, from ``[NAME=]MODEL_DIR`` specs (engines are attached by ``create_app``)."""
    from ..models.io import resolve_model_dir

    if not specs:
        raise InputError("no models to serve", "give one or more [NAME=]MODEL_DIR, e.g. lmforge serve tiny=runs/q/model")
    out: dict[str, ServedModel] = {}
    for spec in specs:
        name, where = _parse_spec(spec)
        if name in out:
            raise InputError(f"model spec '{spec}': the name '{name}' is already used by {out[name].path}",
                             f"name them apart: NAME={where}")
        path = resolve_model_dir(where)
        if not path.is_dir():
            raise InputError(f"model spec '{spec}': {path} is not a directory",
                             "give [NAME=]MODEL_DIR, a directory written by lmforge (e.g. runs/NAME/pretrain/model)")
        if not any((path / f).exists() for f in ("config.json", "adapter_config.json")):
            raise InputError(f"model spec '{spec}': {path} is not a model directory (no config.json)",
                             "point at a pretrain/finetune output or an `lmforge import-hf` directory")
        try:
            out[name] = load_served(name, path)
        except LmforgeError as err:
            raise InputError(f"model spec '{spec}': {err.message}", _hf_hint(path) or err.hint) from None
        except (OSError, ValueError, KeyError) as err:  # unreadable or damaged files
            raise InputError(f"model spec '{spec}': cannot load {path}: {type(err).__name__}: {err}",
                             _hf_hint(path) or "check the directory is a complete lmforge model") from None
    return out


def _hf_hint(path: Path) -> str | None:
    try:
        cfg = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    if "architectures" in cfg:
        return f"this looks like a Hugging Face directory: lmforge import-hf {path} --output DIR, then serve DIR"
    return None


def load_served(name: str, path: Path) -> ServedModel:
    """One directory as a ``ServedModel`` (kind detection: see the module docstring)."""
    from ..models.gpt import GPT
    from ..models.io import load_model
    from ..tokenizer import Tok

    now = int(time.time())
    if (path / "task.json").exists():
        from ..tasks.stage import load_task_model

        task, model, tok = load_task_model(path)
        if task.kind == "chat":
            return ServedModel(name, path, "chat", model, tok, task=task, context=model.config.block_size,
                               chat_template=tok.chat_template, created=now)
        if task.kind not in TASK_KINDS:
            raise InputError(f"{path}: a '{task.kind}' task model has no endpoint", f"served tasks: {TASK_KINDS}")
        return ServedModel(name, path, task.kind, model, tok, task=task, created=now,
                           info={"labels": list(task.state.get("labels", []))})
    model = load_model(path).eval()
    tok = Tok.load(path)
    mtype = model.config.to_dict().get("model_type")
    if isinstance(model, GPT) or (getattr(model, "recurrent", False) and getattr(model, "lm_head", None) is not None):
        context = 0 if getattr(model, "recurrent", False) else model.config.block_size
        return ServedModel(name, path, "decoder", model, tok, context=context,
                           chat_template=getattr(tok, "_chat_template", None), created=now, info={"model_type": mtype})
    if mtype == "bert":
        return ServedModel(name, path, "encoder", model, tok, context=model.config.block_size, created=now,
                           info={"model_type": mtype})
    raise InputError(f"{path}: a plain {type(model).__name__} has nothing to serve",
                     "serve a decoder (GPT, RNN LM), an encoder (BERT) or a fine-tuned task model")


def _device(model) -> torch.device:
    return next(model.parameters()).device


def embed_batch(model, pad_id: int) -> Callable[[list[list[int]]], list[np.ndarray]]:
    """Token-id lists -> unit vectors: mean of the last hidden states over real tokens (padded per batch)."""
    from ..tasks.base import attention_mask, pad_batch

    def run(seqs: list[list[int]]) -> list[np.ndarray]:
        dev = _device(model)
        mask = attention_mask(seqs).to(dev)
        h = model.hidden_states(pad_batch(seqs, pad_id).to(dev), attention_mask=mask).float()
        m = mask[..., None].float()
        emb = F.normalize((h * m).sum(1) / m.sum(1).clamp_min(1.0), dim=-1)
        return list(emb.cpu().numpy())

    return run


def predict_batch(task, model, tok) -> Callable[[list[dict]], list[dict]]:
    """Encoded examples -> the task's predictions (its own collate pads per batch)."""

    def run(features: list[dict]) -> list[dict]:
        dev = _device(model)
        batch = {k: v.to(dev) if torch.is_tensor(v) else v for k, v in task.collate(features, tok).items()}
        return task.predict(model, batch, tok, features)

    return run


def _attach(m: ServedModel, settings: Settings, metrics: Metrics) -> ServedModel:
    """A copy of ``m`` with this app's own engine or batcher, so apps can share loaded models (one that
    comes with its own engine or batcher keeps it)."""
    if m.engine is not None or m.batcher is not None:
        return m
    if m.kind in ("decoder", "chat"):
        engine = GenerationEngine(m.model, m.tok, context=m.context or None, eos_token_id=m.tok.eos_id,
                                  max_batch=settings.gen_max_batch, max_queue=settings.max_queue,
                                  metrics=metrics, name=m.name)
        return dataclasses.replace(m, engine=engine, context=engine.context)
    fn = embed_batch(m.model, m.tok.pad_id or 0) if m.kind == "encoder" else predict_batch(m.task, m.model, m.tok)
    batcher = DynamicBatcher(fn, max_batch=settings.max_batch, wait_ms=settings.batch_wait_ms,
                             max_queue=settings.max_queue, metrics=metrics, name=m.name)
    return dataclasses.replace(m, batcher=batcher)


# -- the door: body size, concurrency, API key, unexpected errors, request metrics -------------


def _error_response(err: APIError) -> JSONResponse:
    return JSONResponse(err.body(), status_code=err.status, headers=err.headers)


class _BodyTooLarge(Exception):
    pass


class Guard:
    """Pure ASGI middleware (streaming responses pass through untouched); see the module docstring."""

    def __init__(self, app, owner: FastAPI):
        self.app, self.owner = app, owner
        self.in_flight = 0

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        settings: Settings = self.owner.state.settings
        metrics: Metrics = self.owner.state.metrics
        path, t0 = scope["path"], time.monotonic()
        api = path == "/v1" or path.startswith("/v1/")
        state = {"status": 500, "started": False}

        async def send_and_watch(msg) -> None:
            if msg["type"] == "http.response.start":
                state["status"], state["started"] = msg["status"], True
            await send(msg)

        async def respond(err: APIError) -> None:
            await _error_response(err)(scope, receive, send_and_watch)

        counted = False
        try:
            if api and settings.api_key and not self._authorized(scope, settings.api_key):
                return await respond(_auth_error(scope))
            if api:
                if self.in_flight >= settings.max_concurrent:
                    return await respond(APIError(
                        429, f"the server has {self.in_flight} requests in flight (its limit); retry shortly",
                        type="rate_limit_error", code="too_many_requests", headers={"Retry-After": "1"}))
                self.in_flight += 1
                metrics.in_flight.inc()
                counted = True
            if scope["method"] in ("POST", "PUT", "PATCH"):
                try:
                    receive = await self._buffered(scope, receive, settings.max_body_bytes)
                except _BodyTooLarge:
                    return await respond(APIError(
                        413, f"the request body is larger than the server's limit of {settings.max_body_bytes} "
                        "bytes; send fewer or shorter inputs per request", code="request_too_large"))
                except ValueError:
                    return await respond(APIError(400, "the Content-Length header is not a number"))
            try:
                await self.app(scope, receive, send_and_watch)
            except Exception as err:  # a bug: log it, answer 500, keep the worker alive
                log.exception("unhandled error on %s %s", scope["method"], path)
                if not state["started"]:
                    await respond(APIError(500, f"internal server error: {type(err).__name__}: {err}",
                                           type="server_error"))
        finally:
            if counted:
                self.in_flight -= 1
                metrics.in_flight.dec()
            metrics.observe_request(self._route(scope), scope["method"], state["status"], time.monotonic() - t0)

    @staticmethod
    def _authorized(scope, key: str) -> bool:
        got = dict(scope["headers"]).get(b"authorization", b"").decode("latin-1")
        scheme, _, token = got.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), key.encode())

    @staticmethod
    async def _buffered(scope, receive, limit: int):
        """Read the whole body (up to ``limit`` bytes), then hand it to the app as one message."""
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and int(length) > limit:
            raise _BodyTooLarge
        chunks, size = [], 0
        while True:
            msg = await receive()
            if msg["type"] != "http.request":  # the client left: let the app see it
                first = msg
                break
            size += len(msg.get("body", b""))
            if size > limit:
                raise _BodyTooLarge
            chunks.append(msg.get("body", b""))
            if not msg.get("more_body", False):
                first = {"type": "http.request", "body": b"".join(chunks), "more_body": False}
                break
        pending = [first]

        async def replay():
            return pending.pop() if pending else await receive()

        return replay

    def _route(self, scope) -> str:
        """The route's template (``/v1/models/{model_id}``); paths no route matched are one label."""
        route = scope.get("route")
        if getattr(route, "path", None):
            return route.path
        exact = {getattr(r, "path", None) for r in self.owner.routes}
        return scope["path"] if scope["path"] in exact else "unmatched"


def _auth_error(scope) -> APIError:
    has = b"authorization" in dict(scope["headers"])
    msg = ("Incorrect API key provided." if has else
           "You didn't provide an API key. Send it as 'Authorization: Bearer KEY' (the server's --api-key).")
    return APIError(401, msg, code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"})


# -- request bodies -------------------------------------------------------------------------


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore")


class EmbeddingRequest(_Body):
    model: str
    input: str | list[str] | list[int] | list[list[int]]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(None, ge=1)
    user: str | None = None


class TaskRequest(_Body):
    model: str
    input: str | dict[str, Any] | list[str | dict[str, Any]]


# -- routes ---------------------------------------------------------------------------------

router = APIRouter()


def _models(request: Request) -> dict[str, ServedModel]:
    return request.app.state.models


async def _within_timeout(request: Request, work) -> Any:
    from .openai_gen import _timeout_error

    timeout = request.app.state.settings.request_timeout
    try:
        async with asyncio.timeout(timeout):
            return await work
    except TimeoutError:
        raise _timeout_error(timeout) from None


@router.get("/health")
def health() -> dict:
    return {"status": "ok"}


@router.get("/ready")
def ready(request: Request) -> JSONResponse:
    st = request.app.state
    if st.draining:
        return JSONResponse({"status": "draining"}, status_code=503, headers={"Retry-After": "5"})
    if not st.ready or not st.models:
        return JSONResponse({"status": "starting"}, status_code=503, headers={"Retry-After": "1"})
    return JSONResponse({"status": "ready", "models": list(st.models)})


@router.get("/metrics")
def metrics(request: Request) -> Response:
    m: Metrics = request.app.state.metrics
    return Response(m.render(), media_type=m.content_type)


def _model_card(m: ServedModel) -> dict:
    return {"id": m.name, "object": "model", "created": m.created, "owned_by": "lmforge"}


@router.get("/v1/models")
def list_models(request: Request) -> dict:
    return {"object": "list", "data": [_model_card(m) for m in _models(request).values()]}


@router.get("/v1/models/{model_id:path}")
def retrieve_model(model_id: str, request: Request) -> dict:
    return _model_card(get_model(_models(request), model_id))


def _embedding_inputs(m: ServedModel, body: EmbeddingRequest) -> list[list[int]]:
    x = body.input
    if isinstance(x, str):
        items: list = [x]
    elif x and all(isinstance(t, int) for t in x):
        items = [list(x)]
    else:
        items = list(x)
    if not items:
        raise APIError(400, "'input' is empty; give a string, a list of strings or token ids", param="input")
    if len(items) > MAX_INPUTS:
        raise APIError(400, f"'input' has {len(items)} items; at most {MAX_INPUTS} per request", param="input")
    V, limit, out = m.model.config.vocab_size, m.context, []
    for i, item in enumerate(items):
        if isinstance(item, str):
            if not item:
                raise APIError(400, f"input[{i}] is an empty string", param="input")
            ids = m.tok.encode(item, add_special_tokens=True)
        else:
            ids = item
            if not ids or any(not 0 <= t < V for t in ids):
                raise APIError(400, f"input[{i}]: token ids must be a non-empty list of integers in [0, {V})",
                               param="input")
        if limit and len(ids) > limit:
            raise APIError(400, f"input[{i}] has {len(ids)} tokens; model '{m.name}' takes at most {limit} "
                           "(its context). Shorten or split the text.", param="input", code="context_length_exceeded")
        out.append(ids)
    return out


@router.post("/v1/embeddings")
async def embeddings(body: EmbeddingRequest, request: Request) -> dict:
    m = get_model(_models(request), body.model, kinds=("encoder",))
    if body.dimensions is not None and body.dimensions != m.model.config.d_model:
        raise APIError(400, f"model '{m.name}' makes {m.model.config.d_model}-dimensional embeddings; 'dimensions' "
                       "cannot change that", param="dimensions", code="unsupported_parameter")
    seqs = _embedding_inputs(m, body)
    vectors = await _within_timeout(request, m.batcher.submit_many(seqs))

    def encode(v: np.ndarray):
        if body.encoding_format == "base64":
            return base64.b64encode(v.astype("<f4").tobytes()).decode("ascii")
        return v.tolist()

    n = sum(len(s) for s in seqs)
    return {"object": "list", "model": body.model, "usage": {"prompt_tokens": n, "total_tokens": n},
            "data": [{"object": "embedding", "index": i, "embedding": encode(v)} for i, v in enumerate(vectors)]}


async def _task_request(request: Request, body: TaskRequest, kind: str) -> dict:
    """Any task endpoint: the task's ``example`` + ``encode`` here, ``collate`` + ``predict`` batched."""
    m = get_model(_models(request), body.model, kinds=(kind,))
    values = body.input if isinstance(body.input, list) else [body.input]
    if not values:
        raise APIError(400, "'input' is empty; give one input or a list of them", param="input")
    if len(values) > MAX_INPUTS:
        raise APIError(400, f"'input' has {len(values)} items; at most {MAX_INPUTS} per request", param="input")
    if kind == "qa":
        bad = next((i for i, v in enumerate(values) if not isinstance(v, dict)), None)
        if bad is not None:
            raise APIError(400, f"input[{bad}]: QA needs an object {{\"question\": ..., \"context\": ...}}",
                           param="input")
    else:
        bad = next((i for i, v in enumerate(values) if not isinstance(v, str)), None)
        if bad is not None:
            raise APIError(400, f"input[{bad}]: {kind} takes a text (a string) per input", param="input")
    try:
        features = [m.task.encode(m.task.example(v, i), m.tok) for i, v in enumerate(values)]
    except LmforgeError as err:
        raise APIError(400, str(err), param="input") from None
    results = await _within_timeout(request, m.batcher.submit_many(features))
    return {"model": body.model, "results": results}


@router.post("/v1/classify")
async def classify(body: TaskRequest, request: Request) -> dict:
    return await _task_request(request, body, "classification")


@router.post("/v1/ner")
async def ner(body: TaskRequest, request: Request) -> dict:
    return await _task_request(request, body, "ner")


@router.post("/v1/translate")
async def translate(body: TaskRequest, request: Request) -> dict:
    return await _task_request(request, body, "translation")


@router.post("/v1/summarize")
async def summarize(body: TaskRequest, request: Request) -> dict:
    return await _task_request(request, body, "summarization")


@router.post("/v1/qa")
async def qa(body: TaskRequest, request: Request) -> dict:
    return await _task_request(request, body, "qa")


# -- error handlers -------------------------------------------------------------------------


# pydantic's names for the members of a union, as a client would say them
_SHAPES = {"str": "a string", "int": "an integer", "float": "a number", "bool": "true or false", "none": "null",
           "dict[str,any]": "an object", "list[str]": "a list of strings", "list[int]": "a list of token ids",
           "list[list[int]]": "a list of token-id lists", "list[union[str,dict[str,any]]]": "a list of strings or objects"}


def _is_tag(part) -> bool:
    return isinstance(part, str) and ("[" in part or part in _SHAPES)


def _where(loc: tuple) -> tuple[str, str | None]:
    """``('body', 'messages', 0, 'role')`` -> ``messages[0].role``; and the union member tried, if any."""
    out = ""
    for part in loc[1:]:
        if _is_tag(part):
            return out, part
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out, None


def validation_error(e: RequestValidationError) -> APIError:
    """FastAPI's validation errors as OpenAI's 400: the field, what is wrong, what was sent."""
    errors = e.errors()
    err = errors[0]
    if err["type"] == "json_invalid":
        at = f" at character {err['loc'][-1]}" if isinstance(err["loc"][-1], int) else ""
        return APIError(400, f"the request body is not valid JSON ({err.get('ctx', {}).get('error', err['msg'])}{at})")
    where, tag = _where(tuple(err["loc"]))
    if not where:
        if err["type"] == "missing":
            return APIError(400, "the request has no body; send a JSON object")
        return APIError(400, f"the request body must be a JSON object: {err['msg']}")
    got = err.get("input")
    msg = err["msg"]
    if tag is not None:  # a union: say every shape it takes, not why the first one failed
        tags = list(dict.fromkeys(t for x in errors if (w := _where(tuple(x["loc"])))[0] == where and (t := w[1])))
        msg = "expected " + " or ".join(_SHAPES.get(t, t) for t in tags)
        got = next((x["input"] for x in errors if _where(tuple(x["loc"])) == (where, tags[0])), got)
    shown = "" if err["type"] == "missing" else f" (got {json.dumps(got, ensure_ascii=False)[:60]})"
    return APIError(400, f"'{where}': {msg}{shown}", param=where)


def _install_handlers(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def api_error(_request: Request, e: APIError) -> JSONResponse:
        return _error_response(e)

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, e: RequestValidationError) -> JSONResponse:
        return _error_response(validation_error(e))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, e: StarletteHTTPException) -> JSONResponse:
        msg = f"{e.detail}: {request.method} {request.url.path}" if e.status_code in (404, 405) else str(e.detail)
        return _error_response(APIError(e.status_code, msg, headers=dict(e.headers or {})))


# -- the app --------------------------------------------------------------------------------


def create_app(models: dict[str, ServedModel], settings: Settings | None = None) -> FastAPI:
    """The server for ``models`` (from ``load_models``); engines and batchers run during its lifespan."""
    from . import openai_gen, playground

    settings = settings or Settings()
    metrics = Metrics()
    served = {name: _attach(m, settings, metrics) for name, m in models.items()}
    workers = [w for m in served.values() for w in (m.engine, m.batcher) if w is not None]

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        for w in workers:
            w.start()
        app.state.ready = True
        try:
            yield
        finally:
            app.state.draining = True
            done = await asyncio.gather(*(w.drain(settings.drain_timeout) for w in workers))
            if not all(done):
                log.warning("drain timeout (%.0f s): stopping with requests still in flight", settings.drain_timeout)
            for w in workers:
                w.stop()

    app = FastAPI(title="lmforge serve", version="1", lifespan=lifespan)
    app.state.models, app.state.settings, app.state.metrics = served, settings, metrics
    app.state.ready = app.state.draining = False
    _install_handlers(app)
    app.include_router(router)
    app.include_router(openai_gen.router)
    app.include_router(playground.router)
    app.add_middleware(Guard, owner=app)
    return app
