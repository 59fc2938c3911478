"""``lmforge serve`` as a real process on a free loopback port, for the live tests (OpenAI client, browser,
load), and the tiny task model they serve beside the conftest's decoder and chat model."""

from __future__ import annotations

import contextlib
import re
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class LiveServer:
    proc: subprocess.Popen
    url: str
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@contextlib.contextmanager
def live_server(models: list[str], root: Path, *options: str, ready_timeout: float = 90):
    """``lmforge serve MODELS... --port P OPTIONS...``, output in ``root/server.log``; yields a ``LiveServer``
    once ``/ready`` answers 200 and kills the process afterwards if it is still running."""
    port = free_port()
    log = Path(root) / f"server-{port}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "lmforge", "serve", *models, "--port", str(port), *options],
                                stdout=out, stderr=subprocess.STDOUT)
    server = LiveServer(proc, f"http://127.0.0.1:{port}", log)
    try:
        deadline = time.monotonic() + ready_timeout
        while True:
            assert proc.poll() is None, f"the server exited early:\n{server.output()}"
            try:
                if httpx.get(f"{server.url}/ready", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"not ready in time:\n{server.output()}"
            time.sleep(0.2)
        yield server
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def save_classifier(root: Path, tok, labels=("neg", "pos"), seed: int = 4) -> Path:
    """A classification fine-tune directory (task.json) over a tiny GPT with ``tok``: ``/v1/classify``."""
    from lmforge.models.io import save_model
    from lmforge.tasks.classification import Classification, ClassificationConfig

    from .conftest import tiny_gpt

    task = Classification(ClassificationConfig(max_len=16, dropout=0.0))
    task.fit([{"label": y} for y in labels])
    tok.save(root / "clf-tok")
    out = save_model(task.build_model(tiny_gpt(tok.vocab_size, seed=seed), tok), root / "clf",
                     extra_files=sorted((root / "clf-tok").iterdir()))
    task.save(out)
    return out


def metric(text: str, name: str, **labels) -> float:
    """A sample's value from the Prometheus text format (0.0 when absent)."""
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            got = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0])) if "{" in line else {}
            if all(got.get(k) == str(v) for k, v in labels.items()):
                return float(line.rsplit(" ", 1)[1])
    return 0.0
