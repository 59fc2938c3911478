"""The door of ``lmforge serve``: body size, concurrency, API key, unexpected errors, request metrics.

``Guard`` is pure ASGI middleware (so streaming responses pass through untouched) in front of every
route: a body over ``max_body_bytes`` is a 413 (Content-Length or the streamed bytes); more than
``max_concurrent`` ``/v1/*`` requests in flight is a 429 with Retry-After; with ``api_key`` set every
``/v1/*`` route needs ``Authorization: Bearer KEY`` (401; ``/health``, ``/ready``, ``/metrics`` and
the playground stay open); an exception no handler caught is logged and answered 500 in OpenAI's
error shape, and the worker goes on. Every request is counted in the app's ``Metrics``.
"""

from __future__ import annotations

import hmac
import logging
import time
from typing import TYPE_CHECKING

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from .errors import APIError
from .metrics import Metrics

if TYPE_CHECKING:
    from .app import Settings

log = logging.getLogger(__name__)


def error_response(err: APIError) -> JSONResponse:
    return JSONResponse(err.body(), status_code=err.status, headers=err.headers)


class _BodyTooLarge(Exception):
    pass


class Guard:
    """Pure ASGI middleware (streaming responses pass through untouched); see the module docstring."""

    def __init__(self, app, owner: FastAPI):
        self.app, self.owner = app, owner

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
            await error_response(err)(scope, receive, send_and_watch)

        counted = False
        try:
            if api and settings.api_key and not self._authorized(scope, settings.api_key):
                return await respond(_auth_error(scope))
            if api:
                if metrics.requests_in_flight >= settings.max_concurrent:
                    return await respond(APIError(
                        429, f"the server has {metrics.requests_in_flight} requests in flight (its limit); "
                        "retry shortly",
                        type="rate_limit_error", code="too_many_requests", headers={"Retry-After": "1"}))
                metrics.enter()
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
                metrics.leave()
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
        """The route's template (``/v1/models/{model_id:path}``), also for a request refused at the door
        before routing (401, 413, 429); paths no route matches are one label."""
        route = scope.get("route")
        if getattr(route, "path", None):
            return route.path
        # (routers included with include_router are not plain routes of app.routes in recent FastAPI:
        # create_app lists them in app.state.routes)
        for r in (*self.owner.router.routes, *getattr(self.owner.state, "routes", ())):
            regex = getattr(r, "path_regex", None)
            if regex is not None and regex.match(scope["path"]):
                return r.path
        return "unmatched"


def _auth_error(scope) -> APIError:
    has = b"authorization" in dict(scope["headers"])
    msg = ("Incorrect API key provided." if has else
           "You didn't provide an API key. Send it as 'Authorization: Bearer KEY' (the server's --api-key).")
    return APIError(401, msg, code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"})

