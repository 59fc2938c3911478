"""``lmforge label serve``: the annotation page (FastAPI) over one labeling project.

One static page (``static/index.html`` + ``static/app.js``, plain JavaScript, no build step) shows
one example at a time with the model's pre-label and confidence; every action is a POST that is
committed to the project before the response. Bad requests get a 4xx with a message
(``{"error": ..., "hint": ...}``). The server binds 127.0.0.1 by default: it has no login, so
anyone who can reach the port can annotate.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from ..errors import LmforgeError
from .labelstudio import LS_KEY
from .project import Project
from .values import LabelError, NotFoundError

STATIC = Path(__file__).parent / "static"


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")
    annotator: str | None = Field(None, min_length=1, max_length=200)


class AnnotateBody(_Body):
    id: str = Field(..., min_length=1)
    value: Any


class SkipBody(_Body):
    id: str = Field(..., min_length=1)


class UndoBody(_Body):
    pass


def _public(ex: dict | None, proj: Project, annotator: str) -> dict | None:
    """An example as the page sees it: no imported Label Studio task, plus the prediction and the
    annotator's current value."""
    if ex is None:
        return None
    meta = {k: v for k, v in ex["meta"].items() if k != LS_KEY}
    preds = proj.predictions(ex["id"])
    pred = preds[0] if preds else None
    return {"id": ex["id"], "text": ex["text"], "meta": meta, "kind": ex["kind"], "labels": ex["labels"],
            "prediction": None if pred is None else {"model": pred["model"], "value": pred["value"],
                                                     "score": pred["score"]},
            "current": proj.value_of(ex["id"], annotator)}


def create_app(project: str | Path, annotator: str = "default") -> FastAPI:
    """The app for one project; ``annotator`` is the name used when a request names none."""
    proj = Project(project)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        proj.close()

    app = FastAPI(title="lmforge label", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.state.project = proj

    def who(name: str | None) -> str:
        return (name or annotator).strip() or annotator

    def state(name: str, ex: dict | None = None) -> dict:
        return {"example": _public(ex if ex is not None else proj.next_unlabeled(name), proj, name),
                "progress": proj.progress(name), "annotator": name}

    @app.exception_handler(LmforgeError)
    async def _user_error(request: Request, err: LmforgeError):
        status = 404 if isinstance(err, NotFoundError) else 400
        return JSONResponse({"error": err.message, "hint": err.hint}, status_code=status)

    @app.exception_handler(RequestValidationError)
    async def _bad_request(request: Request, err: RequestValidationError):
        parts = []
        for e in err.errors():
            loc = ".".join(str(x) for x in e.get("loc", ()) if x != "body") or "body"
            parts.append(f"{loc}: {e.get('msg', 'invalid')}")
        return JSONResponse({"error": "bad request: " + "; ".join(parts),
                             "hint": "send JSON like {\"id\": \"...\", \"value\": ...}"}, status_code=422)

    @app.get("/", include_in_schema=False)
    def index():
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @app.get("/app.js", include_in_schema=False)
    def script():
        return FileResponse(STATIC / "app.js", media_type="text/javascript")

    @app.get("/api/schema")
    def schema(annotator: str | None = None):
        return {"kind": proj.kind, "labels": proj.labels, "project": proj.path.name, "annotator": who(annotator)}

    @app.get("/api/next")
    def next_example(annotator: str | None = None):
        return state(who(annotator))

    @app.get("/api/progress")
    def progress(annotator: str | None = None):
        return proj.progress(who(annotator))

    @app.get("/api/example/{example_id}")
    def example(example_id: str, annotator: str | None = None):
        return _public(proj.example(example_id), proj, who(annotator))

    @app.post("/api/annotate")
    def annotate(body: AnnotateBody):
        name = who(body.annotator)
        saved = proj.annotate(body.id, body.value, name)
        return {"saved": {"id": body.id, "value": saved}, **state(name)}

    @app.post("/api/skip")
    def skip(body: SkipBody):
        name = who(body.annotator)
        proj.skip(body.id, name)
        return {"skipped": body.id, **state(name)}

    @app.post("/api/undo")
    def undo(body: UndoBody | None = None):
        name = who(body.annotator if body else None)
        undone = proj.undo(name)
        if undone is None:
            raise LabelError("nothing to undo", "annotate or skip an example first")
        return {"undone": undone, **state(name, proj.example(undone))}

    return app


def serve(project: str | Path, host: str = "127.0.0.1", port: int = 8765, annotator: str = "default") -> None:
    import uvicorn

    uvicorn.run(create_app(project, annotator), host=host, port=port, log_level="warning")
