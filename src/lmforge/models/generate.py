"""Sampling from decoder models with a per-row KV cache, one sampler for every family, beam search.

``stream_batch`` decodes a left-padded batch of prompts together and yields ``(row, token)`` events;
``generate_batch`` collects them per row. Rows stop independently (EOS, a stop string,
``max_new_tokens`` or the context limit) and the batch is compacted as they do, so finished rows
cost nothing. ``stream`` / ``generate`` are the single-prompt calls of the same code. Greedy decoding
is ``temperature=0``; with ``use_cache=False`` every step re-runs the whole prefix, which tests use to
check the cache gives identical greedy output.

``sample_next`` is the one sampler (decoders here, ``Seq2Seq.generate`` too). ``beam_search`` is
model-agnostic: it drives a ``step`` callback, which ``Seq2Seq.beam_search`` wires to its encoder
memory and decoder cache.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterator

import torch

from ..errors import InputError


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
    min_new_tokens: int = 0  # EOS is banned until this many tokens are out


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
    """CTRL-style: divide positive logits of already-seen tokens by ``penalty``, multiply negative ones.

    ``seen`` (B, L) holds token ids; negative entries (padding of a ragged batch) are ignored.
    """
    if penalty == 1.0 or seen.numel() == 0:
        return logits
    counts = torch.zeros(logits.shape, dtype=torch.int32, device=logits.device)
    counts.scatter_add_(-1, seen.clamp_min(0), (seen >= 0).to(torch.int32))  # duplicates add up, never clash
    penalised = torch.where(logits > 0, logits / penalty, logits * penalty)
    return torch.where(counts > 0, penalised, logits)


def sample_next(logits: torch.Tensor, cfg: SamplingConfig, generator: torch.Generator | None = None,
                seen_ids: torch.Tensor | None = None, *, step: int = 0,
                eos_token_id: int | None = None) -> torch.Tensor:
    """Next token per row (B,) from last-position logits (B, V).

    Repetition penalty over ``seen_ids`` (B, L; negative = ignore), EOS banned while
    ``step < cfg.min_new_tokens`` (``eos_token_id`` overrides ``cfg.eos_token_id``, e.g. a model's own
    EOS), then greedy for ``temperature <= 0``, else temperature, top-k / top-p and a draw from
    ``generator`` (on the CPU, so a seed gives the same tokens on any device).
    """
    logits = logits.float()
    if seen_ids is not None:
        logits = _apply_repetition_penalty(logits, seen_ids, cfg.repetition_penalty)
    eos = cfg.eos_token_id if eos_token_id is None else eos_token_id
    if eos is not None and step < cfg.min_new_tokens:
        logits = logits.index_fill(-1, torch.tensor([eos], device=logits.device), float("-inf"))
    if cfg.temperature <= 0:
        return logits.argmax(-1)
    probs = _filter_logits(logits / cfg.temperature, cfg.top_k, cfg.top_p).softmax(-1)
    return torch.multinomial(probs.cpu(), 1, generator=generator).squeeze(1).to(logits.device)


def _generator(seed: int | None) -> torch.Generator:
    gen = torch.Generator(device="cpu")
    if seed is not None:
        gen.manual_seed(seed)
    return gen


@torch.no_grad()
def stream_batch(model, prompts: list[list[int]], cfg: SamplingConfig, pad_id: int = 0, use_cache: bool = True,
                 decode: Callable[[list[int]], str] | None = None) -> Iterator[tuple[int, int]]:
    """Yield ``(row, token)`` as tokens are sampled, rows in prompt order within a step.

    Prompts are left-padded with ``pad_id`` (masked out, so its value does not matter) and share one
    KV cache with a row per prompt, preallocated to the longest length the batch can reach. A row
    stops at EOS (not yielded), a stop string (``decode`` of its tokens contains one; the token that
    completed it is yielded), ``max_new_tokens`` or, with the cache, when its own context is full.
    Finished rows leave the batch, and columns that became padding in every remaining row are
    dropped, so each row decodes exactly as it would alone. A recurrent model (``model.recurrent``,
    models/rnn.py) carries its state as the cache: it reads whole prompts and has no context limit.
    """
    for i, p in enumerate(prompts):
        if len(p) == 0:
            raise InputError(f"prompt {i} is empty", "give at least one token, e.g. the tokenizer's BOS id")
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    gen = _generator(cfg.seed)
    block = model.config.block_size
    # a recurrent model's state is its cache: with it, no context limit (the whole prompt is read)
    bounded = not (use_cache and getattr(model, "recurrent", False))
    if bounded:
        prompts = [list(p[-block:]) for p in prompts]
    L = max(len(p) for p in prompts)
    rows = list(range(len(prompts)))  # original index of each live batch row
    lens = [len(p) for p in prompts]
    pads = [L - n for n in lens]  # leading padding columns per live row
    ids = torch.tensor([[pad_id] * (L - len(p)) + p for p in prompts], dtype=torch.long, device=device)
    keep = torch.arange(L, device=device)[None, :] >= torch.tensor(pads, device=device)[:, None]
    new: list[list[int]] = [[] for _ in prompts]
    cache = model.new_cache(max_len=min(block, L + cfg.max_new_tokens) if bounded else None) if use_cache else None
    step_input = ids
    try:
        for step in range(cfg.max_new_tokens):
            padded = any(pads)  # a Python fact about the prompts: no tensor inspection
            if cache is None:
                logits, _ = model(ids[:, -block:], attention_mask=keep[:, -block:] if padded else None)
            else:
                logits, _ = model(step_input, cache=cache, attention_mask=keep if padded else None)
            seen = ids.masked_fill(~keep, -1) if cfg.repetition_penalty != 1.0 else None
            nxt = sample_next(logits[:, -1, :], cfg, gen, seen, step=step)
            done = []
            for b, token in enumerate(nxt.tolist()):
                r = rows[b]
                if cfg.eos_token_id is not None and token == cfg.eos_token_id:
                    done.append(b)
                    continue
                new[r].append(token)
                yield r, token
                if cache is not None and bounded and lens[r] + len(new[r]) > block:
                    done.append(b)  # context full: stop rather than silently forget the prompt
                elif cfg.stop and decode is not None and any(s in decode(new[r]) for s in cfg.stop):
                    done.append(b)
            ids = torch.cat([ids, nxt[:, None]], dim=1)
            keep = torch.cat([keep, keep.new_ones(len(rows), 1)], dim=1)
            step_input = nxt[:, None]
            if len(done) == len(rows):
                break
            if done:
                live = [b for b in range(len(rows)) if b not in set(done)]
                idx = torch.tensor(live, dtype=torch.long, device=device)
                ids, keep, step_input = ids[idx], keep[idx], step_input[idx]
                rows, pads = [rows[b] for b in live], [pads[b] for b in live]
                lead = min(pads)  # columns now padding in every row: drop them (keeps the context bound exact)
                ids, keep, pads = ids[:, lead:], keep[:, lead:], [p - lead for p in pads]
                if cache is not None:
                    cache.select(idx)
                    cache.trim_front(lead)
    finally:
        model.train(was_training)


def generate_batch(model, prompts: list[list[int]], cfg: SamplingConfig, pad_id: int = 0, use_cache: bool = True,
                   decode: Callable[[list[int]], str] | None = None) -> list[list[int]]:
    """New token ids for each prompt (see ``stream_batch``)."""
    out: list[list[int]] = [[] for _ in prompts]
    for row, token in stream_batch(model, prompts, cfg, pad_id, use_cache=use_cache, decode=decode):
        out[row].append(token)
    return out


def stream(model, prompt_ids: list[int], cfg: SamplingConfig, use_cache: bool = True,
           decode: Callable[[list[int]], str] | None = None) -> Iterator[int]:
    """Yield new token ids for one prompt; stops at EOS, ``max_new_tokens``, the context limit or a stop string."""
    for _, token in stream_batch(model, [prompt_ids], cfg, use_cache=use_cache, decode=decode):
        yield token


def generate(model, prompt_ids: list[int], cfg: SamplingConfig, use_cache: bool = True,
             decode: Callable[[list[int]], str] | None = None) -> list[int]:
    return list(stream(model, prompt_ids, cfg, use_cache=use_cache, decode=decode))


def truncate_at_stop(text: str, stop: list[str]) -> str:
    """Cut generated text at the first stop string (the stop string itself is removed)."""
    cut = min((text.find(s) for s in stop if s in text), default=-1)
    return text if cut < 0 else text[:cut]


# ----------------------------------------------------------------------------- beam search


@dataclass
class Hypothesis:
    """A finished beam: ``tokens`` without the start token and without EOS (``eos`` says whether it
    ended on one); ``score = logprob / len**length_penalty`` with ``len`` counting EOS (HF's convention)."""

    tokens: list[int]
    score: float
    logprob: float
    eos: bool


@torch.no_grad()
def beam_search(step: Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor], batch_size: int, *,
                num_beams: int, max_new_tokens: int, start_token_id: int, eos_token_id: int | None = None,
                length_penalty: float = 1.0, num_return_sequences: int = 1, early_stopping: bool | str = True,
                min_new_tokens: int = 0, device: torch.device | str = "cpu") -> list[list[Hypothesis]]:
    """Beam search over ``batch_size`` sources x ``num_beams`` beams, rows ``source * num_beams + beam``.

    ``step(seqs, rows)`` returns next-token logits (N, V) for the running sequences ``seqs``
    (N, t + 1; start token first). The first call has one row per source (beams would all be the
    same) and ``rows=None``; later calls have K rows per live source, and ``rows`` (N,) says which of
    the previous call's rows each one continues: the caller reorders (or, after the first step,
    expands) its KV cache and memory with it; when a whole source finishes its beams are dropped.
    Candidates are the top 2K continuations per source; an EOS among the top K finishes a
    hypothesis, the best K others keep running; at ``max_new_tokens`` the top K are finished as
    they are. A source is done with K finished hypotheses (``early_stopping=True``), or when no running beam can beat the worst of them
    (``False``: judged at the current length; ``"never"``: at the longest length when
    ``length_penalty > 0``), as in transformers. Returns the ``num_return_sequences`` best per source.
    """
    K = num_beams
    if K < 1 or not 1 <= num_return_sequences <= K:
        raise ValueError(f"need 1 <= num_return_sequences ({num_return_sequences}) <= num_beams ({K})")
    finished: list[list[Hypothesis]] = [[] for _ in range(batch_size)]
    live = list(range(batch_size))  # original source index of each live source
    # all beams of a source would start identical, so the first step runs one row per source
    seqs = torch.full((batch_size, 1), start_token_id, dtype=torch.long, device=device)
    scores = torch.zeros(batch_size, 1, device=device)
    rows = None
    for t in range(max_new_tokens):
        logprobs = step(seqs, rows).float().log_softmax(-1)  # (N, V)
        if eos_token_id is not None and t < min_new_tokens:
            logprobs[:, eos_token_id] = float("-inf")
        V, k_prev = logprobs.shape[-1], scores.shape[1]
        cand = (scores.view(-1, 1) + logprobs).view(len(live), k_prev * V)
        n_cand = min(2 * K if eos_token_id is not None else K, k_prev * V)
        top, flat = cand.topk(n_cand, dim=1)  # (S, C), best first
        beam, token = flat // V, flat % V
        last = t + 1 == max_new_tokens
        ends = torch.ones_like(token, dtype=torch.bool) if last else (
            token == eos_token_id if eos_token_id is not None else torch.zeros_like(token, dtype=torch.bool))
        # finished hypotheses: only among the top K ranks (the rest are spares to keep K beams running)
        add = ends.clone()
        add[:, K:] = False
        add &= torch.isfinite(top)
        glen = (t + 1) ** length_penalty
        touched = set()
        for s, c in add.nonzero().tolist():
            src, b, tok, logprob = live[s], int(beam[s, c]), int(token[s, c]), float(top[s, c])
            is_eos = eos_token_id is not None and tok == eos_token_id
            hyp = seqs[s * k_prev + b, 1:].tolist() + ([] if is_eos else [tok])
            finished[src].append(Hypothesis(hyp, logprob / glen, logprob, is_eos))
            touched.add(src)
        for src in touched:  # keep the best K (a source that was full is already out of ``live``)
            finished[src] = sorted(finished[src], key=lambda h: -h.score)[:K]
        if last:
            break
        # the best K continuations that did not just end keep running
        run_top = top.masked_fill(ends, float("-inf"))
        pick = run_top.topk(min(K, n_cand), dim=1).indices  # (S, K)
        scores = run_top.gather(1, pick)
        src_rows = torch.arange(len(live), device=device)[:, None] * k_prev + beam.gather(1, pick)
        tokens = token.gather(1, pick)
        done = [s for s, src in enumerate(live) if len(finished[src]) == K and _source_done(
            finished[src], scores[s, 0], t + 1, max_new_tokens, length_penalty, early_stopping)]
        if len(done) == len(live):
            break
        if done:
            keep = [s for s in range(len(live)) if s not in set(done)]
            sel = torch.tensor(keep, dtype=torch.long, device=device)
            scores, src_rows, tokens = scores[sel], src_rows[sel], tokens[sel]
            live = [live[s] for s in keep]
        rows = src_rows.reshape(-1)
        seqs = torch.cat([seqs[rows], tokens.reshape(-1, 1)], dim=1)
    return [f[:num_return_sequences] for f in finished]


def _source_done(finished: list[Hypothesis], best_running: torch.Tensor, cur_len: int, max_len: int,
                 length_penalty: float, early_stopping: bool | str) -> bool:
    """A source with K finished hypotheses: done at once, or once its best running beam cannot win."""
    if early_stopping is True:
        return True
    length = max_len if (early_stopping == "never" and length_penalty > 0) else cur_len
    return float(best_running) / length ** length_penalty <= finished[-1].score
