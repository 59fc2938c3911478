"""Sampling from decoder models with a KV cache.

``stream`` yields token ids one at a time (for servers and the CLI); ``generate`` collects them.
Greedy decoding is ``temperature=0``. With ``use_cache=False`` every step re-runs the whole prefix,
which tests use to check the cache gives identical greedy output.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterator

import torch


@dataclass
class SamplingConfig:
    max_new_tokens: int = 64
    temperature: float = 0.8
    top_k: int | None = 50
    top_p: float | None = None
    repetition_penalty: float = 1.0
    stop: list[str] = field(default_factory=list)
    eos_token_id: int | None = None
    seed: int | None = None


def _filter_logits(logits: torch.Tensor, top_k: int | None, top_p: float | None) -> torch.Tensor:
    if top_k:
        kth = torch.topk(logits, min(top_k, logits.size(-1))).values[..., -1, None]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and 0 < top_p < 1:
        sorted_logits, order = torch.sort(logits, descending=True)
        probs = sorted_logits.softmax(-1)
        # drop tokens once the cumulative mass *before* them exceeds top_p (always keeps the first)
        drop = probs.cumsum(-1) - probs > top_p
        sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
        logits = torch.full_like(logits, float("-inf")).scatter(-1, order, sorted_logits)
    return logits


def _apply_repetition_penalty(logits: torch.Tensor, seen: torch.Tensor, penalty: float) -> torch.Tensor:
    """CTRL-style: divide positive logits of already-generated tokens by ``penalty``, multiply negative ones."""
    if penalty == 1.0:
        return logits
    picked = logits.gather(-1, seen)
    picked = torch.where(picked > 0, picked / penalty, picked * penalty)
    return logits.scatter(-1, seen, picked)


@torch.no_grad()
def stream(model, prompt_ids: list[int], cfg: SamplingConfig, use_cache: bool = True,
           decode: Callable[[list[int]], str] | None = None) -> Iterator[int]:
    """Yield new token ids; stops at EOS, ``max_new_tokens``, the context limit or a stop string."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    gen = torch.Generator(device="cpu")
    if cfg.seed is not None:
        gen.manual_seed(cfg.seed)
    block = model.config.block_size
    ids = torch.tensor([prompt_ids[-block:]], dtype=torch.long, device=device)
    cache = model.new_cache() if use_cache else None
    new: list[int] = []
    step_input = ids
    try:
        for _ in range(cfg.max_new_tokens):
            if cache is not None and cache.length + step_input.shape[1] > block:
                break  # context full: stop rather than silently forget the prompt
            if cache is None:
                step_input = ids[:, -block:]
            logits, _ = model(step_input, cache=cache)
            logits = logits[:, -1, :].float()
            logits = _apply_repetition_penalty(logits, ids, cfg.repetition_penalty)
            if cfg.temperature <= 0:
                nxt = logits.argmax(-1, keepdim=True)
            else:
                probs = _filter_logits(logits / cfg.temperature, cfg.top_k, cfg.top_p).softmax(-1)
                nxt = torch.multinomial(probs.cpu(), 1, generator=gen).to(device)
            token = int(nxt)
            if cfg.eos_token_id is not None and token == cfg.eos_token_id:
                break
            new.append(token)
            yield token
            ids = torch.cat([ids, nxt], dim=1)
            step_input = nxt
            if cfg.stop and decode is not None:
                text = decode(new)
                if any(s in text for s in cfg.stop):
                    break
    finally:
        model.train(was_training)


def generate(model, prompt_ids: list[int], cfg: SamplingConfig, use_cache: bool = True,
             decode: Callable[[list[int]], str] | None = None) -> list[int]:
    return list(stream(model, prompt_ids, cfg, use_cache=use_cache, decode=decode))


def truncate_at_stop(text: str, stop: list[str]) -> str:
    """Cut generated text at the first stop string (the stop string itself is removed)."""
    cut = min((text.find(s) for s in stop if s in text), default=-1)
    return text if cut < 0 else text[:cut]
