"""Int8 model directories: the stored layout and how it is rebuilt into a working model.

``export/quantize.py`` writes them; ``models/io.load_model`` reads them (a ``quantization`` record in
``config.json`` sends it here), so ``lmforge predict/evaluate --model QDIR`` work unchanged. Nothing
is pickled: ``model.safetensors`` holds, for each quantized module NAME,

    NAME.qweight  int8 (out, in)       symmetric, one scale per output row (zero point 0)
    NAME.scale    float32 (out,)
    NAME.bias     float32 (out,)       linears that have one

and every other tensor as it was (fp32). Linears become PyTorch's dynamic int8 linears
(``torch.ao.nn.quantized.dynamic.Linear``: activations quantized per batch, int8 GEMM from fbgemm /
oneDNN); embeddings become ``Int8Embedding`` (weight-only: rows are looked up in int8, then scaled).
An output head tied to an embedding is stored once, as the embedding's int8 matrix, and rebuilt
as an int8 linear on those same rows.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import safetensors.torch
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import InputError

FORMAT = "lmforge-int8-v1"


def _dynamic_linear_cls():
    with warnings.catch_warnings():  # torch.ao.quantization warns it will move to torchao; the kernels still ship
        warnings.simplefilter("ignore", DeprecationWarning)
        from torch.ao.nn.quantized.dynamic import Linear

    return Linear


def quantize_rows(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric per-row int8: (q int8, scale float32) with w ≈ q * scale[:, None]."""
    w = w.detach().float()
    scale = (w.abs().amax(dim=1) / 127.0).clamp_min(1e-12)
    q = torch.round(w / scale[:, None]).clamp_(-127, 127).to(torch.int8)
    return q, scale


def int8_linear(q: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor | None) -> nn.Module:
    """A dynamic int8 linear (PyTorch's kernels) from stored int8 rows and per-row scales."""
    Linear = _dynamic_linear_cls()
    out_f, in_f = q.shape
    m = Linear(in_f, out_f, bias_=bias is not None, dtype=torch.qint8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # quantized-tensor constructors are marked deprecated in torch 2.13
        qw = torch._make_per_channel_quantized_tensor(q.to(torch.int8), scale.double(),
                                                      torch.zeros(out_f, dtype=torch.long), 0)
    m.set_weight_bias(qw, None if bias is None else bias.detach().float())
    return m


def linear_int8_state(m: nn.Module) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """(int8 rows, per-row scales, bias) of a dynamic int8 linear, for storing."""
    w, b = m._packed_params._weight_bias()
    if w.qscheme() not in (torch.per_channel_symmetric, torch.per_channel_affine):
        raise ValueError(f"expected per-channel int8 weights, got {w.qscheme()}")
    if bool((w.q_per_channel_zero_points() != 0).any()):
        raise ValueError("expected symmetric int8 weights (zero points 0)")
    return w.int_repr().contiguous(), w.q_per_channel_scales().float().contiguous(), b


class Int8Embedding(nn.Module):
    """Weight-only int8 embedding: 1 byte per weight in memory and on disk; looked-up rows are scaled
    back to float. (A lookup is not a matmul, so int8 buys size here, not speed.)"""

    def __init__(self, q: torch.Tensor, scale: torch.Tensor, padding_idx: int | None = None):
        super().__init__()
        self.register_buffer("qweight", q.to(torch.int8))
        self.register_buffer("scale", scale.float())
        self.padding_idx = padding_idx
        self.num_embeddings, self.embedding_dim = q.shape

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return F.embedding(idx, self.qweight).float() * self.scale[idx].unsqueeze(-1)

    @property
    def weight(self) -> torch.Tensor:
        """The dequantized matrix (for code that reads ``.weight``, e.g. vocabulary size)."""
        return self.qweight.float() * self.scale[:, None]


def set_module(root: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, child, new)


def load_int8(directory: str | Path, d: dict, device: str = "cpu") -> nn.Module:
    """Rebuild a quantized model directory (see the module docstring); CPU only (the int8 kernels are)."""
    from .io import model_from_dict

    directory = Path(directory)
    rec = d.get("quantization") or {}
    if rec.get("format") != FORMAT:
        raise InputError(f"{directory / 'config.json'}: quantization format {rec.get('format')!r} is not {FORMAT!r}",
                         "re-run `lmforge quantize` on the fp32 model with this version of lmforge")
    if str(device) != "cpu":
        raise InputError(f"{directory} is an int8 model: it runs on the CPU only", "load it with device='cpu'")
    plain = {k: v for k, v in d.items() if k != "quantization"}
    try:
        model = model_from_dict(plain)
    except (TypeError, KeyError) as e:
        raise InputError(f"{directory / 'config.json'} is not a valid model config: {e}") from e
    weights = directory / "model.safetensors"
    if not weights.exists():
        raise InputError(f"no model.safetensors in {directory}", "point at a directory written by `lmforge quantize`")
    tensors = safetensors.torch.load_file(str(weights))
    linears, embeddings = rec.get("linears", []), rec.get("embeddings", [])
    tied: dict[str, str] = rec.get("tied", {})  # head linear -> the embedding whose int8 rows it shares
    owned = [*linears, *embeddings]
    rest = {k: v for k, v in tensors.items() if not any(k.startswith(n + ".") for n in owned)}
    missing, unexpected = model.load_state_dict(rest, strict=False)
    replaced = set(owned) | set(tied)
    shared = _aliases(model)
    bad = [k for k in missing if k.rpartition(".")[0] not in replaced and shared.get(k) not in rest]
    if bad or unexpected:
        raise InputError(f"{weights} does not match its config.json",
                         f"missing {bad[:3]}, unexpected {list(unexpected)[:3]}: re-run `lmforge quantize`")
    try:
        for name in embeddings:
            old = model.get_submodule(name)
            set_module(model, name, Int8Embedding(tensors[f"{name}.qweight"], tensors[f"{name}.scale"],
                                                  getattr(old, "padding_idx", None)))
        for name in linears:
            set_module(model, name, int8_linear(tensors[f"{name}.qweight"], tensors[f"{name}.scale"],
                                                tensors.get(f"{name}.bias")))
        for head, emb in tied.items():
            set_module(model, head, int8_linear(tensors[f"{emb}.qweight"], tensors[f"{emb}.scale"],
                                                tensors.get(f"{head}.bias")))
    except KeyError as e:
        raise InputError(f"{weights} lacks {e.args[0]}", "re-run `lmforge quantize`") from None
    model.lmforge_quantization = rec
    return model.eval()


def _aliases(model: nn.Module) -> dict[str, str]:
    """name -> the first name of the same tensor, for tied parameters (stored once)."""
    first: dict[int, str] = {}
    out = {}
    for name, t in model.state_dict(keep_vars=True).items():
        key = id(t)
        if key in first:
            out[name] = first[key]
        else:
            first[key] = name
    return out
