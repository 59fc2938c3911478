"""``lmforge chat --model DIR``: a terminal conversation with a chat model, replies streamed.

A plain function with Typer annotations (the main CLI mounts it). The REPL reads one user message
per line from stdin (a pipe works as well as a terminal), streams the reply token by token and keeps
the history within the model's context (``Tok.chat_prompt`` drops the oldest turns, never the
system message). ``/reset`` forgets the history, ``/exit`` (or end of input) quits.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Iterator, Optional, TextIO

import typer

from ..errors import InputError

HELP = "/reset clears the history, /exit quits"


def load_chat_model(model_dir: str | Path):
    """(model, tok) from a chat fine-tune (task.json kind chat) or any decoder directory."""
    import json

    from ..models.gpt import GPT
    from ..models.io import load_model
    from ..tokenizer import Tok

    model_dir = Path(model_dir)
    task_file = model_dir / "task.json"
    if task_file.exists():
        kind = json.loads(task_file.read_text(encoding="utf-8")).get("kind")
        if kind != "chat":
            raise InputError(f"{model_dir} is a fine-tuned '{kind}' model, not a chat model",
                             "point --model at a chat fine-tune (finetune.task.kind: chat) or a pretrained decoder")
    model = load_model(model_dir).eval()
    if not isinstance(model, GPT):
        raise InputError(f"{model_dir} holds a {type(model).__name__}, not a decoder", "chat needs a GPT-style model")
    return model, Tok.load(model_dir)


class IncrementalText:
    """Token ids in, printable text out: waits for the rest of a multi-byte character, cuts at a stop
    string and holds back a tail that may be the start of one, so the screen never shows half a
    character or half a stop marker."""

    def __init__(self, tok, stop: list[str]):
        self.tok, self.stop = tok, [s for s in stop if s]
        self.ids: list[int] = []
        self.shown = ""
        self.stopped = False

    def _visible(self, final: bool) -> str:
        from ..models.generate import truncate_at_stop

        text = self.tok.decode(self.ids)
        if any(s in text for s in self.stop):
            self.stopped = True
            return truncate_at_stop(text, self.stop)
        if final:
            return text.rstrip("\ufffd")
        text = text.rstrip("\ufffd")  # an incomplete UTF-8 sequence: wait for its other bytes
        hold = max((k for s in self.stop for k in range(1, len(s)) if text.endswith(s[:k])), default=0)
        return text[: len(text) - hold]

    def add(self, token: int) -> str:
        if self.stopped:
            return ""
        self.ids.append(token)
        text = self._visible(final=False)
        piece = text[len(self.shown):] if text.startswith(self.shown) else ""
        self.shown = text if text.startswith(self.shown) else self.shown
        return piece

    def finish(self) -> str:
        text = self._visible(final=True)
        piece = text[len(self.shown):] if text.startswith(self.shown) else ""
        self.shown += piece
        return piece


class ChatSession:
    """A conversation: history, the prompt within the context, streamed replies."""

    def __init__(self, model, tok, system: str | None = None, sampling=None):
        from ..models.generate import SamplingConfig

        self.model, self.tok, self.system = model, tok, system
        stop_ids = tok.chat_stop_ids
        self.cfg = sampling or SamplingConfig()
        self.cfg.eos_token_id = stop_ids[0] if stop_ids else tok.eos_id
        self.cfg.stop = list(dict.fromkeys(list(self.cfg.stop) + tok.chat_stop_strings
                                           + [tok.decode([i]) for i in stop_ids[1:]]))
        block = model.config.block_size
        self.cfg.max_new_tokens = max(1, min(self.cfg.max_new_tokens, block // 2))
        self.budget = block - self.cfg.max_new_tokens
        self.reset()

    def reset(self) -> None:
        self.messages: list[dict] = [{"role": "system", "content": self.system}] if self.system else []

    def prompt_ids(self) -> list[int]:
        return self.tok.chat_prompt(self.messages, max_length=self.budget)

    def reply(self, text: str) -> Iterator[str]:
        """Stream the reply to ``text`` in printable pieces; the full reply joins the history."""
        from ..models.generate import stream

        self.messages.append({"role": "user", "content": text})
        try:
            ids = self.prompt_ids()
        except InputError:
            self.messages.pop()
            raise
        out = IncrementalText(self.tok, self.cfg.stop)
        for token in stream(self.model, ids, self.cfg, decode=self.tok.decode):
            piece = out.add(token)
            if piece:
                yield piece
            if out.stopped:
                break
        piece = out.finish()
        if piece:
            yield piece
        self.messages.append({"role": "assistant", "content": out.shown.strip()})
        if self.cfg.seed is not None:
            self.cfg.seed += 1  # a seeded session is reproducible, yet turns do not repeat one draw


def repl(session: ChatSession, stdin: TextIO, stdout: TextIO, interactive: bool | None = None) -> int:
    """Read user lines until /exit or end of input; returns the number of replies."""
    interactive = stdin.isatty() if interactive is None else interactive
    if interactive:
        stdout.write(f"chat ({HELP})\n")
    n = 0
    while True:
        if interactive:
            stdout.write("you> ")
            stdout.flush()
        line = stdin.readline()
        if not line:
            break
        text = line.strip()
        if not text:
            continue
        if text in ("/exit", "/quit"):
            break
        if text == "/reset":
            session.reset()
            stdout.write("(history cleared)\n")
            continue
        if text.startswith("/") and " " not in text:
            stdout.write(f"unknown command {text} ({HELP})\n")
            continue
        stdout.write("assistant> ")
        try:
            for piece in session.reply(text):
                stdout.write(piece)
                stdout.flush()
        except InputError as err:
            stdout.write(f"\n(error: {err})\n")
            continue
        stdout.write("\n")
        stdout.flush()
        n += 1
    return n


def chat(model: Path = typer.Option(..., "--model", help="a chat fine-tune's model directory (or any decoder)"),
         system: Optional[str] = typer.Option(None, "--system", help="system message at the start of the chat"),
         temperature: float = typer.Option(0.7, "--temperature", min=0.0, help="0 = greedy"),
         max_new_tokens: int = typer.Option(256, "--max-new-tokens", min=1, help="reply length limit (tokens)"),
         top_k: Optional[int] = typer.Option(40, "--top-k", min=1),
         top_p: Optional[float] = typer.Option(0.95, "--top-p", min=0.0, max=1.0),
         repetition_penalty: float = typer.Option(1.1, "--repetition-penalty", min=1.0),
         seed: Optional[int] = typer.Option(None, "--seed", help="reproducible sampling")) -> None:
    """Chat with a model in the terminal; replies stream as they are generated.

    Example: lmforge chat --model runs/chat-sft-en/finetune/pretrained/model --system "Be brief."
    (one message per line; /reset clears the history, /exit quits; stdin may be a pipe)
    """
    from ..models.generate import SamplingConfig

    m, tok = load_chat_model(model)
    cfg = SamplingConfig(max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                         repetition_penalty=repetition_penalty, seed=seed)
    repl(ChatSession(m, tok, system, cfg), sys.stdin, sys.stdout)
