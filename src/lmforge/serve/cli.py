"""``lmforge serve [NAME=]MODEL_DIR ...``: one HTTP server for decoders, chat, encoder and task models.

A plain function with Typer annotations (the main CLI mounts it). uvicorn runs the app; Ctrl-C (or
SIGTERM) drains: ``/ready`` turns 503 at once, requests in flight finish (up to ``--drain-timeout``
seconds) and the process exits 0.
"""

from __future__ import annotations

import math
from typing import Optional

import typer


def serve(
    models: list[str] = typer.Argument(..., metavar="[NAME=]MODEL_DIR...", help="Models to serve, each [NAME=]MODEL_DIR (NAME defaults to the "
                                       "directory's name); clients pick one by NAME in 'model'."),
    host: str = typer.Option("127.0.0.1", help="Address to bind (0.0.0.0 for every interface: set --api-key)."),
    port: int = typer.Option(8000, help="Port."),
    api_key: Optional[str] = typer.Option(None, envvar="LMFORGE_API_KEY",
                                          help="Require 'Authorization: Bearer KEY' on /v1/* (env LMFORGE_API_KEY)."),
    max_batch: int = typer.Option(32, min=1, help="Inputs per dynamic batch (encoder and task models)."),
    batch_wait_ms: float = typer.Option(5.0, min=0, help="How long a dynamic batch waits for more inputs (ms)."),
    gen_max_batch: int = typer.Option(8, min=1, help="Sequences decoded together (decoder and chat models)."),
    max_concurrent: int = typer.Option(64, min=1, help="Requests in flight before the server answers 429."),
    request_timeout: float = typer.Option(60.0, min=0, help="Seconds a request may take (408 after; 0 = no limit)."),
    drain_timeout: float = typer.Option(30.0, min=0, help="Seconds to finish requests in flight on shutdown."),
    ray: bool = typer.Option(False, "--ray", help="Run as a Ray Serve deployment (replicas behind Ray's HTTP proxy; "
                                                  "needs lmforge\\[ray])."),
    replicas: Optional[int] = typer.Option(None, help="--ray: a fixed number of replicas (default 1)."),
    min_replicas: Optional[int] = typer.Option(None, help="--ray: autoscaling lower bound."),
    max_replicas: Optional[int] = typer.Option(None, help="--ray: autoscaling upper bound."),
    target_ongoing_requests: Optional[float] = typer.Option(None, help="--ray: autoscaling target of requests in "
                                                                        "flight per replica (default 16)."),
    replica_cpus: float = typer.Option(1.0, min=0, help="--ray: CPUs Ray reserves per replica."),
    ray_address: Optional[str] = typer.Option(None, help="--ray: an existing cluster (e.g. 'auto' or ray://HOST:10001); "
                                                         "default: start a local Ray."),
) -> None:
    """Serve models over HTTP: OpenAI-compatible /v1/completions, /v1/chat/completions, /v1/embeddings,
    task endpoints (/v1/classify, /v1/ner, /v1/translate, /v1/summarize, /v1/qa), /metrics and a playground at /.

    MODEL_DIR may also be an `lmforge export --to onnx` directory (an encoder, classification, NER or QA model):
    it runs on onnxruntime, with the same endpoints and results.

    Example: lmforge serve tiny=runs/quick/pretrain/model sst2=runs/sst2/finetune/pretrained/model --port 8000
    """
    import uvicorn

    from .app import Settings, create_app, load_models

    settings = Settings(host=host, port=port, api_key=api_key or None, max_batch=max_batch,
                        batch_wait_ms=batch_wait_ms, gen_max_batch=gen_max_batch, max_concurrent=max_concurrent,
                        request_timeout=request_timeout or None, drain_timeout=drain_timeout)
    if ray:
        from . import ray_serve

        options = ray_serve.deployment_options(replicas, min_replicas, max_replicas, target_ongoing_requests,
                                               replica_cpus)
        load_models(models)  # a clear error here, before Ray starts replicas that would fail the same way
        ray_serve.run(models, settings, options, address=ray_address)
        return
    served = load_models(models)  # a clear error before anything binds
    app = create_app(served, settings)

    class Server(uvicorn.Server):
        def handle_exit(self, sig, frame) -> None:
            app.state.draining = True  # /ready answers 503 while uvicorn finishes what is in flight
            super().handle_exit(sig, frame)
            getattr(self, "_captured_signals", []).clear()  # a drained shutdown is a clean exit (0)

    config = uvicorn.Config(app, host=host, port=port, lifespan="on", timeout_graceful_shutdown=math.ceil(drain_timeout),
                            log_level="info", access_log=False)
    if host not in ("127.0.0.1", "localhost", "::1") and not settings.api_key:
        typer.echo(f"warning: binding {host} without --api-key: anyone who can reach it can use the models", err=True)
    shown = "[::1]" if host == "::1" else host
    for name, m in app.state.models.items():
        typer.echo(f"  {name}: {m.kind} ({m.path})")
    typer.echo(f"serving {len(served)} model(s) at http://{shown}:{port}/  (OpenAI base_url: http://{shown}:{port}/v1)",
               color=False)
    Server(config).run()
