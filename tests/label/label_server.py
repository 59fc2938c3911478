"""A live annotation server for browser tests: uvicorn.Server in a thread on a free loopback port."""

from __future__ import annotations

import contextlib
import socket
import threading
import time


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def live_server(project, annotator: str = "default"):
    """Yield the base URL of ``lmforge.label.server.create_app(project)`` served on 127.0.0.1."""
    import uvicorn

    from lmforge.label.server import create_app

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(project, annotator), host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 20
    while not server.started:
        if time.time() > deadline or not thread.is_alive():
            raise RuntimeError("the annotation server did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
