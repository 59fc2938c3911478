"""Text generation from a trained decoder (GPT or a recurrent LM): the ``generate`` stage and ``lmforge generate``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

import torch.nn as nn
from pydantic import Field

from ..config import StrictModel
from ..errors import InputError
from ..models.generate import SamplingConfig, stream, truncate_at_stop
from ..runs import StageResult, atomic_write_text


class GenerateConfig(StrictModel):
    prompts: list[str] = Field(default_factory=lambda: ["the movie"])
    max_new_tokens: int = Field(48, ge=1)
    temperature: float = Field(0.8, ge=0)
    top_k: int | None = Field(40, ge=1)
    top_p: float | None = Field(0.95, gt=0, le=1)
    repetition_penalty: float = Field(1.1, ge=1)
    stop: list[str] = Field(default_factory=list)
    seed: int = 0

    def sampling(self) -> SamplingConfig:
        return SamplingConfig(max_new_tokens=self.max_new_tokens, temperature=self.temperature, top_k=self.top_k,
                              top_p=self.top_p, repetition_penalty=self.repetition_penalty, stop=self.stop,
                              seed=self.seed)


def load_decoder(model_dir: Path) -> tuple[nn.Module, object]:
    from ..models.io import load_model, read_config
    from ..tokenizer import Tok

    model_dir = Path(model_dir)
    if not (model_dir / "config.json").exists():
        raise InputError(f"no config.json in {model_dir}", "point --model at a pretrain output, e.g. runs/quickstart/pretrain/model")
    cfg = read_config(model_dir)
    if cfg.model_type not in ("gpt", "rnn"):
        raise InputError(f"{model_dir} holds a '{cfg.model_type}' model, not a decoder",
                         "generation needs a GPT or a (one-directional) RNN language model (a pretrain output)")
    if cfg.model_type == "rnn" and cfg.bidirectional:
        raise InputError(f"{model_dir} holds a bidirectional RNN, which reads the future and cannot generate",
                         "generate from an RNN pretrained with model.bidirectional: false")
    return load_model(model_dir).eval(), Tok.load(model_dir)


def generate_text(model: nn.Module, tok, prompt: str, cfg: SamplingConfig) -> Iterator[str]:
    """Yield text pieces as they are generated (decoded incrementally so multi-byte characters stay whole)."""
    ids = tok.encode(prompt)
    if cfg.eos_token_id is None:
        cfg.eos_token_id = tok.eos_id
    new: list[int] = []
    shown = ""
    for t in stream(model, ids, cfg, decode=tok.decode):
        new.append(t)
        text = tok.decode(new)
        if text.endswith("\ufffd"):
            continue  # wait for the rest of a multi-byte character
        text = truncate_at_stop(text, cfg.stop)
        yield text[len(shown):]
        shown = text


def run(cfg: GenerateConfig, model_dir: Path, out_dir: Path) -> StageResult:
    model, tok = load_decoder(model_dir)
    rows = []
    for i, prompt in enumerate(cfg.prompts):
        sampling = cfg.sampling()
        sampling.seed = cfg.seed + i
        completion = "".join(generate_text(model, tok, prompt, sampling))
        rows.append({"prompt": prompt, "completion": completion})
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / "samples.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return StageResult(metrics={"samples": len(rows)}, outputs=[str(out_dir / "samples.jsonl")])
