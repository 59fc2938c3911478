"""The ``lmforge serve`` app: the routes, the error handlers and ``create_app``.

``loading.py`` turns model directories into ``ServedModel``s (kind detection; ``load_models`` is
re-exported here) and gives each its engine or batcher; ``guard.py`` is the door in front of every
route (413 for a body over ``max_body_bytes``, 429 with Retry-After past ``max_concurrent`` requests
in flight, 401 without the API key, 500 in OpenAI's error shape for a bug, request metrics).

Bad input is a clear 4xx and never a crashed worker: malformed JSON and wrong types are 400s naming
the field (OpenAI answers 400, not FastAPI's 422); an unknown model is a 404, a model of the wrong
kind a 400; a full model queue a 429. Every error response is OpenAI's error object, and the OpenAPI
schema says so (``openai_schemas.errors``; ``tests/serve/test_schemathesis.py`` holds the server to
it). Inputs longer than a model takes: task endpoints cut them as the task's ``max_len`` says (what
``lmforge predict`` and evaluation do, so served results match them); ``/v1/embeddings`` answers 400
(OpenAI does, and a silently cut embedding is a wrong one); generation answers 400 (``openai_gen``,
vLLM's rule).

Shutdown drains: ``/ready`` turns 503 (load balancers stop sending), engines and batchers finish
what they hold (up to ``drain_timeout``), then stop.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import LmforgeError
from .errors import APIError, validation_error
from .guard import Guard, error_response
from .loading import TASK_KINDS, attach, embed_batch, load_models, load_served, predict_batch
from .metrics import Metrics
from .openai_schemas import (GET_ERRORS, POST_ERRORS, STREAM_CHUNKS, EmbeddingList, ErrorResponse, ModelCard,
                             ModelList, errors)
from .registry import ServedModel, get_model

__all__ = ["Settings", "create_app", "load_models", "load_served", "embed_batch", "predict_batch", "TASK_KINDS"]

log = logging.getLogger(__name__)

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


# -- request and response bodies ----------------------------------------------------------------


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
    input: str | dict[str, Any] | list[str | dict[str, Any]] = Field(
        description="one input or a list of them: a text, or for /v1/qa {\"question\": ..., \"context\": ...}")


class ClassificationResult(BaseModel):
    """``label`` and ``score`` (single-label) or ``labels`` (multi-label), and every label's score."""

    label: str | None = None
    score: float | None = None
    labels: list[str] | None = None
    scores: dict[str, float]


class Entity(BaseModel):
    type: str
    start: int = Field(description="character offset into the input (code points)")
    end: int
    text: str
    token_start: int
    token_end: int
    score: float | None = None


class NERResult(BaseModel):
    entities: list[Entity]
    tags: list[str]


class TextResult(BaseModel):
    prediction: str


class Span(BaseModel):
    text: str
    start: int
    score: float
    probability: float


class QAResult(BaseModel):
    answer: str = Field(description="empty when the model finds no answer (then start is -1)")
    start: int
    score: float
    null_score: float | None
    nbest: list[Span]


def _task_response(result: type[BaseModel]) -> type[BaseModel]:
    from pydantic import create_model

    name = result.__name__.replace("Result", "Response")
    return create_model(name, model=(str, ...), results=(list[result], ...))


class HealthStatus(BaseModel):
    status: Literal["ok"]


class ReadyStatus(BaseModel):
    status: Literal["ready", "starting", "draining"]
    models: list[str] | None = None


_RETRY = {"Retry-After": {"description": "Seconds to wait", "schema": {"type": "string"}}}
_TASK_RESPONSES = {name: {200: {"model": _task_response(r)}, **errors(*POST_ERRORS)}
                   for name, r in (("classify", ClassificationResult), ("ner", NERResult),
                                   ("text", TextResult), ("qa", QAResult))}


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


@router.get("/health", response_model=None, responses={200: {"model": HealthStatus}})
def health() -> dict:
    return {"status": "ok"}


@router.get("/ready", response_model=None, responses={
    200: {"model": ReadyStatus, "description": "Every model is loaded and serving"},
    503: {"model": ReadyStatus, "description": "Starting or draining: send no traffic", "headers": _RETRY}})
def ready(request: Request) -> JSONResponse:
    st = request.app.state
    if st.draining:
        return JSONResponse({"status": "draining"}, status_code=503, headers={"Retry-After": "5"})
    if not st.ready or not st.models:
        return JSONResponse({"status": "starting"}, status_code=503, headers={"Retry-After": "1"})
    return JSONResponse({"status": "ready", "models": list(st.models)})


@router.get("/metrics", response_class=PlainTextResponse, responses={
    200: {"description": "Prometheus text format", "content": {"text/plain": {"schema": {"type": "string"}}}}})
def metrics(request: Request) -> Response:
    m: Metrics = request.app.state.metrics
    return Response(m.render(), media_type=m.content_type)


def _model_card(m: ServedModel) -> dict:
    return {"id": m.name, "object": "model", "created": m.created, "owned_by": "lmforge"}


@router.get("/v1/models", response_model=None, responses={200: {"model": ModelList}, **errors(*GET_ERRORS)})
def list_models(request: Request) -> dict:
    return {"object": "list", "data": [_model_card(m) for m in _models(request).values()]}


@router.get("/v1/models/{model_id:path}", response_model=None,
            responses={200: {"model": ModelCard}, **errors(404, *GET_ERRORS)})
def retrieve_model(model_id: str, request: Request) -> dict:
    return _model_card(get_model(_models(request), model_id))


def _inputs(items: list, what: str) -> list:
    """A request's inputs: 400 when there are none or more than ``MAX_INPUTS``."""
    if not items:
        raise APIError(400, f"'input' is empty; give {what}", param="input")
    if len(items) > MAX_INPUTS:
        raise APIError(400, f"'input' has {len(items)} items; at most {MAX_INPUTS} per request", param="input")
    return items


def _embedding_inputs(m: ServedModel, body: EmbeddingRequest) -> list[list[int]]:
    x = body.input
    if isinstance(x, str):
        items: list = [x]
    elif x and all(isinstance(t, int) for t in x):
        items = [list(x)]
    else:
        items = list(x)
    _inputs(items, "a string, a list of strings or token ids")
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


@router.post("/v1/embeddings", response_model=None,
             responses={200: {"model": EmbeddingList}, **errors(*POST_ERRORS)})
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
    values = _inputs(body.input if isinstance(body.input, list) else [body.input], "one input or a list of them")
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


# path -> (the task kind it serves, its documented responses); one handler serves them all
TASK_ROUTES = {"/v1/classify": ("classification", "classify"), "/v1/ner": ("ner", "ner"),
               "/v1/translate": ("translation", "text"), "/v1/summarize": ("summarization", "text"),
               "/v1/qa": ("qa", "qa")}


def _task_route(kind: str):
    async def endpoint(body: TaskRequest, request: Request) -> dict:
        return await _task_request(request, body, kind)

    return endpoint


for _path, (_kind, _responses) in TASK_ROUTES.items():
    router.add_api_route(_path, _task_route(_kind), methods=["POST"], response_model=None,
                         responses=_TASK_RESPONSES[_responses], name=_path.rsplit("/", 1)[1])


# -- error handlers -------------------------------------------------------------------------


def _install_handlers(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def api_error(_request: Request, e: APIError) -> JSONResponse:
        return error_response(e)

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, e: RequestValidationError) -> JSONResponse:
        return error_response(validation_error(e))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, e: StarletteHTTPException) -> JSONResponse:
        msg = f"{e.detail}: {request.method} {request.url.path}" if e.status_code in (404, 405) else str(e.detail)
        return error_response(APIError(e.status_code, msg, headers=dict(e.headers or {})))


# -- the app --------------------------------------------------------------------------------


def _install_openapi(app: FastAPI) -> None:
    """The schema as the server behaves: errors are OpenAI's 400 (never FastAPI's 422, so that and its
    ``HTTPValidationError`` go), and the stream chunks the ``text/event-stream`` responses refer to are
    components."""
    from pydantic.json_schema import models_json_schema

    base = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = base()
        for item in schema.get("paths", {}).values():
            for op in item.values():
                op.get("responses", {}).pop("422", None)
        comps = schema.setdefault("components", {}).setdefault("schemas", {})
        for name in ("HTTPValidationError", "ValidationError"):
            comps.pop(name, None)
        _, defs = models_json_schema([(m, "serialization") for m in (*STREAM_CHUNKS, ErrorResponse)],
                                     ref_template="#/components/schemas/{model}")
        for name, sub in defs.get("$defs", {}).items():
            comps.setdefault(name, sub)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi



def create_app(models: dict[str, ServedModel], settings: Settings | None = None) -> FastAPI:
    """The server for ``models`` (from ``load_models``); engines and batchers run during its lifespan."""
    from . import openai_gen, playground

    settings = settings or Settings()
    metrics = Metrics()
    served = {name: attach(m, settings, metrics) for name, m in models.items()}
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
    _install_openapi(app)
    for r in (router, openai_gen.router, playground.router):
        app.include_router(r)
    app.state.routes = [r for rt in (router, openai_gen.router, playground.router) for r in rt.routes]
    app.add_middleware(Guard, owner=app)
    return app
