"""Request bodies of /v1/completions and /v1/chat/completions, as OpenAI (and vLLM's extras) define them.

Pydantic models, so a wrong type or range is a 400 OpenAI error object naming the field (the app's
validation handler); unknown fields are ignored, as OpenAI-compatible servers do. Fields that change
the output in ways this server cannot honour (``suffix``, ``logit_bias``, tools, penalties other than
``repetition_penalty``) are refused with a 400 by ``unsupported`` rather than silently dropped.

Below them, the response shapes of every ``/v1/*`` route (OpenAI's error object, model list,
embeddings, completions, chat and their stream chunks) for the OpenAPI schema: ``errors(...)`` and
``event_stream(...)`` build the routes' ``responses=``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from .errors import APIError


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore")


class StreamOptions(_Body):
    include_usage: bool = False


class _Sampling(_Body):
    """What both endpoints share: OpenAI's sampling fields plus vLLM's extras."""

    model: str
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    n: int = Field(1, ge=1, le=128)
    stream: bool = False
    stream_options: StreamOptions | None = None
    stop: str | list[str] | None = None
    seed: int | None = None
    max_tokens: int | None = Field(None, ge=1)
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    logit_bias: dict[str, float] | None = None
    user: str | None = None
    # vLLM's extras
    top_k: int | None = Field(None, ge=-1)
    min_tokens: int = Field(0, ge=0)
    ignore_eos: bool = False
    repetition_penalty: float | None = Field(None, ge=0.01, le=10)  # (a tinier one overflows the logits)
    skip_special_tokens: bool = True

    def stops(self) -> list[str]:
        stop = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        if len(stop) > 4:
            raise APIError(400, f"'stop' takes up to 4 sequences; got {len(stop)}", param="stop")
        if any(not s for s in stop):
            raise APIError(400, "stop sequences must be non-empty strings", param="stop")
        return stop

    def unsupported(self) -> None:
        for name in ("presence_penalty", "frequency_penalty"):
            if getattr(self, name):
                raise APIError(400, f"'{name}' is not supported by this server; use 'repetition_penalty' (e.g. 1.2)",
                               param=name, code="unsupported_parameter")
        if self.logit_bias:
            raise APIError(400, "'logit_bias' is not supported by this server", param="logit_bias",
                           code="unsupported_parameter")
        if self.stream_options is not None and not self.stream:
            raise APIError(400, "'stream_options' is only allowed when 'stream' is true", param="stream_options")


class CompletionRequest(_Sampling):
    prompt: str | list[str] | list[int] | list[list[int]]
    suffix: str | None = None
    echo: bool = False
    logprobs: int | None = Field(None, ge=0, le=20)
    best_of: int | None = Field(None, ge=1)

    def unsupported(self) -> None:
        super().unsupported()
        if self.suffix:
            raise APIError(400, "'suffix' (insertion) is not supported by this server", param="suffix",
                           code="unsupported_parameter")
        if self.best_of is not None and self.best_of != self.n:
            raise APIError(400, "'best_of' other than n is not supported by this server", param="best_of",
                           code="unsupported_parameter")
        if self.echo and self.stream and self.logprobs is not None:
            raise APIError(400, "'echo' with 'logprobs' is not supported when streaming", param="echo")

    def prompts(self) -> list[str | list[int]]:
        """The prompt as a list of strings or token-id lists (OpenAI's four shapes)."""
        p = self.prompt
        if isinstance(p, str):
            out: list = [p]
        elif p and all(isinstance(x, int) for x in p):
            out = [list(p)]
        else:
            out = list(p)
        if not out or any(len(x) == 0 for x in out):
            raise APIError(400, "'prompt' is empty; give text or at least one token id", param="prompt")
        return out


class ContentPart(_Body):
    type: str
    text: str | None = None


class ChatMessage(_Body):
    role: str
    content: str | list[ContentPart] | None = None
    name: str | None = None

    def text(self, i: int) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        parts = []
        for part in self.content:
            if part.type != "text" or part.text is None:
                raise APIError(400, f"messages[{i}]: content part of type '{part.type}' is not supported; "
                               "this model reads text only", param=f"messages[{i}].content")
            parts.append(part.text)
        return "".join(parts)


class ResponseFormat(_Body):
    type: str = "text"


class ChatRequest(_Sampling):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    logprobs: bool = False
    top_logprobs: int | None = Field(None, ge=0, le=20)
    tools: list[dict[str, Any]] | None = None
    tool_choice: Any = None
    response_format: ResponseFormat | None = None
    add_generation_prompt: bool = True

    def unsupported(self) -> None:
        super().unsupported()
        if self.tools:
            raise APIError(400, "'tools' (function calling) is not supported by this server", param="tools",
                           code="unsupported_parameter")
        if self.response_format is not None and self.response_format.type != "text":
            raise APIError(400, f"response_format '{self.response_format.type}' is not supported; only 'text'",
                           param="response_format", code="unsupported_parameter")
        if self.top_logprobs is not None and not self.logprobs:
            raise APIError(400, "'top_logprobs' needs 'logprobs': true", param="top_logprobs")




# -- responses ----------------------------------------------------------------------------------
# What the handlers answer, for the OpenAPI schema only (they build plain dicts; no response validation
# on the hot path). ``tests/serve/test_schemathesis.py`` checks that every response matches these.


class _Out(BaseModel):
    """A response shape (extra keys allowed, as JSON Schema's default)."""


class ErrorDetail(_Out):
    message: str
    type: str
    param: str | None
    code: str | None


class ErrorResponse(_Out):
    """OpenAI's error object, the body of every 4xx and 5xx of /v1/*."""

    error: ErrorDetail


_ERRORS: dict[int, dict[str, Any]] = {
    400: {"description": "Invalid request: malformed JSON, a wrong type or range (the field is in `param`), an "
                         "input the model cannot take, a model of the wrong kind, an unsupported parameter"},
    401: {"description": "Missing or wrong API key (the server runs with --api-key)",
          "headers": {"WWW-Authenticate": {"description": "Bearer", "schema": {"type": "string"}}}},
    404: {"description": "No served model has that name"},
    408: {"description": "The request did not finish within the server's request timeout"},
    413: {"description": "The request body is larger than the server's limit"},
    429: {"description": "Too many requests in flight, or the model's queue is full: retry after Retry-After seconds",
          "headers": {"Retry-After": {"description": "Seconds to wait", "schema": {"type": "string"}}}},
    500: {"description": "An unexpected server error (logged); the server goes on"},
    503: {"description": "The server is shutting down (draining)",
          "headers": {"Retry-After": {"description": "Seconds to wait", "schema": {"type": "string"}}}},
}

POST_ERRORS = (400, 401, 404, 408, 413, 429, 500, 503)  # what a /v1/* POST can answer besides 200
GET_ERRORS = (401, 429, 500)


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route: each status as OpenAI's error object."""
    return {c: {"model": ErrorResponse, **_ERRORS[c]} for c in codes}


def event_stream(chunk: str) -> dict[str, Any]:
    """A ``text/event-stream`` media type: each event's ``data`` is a ``chunk`` (a components schema), an
    error object (a failure mid-stream) or the final ``[DONE]``."""
    payload = {"anyOf": [{"$ref": f"#/components/schemas/{chunk}"}, {"$ref": "#/components/schemas/ErrorResponse"}]}
    return {"text/event-stream": {"schema": {
        "type": "object", "required": ["data"],
        "properties": {"data": {"type": "string", "if": {"const": "[DONE]"},
                                "else": {"contentMediaType": "application/json", "contentSchema": payload}}}}}}


class ModelCard(_Out):
    id: str
    object: Literal["model"]
    created: int
    owned_by: str


class ModelList(_Out):
    object: Literal["list"]
    data: list[ModelCard]


class EmbeddingUsage(_Out):
    prompt_tokens: int
    total_tokens: int


class Embedding(_Out):
    object: Literal["embedding"]
    index: int
    embedding: list[float] | str = Field(description="floats, or base64 of little-endian float32 "
                                                     "(encoding_format: base64)")


class EmbeddingList(_Out):
    object: Literal["list"]
    model: str
    data: list[Embedding]
    usage: EmbeddingUsage


class Usage(_Out):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


FinishReason = Literal["stop", "length"]


class CompletionLogprobs(_Out):
    tokens: list[str]
    token_logprobs: list[float | None]
    top_logprobs: list[dict[str, float] | None]
    text_offset: list[int]


class CompletionChoice(_Out):
    index: int
    text: str
    logprobs: CompletionLogprobs | None
    finish_reason: FinishReason | None


class Completion(_Out):
    id: str
    object: Literal["text_completion"]
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage


class CompletionChunk(_Out):
    """One event of a streamed completion; with ``stream_options.include_usage`` the last one has
    ``choices: []`` and the usage (``null`` before it)."""

    id: str
    object: Literal["text_completion"]
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage | None = None


class TopLogprob(_Out):
    token: str
    logprob: float
    bytes: list[int]


class TokenLogprob(TopLogprob):
    top_logprobs: list[TopLogprob]


class ChoiceLogprobs(_Out):
    content: list[TokenLogprob]


class AssistantMessage(_Out):
    role: Literal["assistant"]
    content: str


class ChatChoice(_Out):
    index: int
    message: AssistantMessage
    logprobs: ChoiceLogprobs | None
    finish_reason: FinishReason | None


class ChatCompletion(_Out):
    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage


class Delta(_Out):
    role: Literal["assistant"] | None = None
    content: str | None = None


class ChunkChoice(_Out):
    index: int
    delta: Delta
    logprobs: ChoiceLogprobs | None
    finish_reason: FinishReason | None


class ChatCompletionChunk(_Out):
    """One event of a streamed chat completion: first the role, then content deltas, the last with
    ``finish_reason``; with ``stream_options.include_usage`` a final ``choices: []`` event has the usage."""

    id: str
    object: Literal["chat.completion.chunk"]
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: Usage | None = None


STREAM_CHUNKS = (CompletionChunk, ChatCompletionChunk)  # referenced only from event streams
