"""The web playground at ``/``: chat with streaming and a form per task endpoint, for trying a server.

A static page (``static/playground.html`` + ``playground.js``, plain JavaScript, no build step) that
calls the same public endpoints any client calls (``/v1/chat/completions`` with ``stream: true``,
``/v1/classify`` …), so what works in the playground works from code. ``/playground/models`` tells
the page which models are served, what kind each is (``/v1/models`` keeps OpenAI's format, which has
no kind) and its context in tokens (0: no limit), so the page's max-tokens defaults fit small models.
The routes stay out of the OpenAPI schema: they are not part of the API.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse

STATIC = Path(__file__).parent / "static"

# which section of the page each kind of model gets
SECTIONS = {"chat": "chat", "decoder": "complete", "encoder": "embed", "classification": "classify",
            "ner": "ner", "translation": "translate", "summarization": "summarize", "qa": "qa"}

router = APIRouter(include_in_schema=False)


@router.get("/")
def page() -> FileResponse:
    return FileResponse(STATIC / "playground.html", media_type="text/html")


@router.get("/playground.js")
def script() -> FileResponse:
    return FileResponse(STATIC / "playground.js", media_type="text/javascript")


@router.get("/playground/models")
def models(request: Request) -> dict:
    served = getattr(request.app.state, "models", {})
    return {"auth": bool(getattr(getattr(request.app.state, "settings", None), "api_key", None)),
            "models": [{"id": name, "kind": m.kind, "section": SECTIONS.get(m.kind, ""), "context": m.context or 0}
                       for name, m in served.items()]}
