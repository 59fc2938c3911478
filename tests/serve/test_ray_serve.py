"""`lmforge serve --ray` on a local Ray: two replicas of the same app behind Ray Serve's HTTP proxy.

Starts a real local Ray (2 CPUs, half a CPU per replica), deploys the tiny decoder and chat models,
then talks to the proxy as any client would: /health, /v1/models, a completion, a streamed chat.
"""

from __future__ import annotations

import json
import socket

import httpx
import pytest

pytest.importorskip("ray.serve", reason="Ray Serve is not installed (pip install 'lmforge[ray]')")

from lmforge.errors import ConfigError  # noqa: E402
from lmforge.serve.ray_serve import absolute_specs, deployment_options  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_options():
    assert deployment_options(None, None, None, None, 1.0) == {"ray_actor_options": {"num_cpus": 1.0},
                                                                "num_replicas": 1}
    auto = deployment_options(None, 1, 4, 8, 0.5)["autoscaling_config"]
    assert auto == {"min_replicas": 1, "max_replicas": 4, "initial_replicas": 1, "target_ongoing_requests": 8}
    with pytest.raises(ConfigError, match="both given"):
        deployment_options(2, 1, 4, None, 1.0)
    with pytest.raises(ConfigError, match="not 0 <= min <= max"):
        deployment_options(None, 3, 2, None, 1.0)
    with pytest.raises(ConfigError, match="at least 1"):
        deployment_options(0, None, None, None, 1.0)


def test_absolute_specs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert absolute_specs(["tiny=models/a", "models/b"]) == [f"tiny={tmp_path}/models/a", f"{tmp_path}/models/b"]


@pytest.fixture(scope="module")
def ray_server(decoder_dir, chat_dir):
    import ray
    from ray import serve

    from lmforge.serve.app import Settings
    from lmforge.serve.ray_serve import run

    port = _free_port()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        run([f"tiny={decoder_dir}", f"chat={chat_dir}"], Settings(port=port),
            deployment_options(2, None, None, None, 0.5), block=False)
        yield f"http://127.0.0.1:{port}"
    finally:
        serve.shutdown()
        ray.shutdown()


def test_two_replicas_answer_as_one_server(ray_server):
    from ray import serve

    status = serve.status().applications["lmforge"]
    assert status.status == "RUNNING"
    replicas = status.deployments["lmforge"].replica_states
    assert replicas.get("RUNNING") == 2, replicas

    with httpx.Client(base_url=ray_server, timeout=60) as c:
        assert c.get("/health").json() == {"status": "ok"}
        assert sorted(m["id"] for m in c.get("/v1/models").json()["data"]) == ["chat", "tiny"]
        for _ in range(6):  # the proxy spreads these over both replicas; each answers the same
            r = c.post("/v1/completions", json={"model": "tiny", "prompt": "Hello there", "max_tokens": 5,
                                                "temperature": 0})
            assert r.status_code == 200, r.text
            assert r.json()["usage"]["completion_tokens"] == 5
        texts = set()
        for _ in range(3):
            texts.add(c.post("/v1/completions", json={"model": "tiny", "prompt": "Hello there", "max_tokens": 5,
                                                      "temperature": 0}).json()["choices"][0]["text"])
        assert len(texts) == 1  # greedy: every replica holds the same weights

        chunks = []
        with c.stream("POST", "/v1/chat/completions",
                      json={"model": "chat", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 6,
                            "stream": True}) as r:
            assert r.status_code == 200
            for line in r.iter_lines():
                if line.startswith("data: "):
                    chunks.append(line[6:])
        assert chunks[-1] == "[DONE]"
        assert json.loads(chunks[0])["object"] == "chat.completion.chunk"

        bad = c.post("/v1/completions", json={"model": "nope", "prompt": "x"})
        assert bad.status_code == 404 and bad.json()["error"]["code"] == "model_not_found"
