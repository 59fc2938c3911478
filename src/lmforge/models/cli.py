"""``lmforge export`` and ``lmforge import-hf``: plain functions with Typer annotations.

The main CLI mounts them (``app.command("export")(export)``, ``app.command("import-hf")(import_)``);
they only parse arguments and call ``hf.export_hf`` / ``hf.import_hf``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..errors import ConfigError


def export(model_dir: Path = typer.Argument(..., help="lmforge model directory (model.safetensors + config.json)"),
           to: str = typer.Option("hf", "--to", help="export format; 'hf' = a Hugging Face transformers directory"),
           output: Path = typer.Option(..., "--output", "-o", help="directory to write (replaced atomically)"),
           layout: Optional[str] = typer.Option(None, "--layout",
                                                help="gpt2, llama or bert (default: picked from the model)")) -> None:
    """Export a trained model to another framework's format.

    Example: lmforge export --to hf runs/quickstart/pretrain/model --output exported/gpt2-small
    then, in Python: transformers.AutoModelForCausalLM.from_pretrained("exported/gpt2-small")
    """
    from .hf import export_hf

    if to != "hf":
        raise ConfigError(f"unknown export format '{to}'", "use --to hf")
    out = export_hf(model_dir, output, layout)
    typer.echo(f"wrote {out}")


def import_(hf_dir: Path = typer.Argument(..., help="Hugging Face model directory (config.json + model.safetensors)"),
            output: Path = typer.Option(..., "--output", "-o", help="lmforge model directory to write")) -> None:
    """Import a Hugging Face GPT-2, LLaMA or BERT checkpoint as an lmforge model (a fine-tuning start).

    Example: lmforge import-hf ~/models/all-MiniLM-L6-v2 --output models/minilm
    """
    from .hf import TOKENIZER_FILES, import_hf
    from .io import save_model

    model, cfg = import_hf(hf_dir)
    extra = [Path(hf_dir) / f for f in TOKENIZER_FILES if (Path(hf_dir) / f).exists()]
    save_model(model, output, extra_files=extra)
    typer.echo(f"wrote {output} ({type(model).__name__}, {model.num_params(False):,} parameters)")

