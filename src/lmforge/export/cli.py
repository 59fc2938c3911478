"""``lmforge export``: parse arguments, call ``export.export``, print the verification table."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def export(model_dir: Path = typer.Argument(..., help="lmforge model directory (model.safetensors + config.json)"),
           to: str = typer.Option("hf", "--to", help="onnx, torchscript, torch-export or hf (Hugging Face layout)"),
           output: Path = typer.Option(..., "--output", "-o", help="directory to write (replaced atomically)"),
           verify: bool = typer.Option(True, "--verify/--no-verify",
                                       help="load the export back and compare with PyTorch (max abs diff <= 1e-4)"),
           opset: Optional[int] = typer.Option(None, "--opset", help="ONNX opset (default 17)"),
           with_cache: bool = typer.Option(False, "--with-cache", help="GPT decoders, onnx and torchscript: past_key_i/"
                                           "past_value_i inputs and present_* outputs (see export.json)"),
           layout: Optional[str] = typer.Option(None, "--layout",
                                                help="hf only: gpt2, llama or bert (default: picked from the model)")) -> None:
    """Export a trained model to ONNX, TorchScript, torch.export or a Hugging Face directory.

    Example: lmforge export --to onnx runs/quickstart/finetune/pretrained/model --output exported/onnx
    then: onnxruntime.InferenceSession("exported/onnx/model.onnx"); export.json says what each input means.
    """
    from . import export as run_export
    from .verify import table

    out, rows = run_export(model_dir, to, output, verify,
                           {"opset": opset, "with_cache": with_cache, "layout": layout})
    if rows:
        typer.echo(table(rows))
        typer.echo(f"verified: every output within 1e-4 of PyTorch ({len(rows)} checks)")
    typer.echo(f"wrote {out}")
