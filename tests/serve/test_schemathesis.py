"""Property-based API tests of ``lmforge serve`` from its own OpenAPI schema (schemathesis 4).

Every documented operation gets generated requests, valid and invalid (positive and negative modes,
request examples, boundary values), sent in-process to an app serving tiny real models (a decoder, a
chat model, a classifier). Each response must not be a 5xx, must have a documented status code and
content type, and its body must match the schema documented for that status: the JSON, or each
server-sent event of a stream (``data`` a chunk, an error object or ``[DONE]``). Bounded: 25 generated
cases per operation and per mode, no database, ~15 s for the module on 2 cores.

The schema the cases come from is the app's own, narrowed where noted (``_narrowed``) so that most
valid requests reach a model instead of stopping at a 404 or at a refusal tested elsewhere.
"""

from __future__ import annotations

import copy

import pytest
from hypothesis import HealthCheck, settings

schemathesis = pytest.importorskip("schemathesis")

from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from lmforge.serve.app import Settings, create_app, load_models  # noqa: E402

from .live import save_classifier  # noqa: E402

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
CONFIG = {"generation": {"max-examples": 25, "database": "none"}, "phases": {"stateful": {"enabled": False}}}

# the served models each request body may name (positive cases pick one; negative ones anything else)
MODELS = {"CompletionRequest": ["tiny", "chat"], "ChatRequest": ["chat", "tiny"], "TaskRequest": ["clf", "chat"],
          "EmbeddingRequest": ["clf", "nope"]}
HELLO = [{"role": "user", "content": "Hello!"}]
EXAMPLES = {  # sent as they are (the examples phase): each kind of success, streams included
    "/v1/completions": [
        {"model": "tiny", "prompt": "Hello there", "max_tokens": 6, "ignore_eos": True},
        {"model": "tiny", "prompt": ["Hi", "Once upon"], "max_tokens": 4, "n": 2, "logprobs": 2, "echo": True},
        {"model": "tiny", "prompt": "Hello", "max_tokens": 5, "stream": True, "logprobs": 1,
         "stream_options": {"include_usage": True}}],
    "/v1/chat/completions": [
        {"model": "chat", "messages": HELLO, "max_tokens": 6, "logprobs": True, "top_logprobs": 2},
        {"model": "chat", "messages": HELLO, "max_tokens": 6, "stream": True, "n": 2,
         "stream_options": {"include_usage": True}},
        {"model": "chat", "messages": HELLO, "max_tokens": 4, "stream": True, "logprobs": True}],
    "/v1/classify": [{"model": "clf", "input": ["good", "bad"]}, {"model": "clf", "input": "你好"}],
}


def _narrowed(doc: dict) -> dict:
    """The app's schema with generation narrowed to what the tiny models can answer: served model names,
    short prompts (the context is 64 tokens), chat roles the template knows, and without the fields the
    server refuses by design (``unsupported``: tested in test_openai_gen.py)."""
    doc = copy.deepcopy(doc)
    comps = doc["components"]["schemas"]
    for name, models in MODELS.items():
        comps[name]["properties"]["model"]["enum"] = models
    for name in ("CompletionRequest", "ChatRequest"):
        props = comps[name]["properties"]
        for field in ("presence_penalty", "frequency_penalty", "logit_bias", "stream_options", "suffix", "best_of",
                      "tools", "response_format", "top_logprobs"):
            props.pop(field, None)
        for field in ("max_tokens", "max_completion_tokens"):
            if field in props:
                props[field] = {"type": "integer", "minimum": 1, "maximum": 16}
        props["n"] = {"type": "integer", "minimum": 1, "maximum": 3}
    comps["CompletionRequest"]["properties"]["prompt"] = {"anyOf": [
        {"type": "string", "minLength": 1, "maxLength": 40},
        {"type": "array", "items": {"type": "string", "minLength": 1, "maxLength": 40}, "minItems": 1, "maxItems": 3},
        {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 300}, "minItems": 1, "maxItems": 20}]}
    comps["ChatMessage"]["properties"]["role"] = {"enum": ["system", "user", "assistant"]}
    comps["ChatMessage"]["properties"]["content"] = {"type": "string", "maxLength": 60}
    comps["ChatRequest"]["properties"]["messages"].update(maxItems=3)
    (param,) = doc["paths"]["/v1/models/{model_id}"]["get"]["parameters"]
    param["schema"]["enum"] = ["tiny", "chat", "clf", "nope"]
    for path, examples in EXAMPLES.items():
        media = doc["paths"][path]["post"]["requestBody"]["content"]["application/json"]
        media["examples"] = {f"e{i}": {"value": v} for i, v in enumerate(examples)}
    return doc


@pytest.fixture(scope="module")
def classifier_dir(tmp_path_factory, serve_tok):
    return save_classifier(tmp_path_factory.mktemp("st_clf"), serve_tok)


@pytest.fixture(scope="module")
def served(decoder_dir, chat_dir, classifier_dir):
    return load_models([f"tiny={decoder_dir}", f"chat={chat_dir}", f"clf={classifier_dir}"])


@pytest.fixture
def served_app(served):
    """A fresh app per operation: schemathesis' pytest plugin ends an app's lifespan (engines and batchers
    drain and stop) with the test that started it."""
    return create_app(served, Settings(request_timeout=20))


def test_the_schema_documents_openai_errors_not_422():
    doc = create_app({}).openapi()
    ops = [(path, op) for path, item in doc["paths"].items() for op in item.values()]
    assert all("422" not in op["responses"] for _, op in ops)
    assert "HTTPValidationError" not in doc["components"]["schemas"]
    for path, op in ops:
        if path.startswith("/v1/"):
            assert {"401", "429", "500"} <= set(op["responses"]), path
            assert op["responses"]["429"]["content"]["application/json"]["schema"] == {
                "$ref": "#/components/schemas/ErrorResponse"}
    chat = doc["paths"]["/v1/chat/completions"]["post"]["responses"]["200"]["content"]
    assert set(chat) == {"application/json", "text/event-stream"}
    assert {"ChatCompletionChunk", "CompletionChunk"} <= set(doc["components"]["schemas"])


# The schema does not depend on what is served: an app serving nothing gives it at collection, and each
# case is sent to ``served_app`` (``schema.app`` only selects schemathesis' in-process ASGI transport).
schema = schemathesis.openapi.from_dict(_narrowed(create_app({}).openapi()),
                                        config=schemathesis.Config.from_dict(CONFIG))
schema.app = create_app({})


@schema.parametrize()
@settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])  # one app per operation
def test_the_api_conforms_to_its_schema(case, served_app):
    case.call_and_validate(app=served_app, checks=CHECKS)
