"""Errors as OpenAI's error object: ``{"error": {"message", "type", "param", "code"}}`` with its status.

Every handler raises ``APIError``; the app turns it (and FastAPI's validation errors) into this
shape, so clients such as the ``openai`` package raise their usual exception classes.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi.exceptions import RequestValidationError


class APIError(Exception):
    """A request the client can fix (4xx) or a server condition it can wait out (429, 503)."""

    def __init__(self, status: int, message: str, type: str = "invalid_request_error", param: str | None = None,
                 code: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def not_found_model(name: str, known: list[str]) -> APIError:
    hint = f"; served models: {', '.join(sorted(known))}" if known else ""
    return APIError(404, f"The model '{name}' does not exist{hint}", param="model", code="model_not_found")


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
