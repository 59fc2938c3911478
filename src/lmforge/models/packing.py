"""The model side of chat SFT on a GPT body: growing the vocabulary for template markers, and
packed rows (several conversations in one row, kept apart by a block-diagonal causal mask with
positions restarting at 0)."""

from __future__ import annotations

import torch
import torch.nn as nn

def resize_token_embeddings(model: nn.Module, vocab_size: int, new_ids: list[int] = ()) -> None:
    """Grow a GPT's token embedding (and lm_head, tied or not) to ``vocab_size`` rows; new rows and
    ``new_ids`` (markers that landed in unused rows of a padded vocabulary) start at the mean row,
    so a new marker begins as an "average token" rather than noise. Updates ``config.vocab_size``
    so ``load_model`` rebuilds the right shape."""
    wte = model.wte
    V, d = wte.weight.shape
    tied = model.lm_head.weight is wte.weight
    old_new = [i for i in new_ids if i < V]
    if vocab_size > V:
        with torch.no_grad():
            emb = nn.Embedding(vocab_size, d).to(device=wte.weight.device, dtype=wte.weight.dtype)
            emb.weight[:V] = wte.weight
            emb.weight[V:] = wte.weight.mean(0)
            model.wte = emb
            if tied:
                model.lm_head = nn.Linear(d, vocab_size, bias=False).to(emb.weight.device)
                model.lm_head.weight = model.wte.weight
            else:
                old = model.lm_head.weight
                head = nn.Linear(d, vocab_size, bias=False).to(device=old.device, dtype=old.dtype)
                head.weight[:V] = old
                head.weight[V:] = old.mean(0)
                model.lm_head = head
        model.config.vocab_size = vocab_size
    if old_new:
        with torch.no_grad():
            keep = torch.ones(V, dtype=torch.bool)
            keep[old_new] = False
            model.wte.weight[old_new] = model.wte.weight[:V][keep].mean(0)
            if not tied:
                model.lm_head.weight[old_new] = model.lm_head.weight[:V][keep].mean(0)


def packed_logits(model: nn.Module, idx: torch.Tensor, segment_ids: torch.Tensor,
                  position_ids: torch.Tensor) -> torch.Tensor:
    """Logits of packed rows: each token attends only to earlier tokens of its own segment, and
    positions restart at 0 per segment (learned or RoPE), so a conversation scores as it would alone.

    GPT.hidden_states takes a 2-D padding mask only, so this runs the same modules with a (B, 1, T, T)
    block-diagonal causal mask and per-row positions, both of which Block/Attention accept."""
    m = getattr(model, "module", model)
    m = getattr(m, "_orig_mod", m)
    T = idx.shape[1]
    if T > m.config.block_size:
        raise ValueError(f"packed row of {T} tokens exceeds block_size {m.config.block_size}")
    causal = torch.ones(T, T, dtype=torch.bool, device=idx.device).tril()
    mask = ((segment_ids[:, :, None] == segment_ids[:, None, :]) & causal)[:, None]  # (B, 1, T, T)
    x = m.wte(idx)
    if m.wpe is not None:
        x = x + m.wpe(position_ids)
    x = m.drop(x)
    positions = None if m.wpe is not None else position_ids
    for i, block in enumerate(m.blocks):
        if m.gradient_checkpointing and m.training:
            x = torch.utils.checkpoint.checkpoint(block, x, None, i, mask, positions, use_reentrant=False)
        else:
            x = block(x, None, i, mask, positions)
    return m.lm_head(m.ln_f(x))


def pack_rows(lengths: list[int], capacity: int) -> list[list[int]]:
    """First-fit decreasing: indices grouped into rows of at most ``capacity`` tokens (deterministic)."""
    rows: list[list[int]] = []
    room: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda i: (-lengths[i], i)):
        for r, free in enumerate(room):
            if lengths[i] <= free:
                rows[r].append(i)
                room[r] -= lengths[i]
                break
        else:
            rows.append([i])
            room.append(capacity - lengths[i])
    return rows
