"""``lmforge quantize`` and ``lmforge prune``: each parses its options and calls one library function."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console

console = Console(stderr=True)


def quantize(
    model_dir: Path = typer.Argument(..., help="a model directory (a base model or a fine-tuned task model)"),
    output: Path = typer.Option(..., "--output", "-o", help="where to write the int8 model directory"),
    backend: str = typer.Option("torch", "--backend", help="torch: int8 safetensors that load_model, predict and "
                                                           "evaluate read; onnx: an int8 ONNX file for onnxruntime"),
    embeddings: bool = typer.Option(True, "--embeddings/--no-embeddings",
                                    help="store vocabulary embeddings (and a head tied to them) in int8 too"),
) -> None:
    """Int8 dynamic quantization of the linear layers (weights int8 per output row, activations per batch).

    Example: lmforge quantize runs/sst2/finetune/pretrained/model --output sst2-int8
             lmforge quantize runs/sst2/finetune/pretrained/model --output sst2-onnx-int8 --backend onnx
    """
    from ..errors import InputError
    from .quantize import quantize_dir, quantize_onnx_dir

    if backend == "torch":
        info = quantize_dir(model_dir, output, embeddings)
    elif backend == "onnx":
        info = quantize_onnx_dir(model_dir, output)
    else:
        raise InputError(f"--backend {backend!r} is not one of torch, onnx", "use --backend torch or --backend onnx")
    console.print(f"quantized {model_dir} -> {output} ({info['backend']}): {info['fp32_bytes']:,} -> "
                  f"{info['int8_bytes']:,} bytes (x{info['size_ratio']})")
    print(json.dumps(info, indent=2))


def prune(
    model_dir: Path = typer.Argument(..., help="a GPT/BERT model directory (or a fine-tuned task model on one)"),
    output: Path = typer.Option(..., "--output", "-o", help="where to write the smaller model directory"),
    heads: float = typer.Option(0.25, "--heads", help="share of attention heads to remove (0 to <1)"),
    mlp: float = typer.Option(0.25, "--mlp", help="share of MLP hidden channels to remove (0 to <1)"),
    data: Path | None = typer.Option(None, "--data", help="examples to score importance on (gradient-based, "
                                                          "Michel et al. 2019); without it: weight magnitude"),
    scope: str | None = typer.Option(None, "--scope", help="layer (same share per layer) or global (encoders)"),
    batches: int = typer.Option(8, "--batches", help="batches of --data used for importance"),
    recover_steps: int = typer.Option(0, "--recover-steps", help="then fine-tune the smaller model this many steps "
                                                                 "on --data (the task's own training; a GPT: "
                                                                 "next-token loss)"),
    recover_lr: float | None = typer.Option(None, "--recover-lr", help="recovery learning rate (default 5e-5 for "
                                                                      "task models, 3e-4 for a GPT)"),
) -> None:
    """Remove the least important attention heads and MLP channels; the linears really get smaller.

    Example: lmforge prune runs/sst2/finetune/pretrained/model --output sst2-pruned --heads 0.25 --mlp 0.25 \\
             --data examples/data/sentiment/train.jsonl --recover-steps 100
    """
    from .prune import prune_dir

    info = prune_dir(model_dir, output, heads, mlp, data, scope, n_batches=batches, recover_steps=recover_steps,
                     recover_lr=recover_lr)
    console.print(f"pruned {model_dir} -> {output}: {info['params_before']:,} -> {info['params_after']:,} "
                  f"parameters (x{info['params_ratio']}), {info['importance']} importance")
    if "recovery" in info:
        r = info["recovery"]
        console.print(f"recovered: {r['steps']} steps in {r['elapsed_s']}s, "
                      + ", ".join(f"{k} {v}" for k, v in r.items() if k.startswith(("train_", "val_"))))
    print(json.dumps(info, indent=2))
