"""``lmforge peft``: merge (and inspect) adapted models. Each command parses and calls one library function."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console

app = typer.Typer(help="Parameter-efficient fine-tuning: merge adapters into plain models, inspect them.",
                  no_args_is_help=True, add_completion=False)
console = Console(stderr=True)


@app.command()
def merge(
    model_dir: Path = typer.Argument(..., help="a fine-tuned model directory with adapter_config.json"),
    output: Path = typer.Option(..., "--output", "-o", help="where to write the merged, plain model"),
    hf: Path | None = typer.Option(None, "--hf", help="also write it as a Hugging Face model directory (GPT and "
                                                      "BERT models, e.g. chat SFT or a language model)"),
) -> None:
    """Fold the adapters into the base weights: a plain model that loads wherever lmforge models load.

    Example: lmforge peft merge runs/sst2-minilm-lora/finetune/pretrained/model --output sst2-merged
             lmforge peft merge runs/chat-sft-en-lora/finetune/pretrained/model -o chat --hf chat-hf
    """
    from ..errors import InputError
    from .io import load_model, save_model
    from .peft import ADAPTER_CONFIG, ADAPTER_WEIGHTS, merge as merge_adapters

    if not (model_dir / ADAPTER_CONFIG).exists():
        raise InputError(f"{model_dir} has no {ADAPTER_CONFIG}: it is not an adapted model",
                         "pass the model/ directory of a run trained with finetune.peft")
    model = merge_adapters(load_model(model_dir))
    keep = [f for f in sorted(model_dir.iterdir())  # tokenizer, task.json, chat template...
            if f.is_file() and f.name not in (ADAPTER_CONFIG, ADAPTER_WEIGHTS, "config.json", "model.safetensors")]
    save_model(model, output, extra_files=keep)
    n = sum(p.numel() for p in model.parameters())
    console.print(f"merged {model_dir} -> {output} ({n:,} parameters)")
    if hf is not None:  # a task head (classifier, tagger) has no transformers counterpart: a clear error
        from .hf import export_hf

        export_hf(output, hf)
        console.print(f"exported {output} -> {hf} (Hugging Face layout)")


@app.command()
def info(model_dir: Path = typer.Argument(..., help="an adapted model directory")) -> None:
    """Print the adapter settings, adapted modules, base reference and sizes as JSON."""
    from ..errors import InputError
    from .peft import ADAPTER_CONFIG, ADAPTER_WEIGHTS

    path = model_dir / ADAPTER_CONFIG
    if not path.exists():
        raise InputError(f"{model_dir} has no {ADAPTER_CONFIG}", "pass the model/ directory of a run trained with finetune.peft")
    spec = json.loads(path.read_text())
    spec["adapter_bytes"] = (model_dir / ADAPTER_WEIGHTS).stat().st_size
    typer.echo(json.dumps(spec, indent=2))

