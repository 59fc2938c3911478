"""Structured pruning: remove attention heads and MLP channels, and rebuild the model smaller.

The linear layers really lose rows/columns (q/kv/o projections, MLP up/gate/down), and the config
records what each layer keeps (``head_dim``, ``layer_n_head``, ``layer_mlp_hidden``), so the saved
directory loads with ``models/io.load_model`` like any other model. Masks would leave the matmuls
as big as before; this makes them smaller, so the model runs faster.

Importance (which units go):
* with data: gradient-based head importance (Michel, Levy & Neubig 2019, "Are Sixteen Heads Really
  Better than One?"): I_h = E_x |dL/dxi_h| for a gate xi_h = 1 on head h's output; computed without
  a gate as sum over positions and dims of (head output x its gradient) at the o_proj input, per
  example, then |.| and mean. MLP channels get the same first-order score at the down-projection input;
* without data: weight magnitude (||W_o cols|| x ||W_v rows|| for a head, ||W_up row|| x ||W_down col||
  for a channel), cheaper and weaker.
Grouped-query attention prunes whole groups (a kv head with its query heads). Every layer keeps at
least one head and one channel. Decoders (GPT) lose the same number of heads in every layer, so a
KV cache keeps one (layers, B, H, T, D) shape; encoders can rank heads across layers (``scope="global"``,
Michel et al.'s layer-normalised scores).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn

from ..errors import InputError
from ..models.layers import MLP, Attention


def body_of(model: nn.Module) -> nn.Module:
    body = getattr(model, "body", model)
    kind = body.config.to_dict().get("model_type")
    if kind not in ("gpt", "bert"):
        raise InputError(f"pruning covers GPT decoders and BERT encoders, not '{kind}' models",
                         "prune a gpt or bert model (or a task model built on one)")
    if getattr(model, "lmforge_peft", None) is not None or getattr(model, "lmforge_quantization", None) is not None:
        raise InputError("prune a plain fp32 model", "merge adapters (lmforge peft merge) or prune before quantizing")
    return body


def units(attn: Attention) -> tuple[int, int]:
    """(prunable units, query heads per unit): kv groups under grouped-query attention, else heads."""
    return attn.n_kv_head, attn.n_head // attn.n_kv_head


# ---------------------------------------------------------------------------------------------
# Importance


def magnitude_importance(body: nn.Module) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Per layer: (unit scores, MLP channel scores) from weight norms."""
    heads, chans = [], []
    for block in body.blocks:
        a, m = block.attn, block.mlp
        n, rep = units(a)
        hd = a.head_dim
        o = a.o_proj.weight.detach().view(a.o_proj.out_features, a.n_head, hd).norm(dim=(0, 2))  # (n_head,)
        v = a.kv_proj.weight.detach()[a.n_kv_head * hd:].view(a.n_kv_head, hd, -1).norm(dim=(1, 2))  # (n_kv,)
        heads.append(o.view(n, rep).sum(1) * v)
        c = m.up.weight.detach().norm(dim=1) * m.down.weight.detach().norm(dim=0)
        if m.kind == "swiglu":
            c = c * m.gate.weight.detach().norm(dim=1)
        chans.append(c)
    return heads, chans


def gradient_importance(model: nn.Module, batches, loss_fn) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Per layer: (unit scores, channel scores) = mean over examples of |sum_t,d act * dL/dact|.

    ``loss_fn(model, batch)`` returns the mean loss of the batch (dropout off: the model is put in eval mode)."""
    body = body_of(model)
    was = model.training
    model.eval()
    acts: dict[tuple[str, int], torch.Tensor] = {}

    def grab(kind, i):
        def hook(_module, args):
            acts[(kind, i)] = args[0]
        return hook

    handles = []
    for i, block in enumerate(body.blocks):
        handles.append(block.attn.o_proj.register_forward_pre_hook(grab("attn", i)))
        handles.append(block.mlp.down.register_forward_pre_hook(grab("mlp", i)))
    L = len(body.blocks)
    heads = [torch.zeros(units(b.attn)[0]) for b in body.blocks]
    chans = [torch.zeros(b.mlp.down.in_features) for b in body.blocks]
    n_ex = 0
    try:
        for batch in batches:
            acts.clear()
            with torch.enable_grad():
                loss = loss_fn(model, batch)
                keys = [k for k in (("attn", i) for i in range(L)) if k in acts] + \
                       [k for k in (("mlp", i) for i in range(L)) if k in acts]
                grads = torch.autograd.grad(loss, [acts[k] for k in keys], allow_unused=True)
            for k, g in zip(keys, grads):
                if g is None:
                    continue
                s = (acts[k].detach() * g).float()  # (B, T, width)
                B = s.shape[0]
                if k[0] == "attn":
                    a = body.blocks[k[1]].attn
                    n, rep = units(a)
                    per = s.view(B, s.shape[1], n, rep * a.head_dim).sum(dim=(1, 3))  # (B, units)
                    heads[k[1]] += per.abs().sum(0)
                else:
                    chans[k[1]] += s.sum(1).abs().sum(0)
            n_ex += B
    finally:
        for h in handles:
            h.remove()
        model.train(was)
    if n_ex == 0:
        raise InputError("no batches to score importance on", "pass --data with some examples")
    return [h / n_ex for h in heads], [c / n_ex for c in chans]


# ---------------------------------------------------------------------------------------------
# Choosing and cutting


def choose(scores: list[torch.Tensor], fraction: float, scope: str = "layer") -> list[list[int]]:
    """Indices to keep per layer: drop ``fraction`` of the units (lowest scores), at least one kept."""
    if not 0 <= fraction < 1:
        raise InputError(f"prune fraction {fraction} is not in [0, 1)", "use e.g. --heads 0.25")
    if scope == "layer":
        keep = []
        for s in scores:
            n_drop = min(int(round(fraction * len(s))), len(s) - 1)
            order = torch.argsort(s, descending=True, stable=True)
            keep.append(sorted(order[: len(s) - n_drop].tolist()))
        return keep
    if scope != "global":
        raise InputError(f"unknown pruning scope '{scope}'", "use layer or global")
    normed = [s / s.norm().clamp_min(1e-12) for s in scores]  # Michel et al.: normalise per layer
    flat = sorted(((float(v), li, j) for li, s in enumerate(normed) for j, v in enumerate(s)))
    n_drop = int(round(fraction * len(flat)))
    left = [len(s) for s in scores]
    dropped: set[tuple[int, int]] = set()
    for _v, li, j in flat:
        if len(dropped) >= n_drop:
            break
        if left[li] > 1:
            dropped.add((li, j))
            left[li] -= 1
    return [[j for j in range(len(s)) if (li, j) not in dropped] for li, s in enumerate(scores)]


def _take(lin: nn.Linear, idx: torch.Tensor, dim: int) -> nn.Linear:
    """A smaller copy of ``lin`` keeping rows (dim 0) or columns (dim 1) ``idx``."""
    w = lin.weight.detach().index_select(dim, idx)
    out_f, in_f = w.shape
    new = nn.Linear(in_f, out_f, bias=lin.bias is not None, dtype=w.dtype, device=w.device)
    with torch.no_grad():
        new.weight.copy_(w)
        if lin.bias is not None:
            new.bias.copy_(lin.bias.detach() if dim == 1 else lin.bias.detach().index_select(0, idx))
    return new


def prune_attention(a: Attention, keep_units: list[int]) -> None:
    """Keep the listed units (heads, or kv groups) of ``a``, in place."""
    n, rep = units(a)
    hd = a.head_dim
    heads = torch.tensor([u * rep + r for u in keep_units for r in range(rep)])
    rows = (heads[:, None] * hd + torch.arange(hd)).reshape(-1)  # q rows = o columns
    kv = torch.tensor(keep_units)
    kv_rows = (kv[:, None] * hd + torch.arange(hd)).reshape(-1)
    kv_rows = torch.cat([kv_rows, kv_rows + n * hd])  # keys, then values
    a.q_proj = _take(a.q_proj, rows, 0)
    a.kv_proj = _take(a.kv_proj, kv_rows, 0)
    a.o_proj = _take(a.o_proj, rows, 1)
    a.n_head, a.n_kv_head = len(heads), len(keep_units)


def prune_mlp(m: MLP, keep: list[int]) -> None:
    idx = torch.tensor(keep)
    m.up = _take(m.up, idx, 0)
    if m.kind == "swiglu":
        m.gate = _take(m.gate, idx, 0)
    m.down = _take(m.down, idx, 1)


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


def prune_model(model: nn.Module, heads: float = 0.25, mlp: float = 0.25,
                importance: tuple[list[torch.Tensor], list[torch.Tensor]] | None = None,
                scope: str | None = None) -> dict:
    """Prune ``model`` in place (a body or a head model on one) and update its config; returns a summary.

    ``importance``: per-layer (unit, channel) scores, e.g. from ``gradient_importance``; default:
    weight magnitude. ``scope``: ``layer`` (same share in every layer; the default, and the only one
    for decoders) or ``global`` (encoders: heads ranked across layers)."""
    body = body_of(model)
    kind = body.config.to_dict()["model_type"]
    scope = scope or "layer"
    if kind == "gpt" and scope != "layer":
        raise InputError("decoders are pruned with scope=layer (the same heads count in every layer keeps the KV "
                         "cache one shape)", "drop --scope global for a GPT model")
    if getattr(body, "prompt", None) is not None or any(b.attn.prefix is not None for b in body.blocks):
        raise InputError("this model has prompt/prefix adapters", "merge or drop them before pruning")
    before = n_params(model)
    head_s, chan_s = importance if importance is not None else magnitude_importance(body)
    keep_h, keep_c = choose(head_s, heads, scope), choose(chan_s, mlp, "layer")
    for block, kh, kc in zip(body.blocks, keep_h, keep_c):
        prune_attention(block.attn, kh)
        prune_mlp(block.mlp, kc)
    cfg = body.config
    cfg.head_dim = body.blocks[0].attn.head_dim
    cfg.layer_mlp_hidden = [b.mlp.down.in_features for b in body.blocks]
    n_heads = [b.attn.n_head for b in body.blocks]
    if kind == "gpt":
        cfg.n_head = n_heads[0]
        kv = body.blocks[0].attn.n_kv_head
        cfg.n_kv_head = None if kv == cfg.n_head else kv
    else:
        cfg.layer_n_head = n_heads
    after = n_params(model)
    return {"params_before": before, "params_after": after, "params_ratio": round(after / before, 4),
            "heads_per_layer": n_heads, "mlp_per_layer": cfg.layer_mlp_hidden, "scope": scope,
            "importance": "gradient" if importance is not None else "magnitude",
            "heads_removed": sum(len(s) for s in head_s) - sum(len(k) for k in keep_h),
            "channels_removed": sum(len(s) for s in chan_s) - sum(len(k) for k in keep_c)}


# ---------------------------------------------------------------------------------------------
# Directories (what `lmforge prune` calls)


def _task_batches(model_dir: Path, data: Path, n_batches: int, batch_size: int):
    """(batches, loss_fn) for gradient importance of a fine-tuned task directory."""
    from ..tasks.base import load_task
    from ..tokenizer import Tok

    task, tok = load_task(model_dir), Tok.load(model_dir)
    feats = [task.encode(e, tok) for e in task.read(data)[: n_batches * batch_size]]
    batches = [task.collate(feats[i: i + batch_size], tok) for i in range(0, len(feats), batch_size)]

    def loss_fn(model, batch):
        total, count = task.loss(model, batch)
        return total / max(int(count), 1)

    return batches, loss_fn


def _lm_batches(model_dir: Path, data: Path, n_batches: int, batch_size: int, max_len: int = 128):
    """(batches, loss_fn) for a GPT body: next-token loss on the lines (or JSONL "text") of ``data``."""
    import json

    from ..tokenizer import Tok

    tok = Tok.load(model_dir)
    texts = []
    for line in Path(data).read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line:
            texts.append(json.loads(line).get("text", "") if line.startswith("{") else line)
    ids = [tok.encode(t)[:max_len] for t in texts if t]
    ids = [x for x in ids if len(x) > 1][: n_batches * batch_size]
    batches = []
    for i in range(0, len(ids), batch_size):
        chunk = ids[i: i + batch_size]
        T = max(len(x) for x in chunk)
        batches.append(torch.tensor([x + [x[-1]] * (T - len(x)) for x in chunk]))

    def loss_fn(model, idx):
        logits = model(idx[:, :-1])[0]
        return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), idx[:, 1:].reshape(-1))

    return batches, loss_fn


class _LMObjective:
    """Next-token loss on fixed batches of token ids, for the trainer (recovery of a plain GPT)."""

    def __init__(self, batches: list[torch.Tensor]):
        self.batches = batches

    def train_batch(self, step: int, micro: int, n_micro: int) -> dict:
        return {"idx": self.batches[(step * n_micro + micro) % len(self.batches)]}

    def loss(self, model, batch):
        idx = batch["idx"]
        logits = model(idx[:, :-1])[0]
        total = torch.nn.functional.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), idx[:, 1:].reshape(-1),
                                                  reduction="sum")
        return total, idx[:, 1:].numel()

    def count(self, batch) -> int:
        return batch["idx"][:, 1:].numel()

    def tokens(self, batch) -> int:
        return batch["idx"].numel()

    def eval_batches(self, limit: int):
        return [{"idx": b} for b in self.batches[:limit]]

    def eval_metrics(self, model, loss_sum: float, count: int) -> dict:
        import math

        loss = loss_sum / max(count, 1)
        return {"val_loss": loss, "val_ppl": math.exp(min(loss, 50.0))}


def recover(model: nn.Module, model_dir: Path, data: Path, steps: int, lr: float | None = None,
            batch_size: int = 16) -> dict:
    """Recovery fine-tuning after pruning: ``steps`` optimizer steps of the lmforge trainer on ``data``
    (a task directory: the task's own examples and loss, ``TaskObjective``; a plain GPT: next-token
    loss on the file's text lines). Linear warmup/decay, fp32 on CPU; ``model`` is trained in place.
    Returns the trainer's last evaluation (on the first batches of ``data``, for a before/after feel)."""
    import tempfile

    from ..train.config import TrainConfig
    from ..train.loop import Trainer

    is_task = (model_dir / "task.json").exists()
    cfg = TrainConfig(max_steps=steps, batch_size=batch_size, lr=lr or (5e-5 if is_task else 3e-4),
                      warmup_steps=min(10, steps // 10), schedule="linear", min_lr_ratio=0.0, weight_decay=0.01,
                      eval_every=steps, save_every=steps, log_every=steps, eval_batches=4, precision="fp32",
                      device="cpu", distributed="none")
    if is_task:
        from ..tasks.base import TaskObjective, load_task
        from ..tokenizer import Tok

        task, tok = load_task(model_dir), Tok.load(model_dir)
        examples = task.read(data)[: steps * batch_size]
        feats = [task.encode(e, tok) for e in examples]
        n_val = min(len(feats), 4 * batch_size)
        objective = TaskObjective(task, tok, feats, feats[:n_val], examples[:n_val], batch_size, cfg.seed)
    else:
        batches, _ = _lm_batches(model_dir, data, steps, batch_size)
        if not batches:
            raise InputError(f"--data {data} has no text to recover on", "pass text lines or JSONL with a text field")
        objective = _LMObjective(batches)
    with tempfile.TemporaryDirectory() as tmp:
        result = Trainer(model, objective, cfg, Path(tmp), progress=False).train()
    model.eval()
    last = result.history[-1] if result.history else {}
    return {"steps": result.steps, "lr": cfg.lr, "batch_size": batch_size, "elapsed_s": round(result.elapsed_s, 1),
            **{k: round(v, 4) for k, v in last.items() if k == "train_loss" or k.startswith("val_")}}


def prune_dir(model_dir, output, heads: float = 0.25, mlp: float = 0.25, data=None, scope: str | None = None,
              n_batches: int = 8, batch_size: int = 16, recover_steps: int = 0,
              recover_lr: float | None = None) -> dict:
    """``lmforge prune``: a smaller copy of a model directory. With ``data``: gradient importance on
    ``n_batches`` batches of it (a task directory's own data format, or text lines for a GPT body);
    without: weight magnitude. ``recover_steps`` > 0 then fine-tunes the smaller model on ``data`` with
    the trainer (``recover``). Returns the summary (also written to ``prune.json`` in the output)."""
    from ..models.io import load_model, resolve_model_dir, save_model
    from ..runs import atomic_write_json
    from .quantize import side_files

    model_dir = resolve_model_dir(model_dir)
    if recover_steps and data is None:
        raise InputError("--recover-steps needs --data (the examples to fine-tune on)",
                         "pass --data FILE, or drop --recover-steps")
    model = load_model(model_dir).float().eval()
    importance = None
    if data is not None:
        data = Path(data)
        if not data.exists():
            raise InputError(f"--data {data} does not exist", "pass a file of examples to score importance on")
        make = _task_batches if (model_dir / "task.json").exists() else _lm_batches
        batches, loss_fn = make(model_dir, data, n_batches, batch_size)
        importance = gradient_importance(model, batches, loss_fn)
    info = prune_model(model, heads, mlp, importance, scope)
    if recover_steps:
        info["recovery"] = recover(model, model_dir, data, recover_steps, recover_lr, batch_size)
    save_model(model, output, [f for f in side_files(model_dir) if f.name != "prune.json"])
    atomic_write_json(Path(output) / "prune.json", {**info, "source": str(model_dir)})
    return info
