"""Errors as OpenAI's error object: ``{"error": {"message", "type", "param", "code"}}`` with its status.

Every handler raises ``APIError``; the app turns it (and FastAPI's validation errors) into this
shape, so clients such as the ``openai`` package raise their usual exception classes.
"""

from __future__ import annotations

from typing import Any


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
