"""``lmforge import-hf``: a plain function with Typer annotations (``lmforge export`` is in export/cli.py).

The main CLI mounts it (``app.command("import-hf")(import_)``); it only parses arguments and calls
``hf.import_hf``.
"""

from __future__ import annotations

from pathlib import Path

import typer



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

