"""Int8 dynamic quantization: PyTorch's for our models, onnxruntime's for an exported ONNX file.

Torch backend: linear weights become int8 (symmetric, one scale per output row) and activations are
quantized per batch at run time, with ``torch.ao.quantization.quantize_dynamic`` (fbgemm / oneDNN
int8 GEMMs; the package warns it will move to torchao, but torch 2.13 ships and runs it). The
result is saved as int8 tensors + scales in safetensors with a ``quantization`` record in
config.json (layout: ``models/int8.py``), so ``load_model`` and ``lmforge predict/evaluate`` load it
without unpickling anything.

What is left in float, and why:
* output heads with fewer than ``min_features`` (32) outputs, e.g. a 2-class classifier: they
  hold a few hundred weights, cost nothing to run, and their rounding error lands on the logits;
* small embedding tables (positions, token types: < 1,000 rows): a few KB, added to every token;
* norms and biases (tiny vectors).
Vocabulary embeddings are stored int8 (weight-only; for a small model they are most of the bytes:
11.7M of MiniLM's 22.7M weights). An output head tied to the vocabulary embedding (GPT's lm_head,
BERT's MLM decoder) keeps the tie: it is rebuilt as an int8 linear on the same int8 rows, so the
matrix is stored once. With ``embeddings=False`` vocabularies stay fp32 and so does a tied head.
"""

from __future__ import annotations

import copy
import shutil
import warnings
from pathlib import Path

import safetensors.torch
import torch
import torch.nn as nn

from ..errors import InputError
from ..models.int8 import FORMAT, Int8Embedding, int8_linear, linear_int8_state, quantize_rows, set_module
from ..runs import atomic_dir, atomic_write_json

# files of a model directory that are not weights and travel with the quantized copy
SKIP_FILES = {"model.safetensors", "config.json", "optimizer.safetensors", "optimizer.pt", "trainer_state.json"}


def _tied_heads(model: nn.Module) -> dict[str, str]:
    """Linear name -> embedding name, for linears whose weight *is* an embedding's weight."""
    emb = {id(m.weight): n for n, m in model.named_modules() if isinstance(m, nn.Embedding)}
    return {n: emb[id(m.weight)] for n, m in model.named_modules()
            if isinstance(m, nn.Linear) and id(m.weight) in emb}


def plan(model: nn.Module, embeddings: bool = True, min_features: int = 32,
         min_vocab: int = 1000) -> tuple[list[str], list[str], dict[str, str], dict[str, str]]:
    """(linears to quantize, embeddings to quantize, tied head -> embedding, skipped name -> why)."""
    tied = _tied_heads(model)
    linears, embs, skipped = [], [], {}
    for name, m in model.named_modules():
        if isinstance(m, nn.Linear):
            if name in tied:
                continue
            if min(m.in_features, m.out_features) < min_features:
                skipped[name] = f"tiny ({m.in_features}x{m.out_features}): nothing to gain, error lands on the output"
            else:
                linears.append(name)
        elif isinstance(m, nn.Embedding):
            if not embeddings:
                skipped[name] = "embeddings=False"
            elif m.num_embeddings < min_vocab:
                skipped[name] = f"small table ({m.num_embeddings} rows)"
            else:
                embs.append(name)
    kept_tied = {h: e for h, e in tied.items() if e in embs}
    for h, e in tied.items():
        if e not in embs:
            skipped[h] = f"tied to {e}, which stays float"
    return linears, embs, kept_tied, skipped


def quantize_model(model: nn.Module, embeddings: bool = True, min_features: int = 32) -> tuple[nn.Module, dict]:
    """(int8 copy of ``model``, its ``quantization`` record); ``model`` itself is left unchanged."""
    if getattr(model, "lmforge_peft", None) is not None:
        raise InputError("this model carries adapters", "merge them first: lmforge peft merge DIR --output MERGED")
    if getattr(model, "lmforge_quantization", None) is not None:
        raise InputError("this model is already quantized", "quantize the fp32 model directory")
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    model = copy.deepcopy(model).float().cpu().eval()
    linears, embs, tied, skipped = plan(model, embeddings, min_features)
    with warnings.catch_warnings():  # torch.ao.quantization's move-to-torchao deprecation notices
        warnings.simplefilter("ignore")
        quantize_dynamic(model, {name: per_channel_dynamic_qconfig for name in linears}, dtype=torch.qint8,
                         inplace=True)
    for name in embs:
        old = model.get_submodule(name)
        q, scale = quantize_rows(old.weight)
        set_module(model, name, Int8Embedding(q, scale, old.padding_idx))
    for head, emb in tied.items():
        e = model.get_submodule(emb)
        set_module(model, head, int8_linear(e.qweight, e.scale, model.get_submodule(head).bias))
    rec = {"format": FORMAT, "backend": "torch", "method": "dynamic int8 (activations quantized per batch)",
           "weights": "int8, symmetric, per output row", "engine": torch.backends.quantized.engine,
           "linears": linears, "embeddings": embs, "tied": tied, "skipped": skipped}
    model.lmforge_quantization = rec
    return model, rec


def quantized_tensors(model: nn.Module, rec: dict) -> dict[str, torch.Tensor]:
    """What ``model.safetensors`` holds for an int8 model (see ``models/int8.py``)."""
    out: dict[str, torch.Tensor] = {}
    for name in rec["linears"] + list(rec["tied"]):
        q, scale, bias = linear_int8_state(model.get_submodule(name))
        if name in rec["linears"]:
            out[f"{name}.qweight"], out[f"{name}.scale"] = q, scale
        if bias is not None:
            out[f"{name}.bias"] = bias.detach().float().contiguous()
    for name in rec["embeddings"]:
        m = model.get_submodule(name)
        out[f"{name}.qweight"], out[f"{name}.scale"] = m.qweight.contiguous(), m.scale.contiguous()
    owned = tuple(n + "." for n in rec["linears"] + rec["embeddings"] + list(rec["tied"]))
    seen: set[int] = set()
    for key, t in model.state_dict().items():
        if key.startswith(owned) or not torch.is_tensor(t):
            continue
        if t.data_ptr() in seen:  # tied float weights are stored once and re-tied by the constructor
            continue
        seen.add(t.data_ptr())
        out[key] = t.detach().contiguous()
    return out


def save_quantized(model: nn.Module, directory: str | Path, extra_files: list[str | Path] = ()) -> Path:
    """Write an int8 model directory (atomically), plus copies of ``extra_files`` (tokenizer, task.json)."""
    rec = model.lmforge_quantization
    with atomic_dir(directory) as tmp:
        safetensors.torch.save_file(quantized_tensors(model, rec), str(tmp / "model.safetensors"),
                                    metadata={"format": "pt", "quantization": FORMAT})
        atomic_write_json(tmp / "config.json", {**model.config.to_dict(), "quantization": rec})
        for f in extra_files:
            shutil.copy2(f, tmp / Path(f).name)
    return Path(directory)


def side_files(model_dir: Path) -> list[Path]:
    """The files beside the weights that a copy of the model needs (tokenizer, task.json, ...)."""
    return sorted(p for p in Path(model_dir).iterdir() if p.is_file() and p.name not in SKIP_FILES)


def quantize_dir(model_dir: str | Path, output: str | Path, embeddings: bool = True) -> dict:
    """``lmforge quantize --backend torch``: an int8 copy of a model directory; returns a summary."""
    from ..models.io import load_model, resolve_model_dir

    model_dir = resolve_model_dir(model_dir)
    model = load_model(model_dir)
    qmodel, rec = quantize_model(model, embeddings)
    save_quantized(qmodel, output, side_files(model_dir))
    return summary(model_dir, Path(output), rec)


def dir_bytes(path: Path, pattern: str = "*") -> int:
    return sum(p.stat().st_size for p in Path(path).glob(pattern) if p.is_file())


def summary(src: Path, out: Path, rec: dict) -> dict:
    weights = "model.onnx" if (out / "model.onnx").exists() else "model.safetensors"
    a, b = dir_bytes(src, "model.safetensors"), dir_bytes(out, weights)
    return {"output": str(out), "backend": rec["backend"], "weights_file": weights, "fp32_bytes": a,
            "int8_bytes": b, "size_ratio": round(b / a, 3) if a else None,
            "quantized": len(rec.get("linears", [])) + len(rec.get("embeddings", [])),
            "skipped": rec.get("skipped", {})}


def quantize_onnx_file(src: str | Path, dst: str | Path, per_channel: bool = True) -> Path:
    """onnxruntime's dynamic int8 quantization of an ONNX file (MatMul/Gemm weights int8, activations
    quantized at run time: the same scheme as the torch backend). Embedding lookups (``Gather`` on a
    weight) are stored int8 too, as the torch backend stores vocabularies: for a small encoder the
    vocabulary is half the bytes (MiniLM: 0.65x the fp32 size without it, 0.26x with it)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, per_channel=per_channel,
                     op_types_to_quantize=["MatMul", "Gemm", "Gather"])
    return Path(dst)


def quantize_onnx_dir(model_dir: str | Path, output: str | Path) -> dict:
    """``lmforge quantize --backend onnx``: export with the ONNX exporter (export/onnx.py), then
    onnxruntime's dynamic int8 on every graph; the rest of the export directory is copied as is."""
    import tempfile

    from ..models.io import resolve_model_dir
    from .onnx import export_onnx

    model_dir = resolve_model_dir(model_dir)
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = export_onnx(model_dir, Path(tmp) / "fp32")
        with atomic_dir(output) as out:
            for f in sorted(fp32.iterdir()):
                if f.suffix == ".onnx":
                    quantize_onnx_file(f, out / f.name)
                elif f.is_file():
                    shutil.copy2(f, out / f.name)
        fp32_bytes = dir_bytes(fp32, "*.onnx")
    int8_bytes = dir_bytes(Path(output), "*.onnx")
    return {"output": str(output), "backend": "onnx", "weights_file": "*.onnx", "fp32_bytes": fp32_bytes,
            "int8_bytes": int8_bytes, "size_ratio": round(int8_bytes / fp32_bytes, 3) if fp32_bytes else None}
