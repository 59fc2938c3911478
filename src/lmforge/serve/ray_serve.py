"""``lmforge serve --ray``: the same FastAPI app as a Ray Serve deployment, for more than one process.

Each replica builds the whole app (``app.create_app`` over ``app.load_models``) in its own process
when Ray starts it (``serve.ingress()`` with ``__serve_build_asgi_app__``), so a replica is exactly
the single-process server: same routes, limits, batching and metrics. Replicas share nothing (the
server is stateless), so Ray's proxy may send any request to any of them. Ray and Ray Serve are an
optional extra (``lmforge[ray]``), imported only here.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ..errors import ConfigError

APP_NAME = "lmforge"


def absolute_specs(specs: list[str]) -> list[str]:
    """``[NAME=]DIR`` with DIR made absolute: replicas may start in another working directory."""
    out = []
    for spec in specs:
        name, sep, path = spec.rpartition("=") if "=" in spec else ("", "", spec)
        out.append(f"{name}{sep}{Path(path).expanduser().resolve()}")
    return out


def deployment_options(replicas: int | None, min_replicas: int | None, max_replicas: int | None,
                       target_ongoing_requests: float | None, replica_cpus: float) -> dict[str, Any]:
    """``serve.deployment`` options: a fixed number of replicas, or autoscaling between two bounds."""
    opts: dict[str, Any] = {"ray_actor_options": {"num_cpus": replica_cpus}}
    if min_replicas is None and max_replicas is None:
        if replicas is not None and replicas < 1:
            raise ConfigError(f"--replicas {replicas}: need at least 1", "use --replicas 1 or more")
        opts["num_replicas"] = replicas or 1
        return opts
    if replicas is not None:
        raise ConfigError("--replicas and --min-replicas/--max-replicas both given",
                          "give a fixed --replicas, or autoscaling bounds, not both")
    lo, hi = min_replicas or 1, max_replicas or max(min_replicas or 1, 1)
    if not 0 <= lo <= hi or hi < 1:
        raise ConfigError(f"autoscaling bounds min {lo}, max {hi} are not 0 <= min <= max, max >= 1",
                          "e.g. --min-replicas 1 --max-replicas 4")
    opts["autoscaling_config"] = {"min_replicas": lo, "max_replicas": hi, "initial_replicas": max(lo, 1),
                                  "target_ongoing_requests": target_ongoing_requests or 16}
    return opts


def build(specs: list[str], settings: Any, options: dict[str, Any]):
    """The bound Ray Serve application (``serve.run`` takes it)."""
    try:
        from ray import serve
    except ImportError:
        raise ConfigError("lmforge serve --ray needs Ray Serve", "pip install 'lmforge[ray]'") from None

    settings_dict = asdict(settings)

    @serve.ingress()
    class LmforgeServer:
        """One replica: the lmforge app over its own copy of the models."""

        def __init__(self, specs: list[str], settings: dict):
            self.specs, self.settings = specs, settings

        def __serve_build_asgi_app__(self):
            from .app import Settings, create_app, load_models

            return create_app(load_models(self.specs), Settings(**self.settings))

    deployment = serve.deployment(LmforgeServer, name="lmforge", **options)
    return deployment.bind(absolute_specs(specs), settings_dict)


def run(specs: list[str], settings: Any, options: dict[str, Any], address: str | None = None,
        block: bool = True) -> None:
    """Start (or join) Ray, deploy the app behind Ray's HTTP proxy on settings.host:port, and wait."""
    import ray
    from ray import serve

    app = build(specs, settings, options)
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    serve.start(http_options={"host": settings.host, "port": settings.port})
    serve.run(app, name=APP_NAME, route_prefix="/")
    if not block:
        return
    print(f"lmforge serve (Ray Serve) on http://{settings.host}:{settings.port}  (Ctrl-C stops)", flush=True)
    try:
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        serve.shutdown()
        ray.shutdown()
