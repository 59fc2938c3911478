"""The ``lmforge`` command. Each verb parses its arguments, loads the config and calls one stage
function; no stage logic lives here."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console

from .errors import LmforgeError

console = Console(stderr=True)
app = typer.Typer(
    name="lmforge",
    help="From raw text to a working language model.\n\nExample: lmforge run recipes/quickstart.yaml pretrain.train.max_steps=50",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

OVERRIDES = typer.Argument(None, help="dotted key=value overrides, e.g. pretrain.train.max_steps=50")
RUN_DIR = typer.Option(None, "--run-dir", help="run directory (default: <runs_root>/<recipe name>)")
PRINT = typer.Option(False, "--print-config", help="print the resolved config and exit")


@app.callback()
def _root(debug: bool = typer.Option(False, "--debug", help="show full tracebacks for errors")) -> None:
    """lmforge: data, tokenizers, pretraining, fine-tuning, evaluation and reports."""


def _stage_verb(recipe: Path, overrides: list[str] | None, run_dir: Path | None, print_config: bool,
                until: str | None, force: bool = False):
    """Load the recipe and run it up to ``until``; returns the RunDir (None with --print-config)."""
    from .config import dump_config
    from .recipe import load_recipe, run_recipe

    cfg = load_recipe(recipe, overrides or [])
    if print_config:
        typer.echo(dump_config(cfg))
        return None
    run = run_recipe(cfg, run_dir, until=until, force=force)
    console.print(f"[green]done[/green]: {run.path}")
    return run


@app.command("run")
def run_cmd(recipe: Path = typer.Argument(..., help="YAML recipe"), overrides: Optional[List[str]] = OVERRIDES,
            run_dir: Optional[Path] = RUN_DIR, print_config: bool = PRINT,
            force: bool = typer.Option(False, "--force", help="rerun every stage, even unchanged ones")) -> None:
    """Run a whole recipe; unchanged stages are reused.

    Example: lmforge run recipes/quickstart.yaml pretrain.train.max_steps=50
    """
    run = _stage_verb(recipe, overrides, run_dir, print_config, None, force)
    samples = run.stage_dir("generate") / "samples.jsonl" if run is not None else None
    if samples is not None and samples.exists():
        import json

        from rich.markup import escape

        console.print("[bold]Generated samples[/bold]")
        for line in samples.read_text(encoding="utf-8").splitlines():
            s = json.loads(line)
            console.print(f"  [cyan]{escape(s['prompt'])}[/cyan]{escape(s['completion'])}", highlight=False)


@app.command()
def pretrain(recipe: Path = typer.Argument(..., help="YAML recipe with a pretrain section"),
             overrides: Optional[List[str]] = OVERRIDES, run_dir: Optional[Path] = RUN_DIR,
             print_config: bool = PRINT,
             nproc: int = typer.Option(1, "--nproc", min=1,
                                       help="processes on this machine: > 1 launches torchrun (DDP by default)")) -> None:
    """Pretrain a model from zero (runs the recipe's earlier stages first if needed).

    Example: lmforge pretrain recipes/pretrain/shakespeare-char.yaml pretrain.train.max_steps=200
    Example: lmforge pretrain recipes/pretrain/shakespeare-char.yaml --nproc 2
    """
    import os
    import subprocess

    from .train import distributed

    if distributed.in_torchrun() and distributed.env_world() > 1:
        # one of several ranks: rank 0 runs the recipe (manifest, caching, earlier stages); the others
        # join it inside the pretrain stage, whose first step is a barrier on the process group
        from .recipe import load_recipe

        cfg = load_recipe(recipe, overrides or [])
        if int(os.environ["RANK"]) == 0:
            from .recipe import run_recipe

            run = run_recipe(cfg, run_dir, until="pretrain")
            console.print(f"[green]done[/green]: {run.path}")
        else:
            from .train.pretrain import run as pretrain_run

            base = Path(run_dir or Path(cfg.runs_root) / cfg.name)
            pretrain_run(cfg.pretrain, base / "tokenizer", base / "pretrain", progress=False)
        return
    if nproc == 1 or print_config:
        _stage_verb(recipe, overrides, run_dir, print_config, "pretrain")
        return
    from .recipe import load_recipe

    cfg = load_recipe(recipe, overrides or [])
    if cfg.pretrain is None:
        from .errors import ConfigError

        raise ConfigError("the recipe has no 'pretrain' section", "add a pretrain: section to the recipe")
    # the stages before pretrain run once, here; then N processes train
    from .recipe import run_recipe

    run_recipe(cfg, run_dir, until="tokenizer")
    argv = ["pretrain", str(recipe), *(overrides or [])]
    if run_dir is not None:
        argv += ["--run-dir", str(run_dir)]
    cmd = distributed.torchrun_command(nproc, argv)
    console.print(f"[bold cyan]launch[/bold cyan] {' '.join(cmd)}", highlight=False)
    rc = subprocess.call(cmd)
    if rc:
        sys.exit(rc)


@app.command()
def finetune(recipe: Path = typer.Argument(..., help="YAML recipe with a finetune section"),
             overrides: Optional[List[str]] = OVERRIDES, run_dir: Optional[Path] = RUN_DIR,
             print_config: bool = PRINT) -> None:
    """Fine-tune the pretrained body for a task (and, if asked, the same from random init).

    Example: lmforge finetune recipes/quickstart.yaml finetune.train.lr=1e-4
    """
    _stage_verb(recipe, overrides, run_dir, print_config, "finetune")


def _kv(items: list[str] | None) -> dict:
    """``key=value`` pairs (values parsed as YAML) for a model's task settings."""
    from .config import parse_value
    from .errors import ConfigError

    out = {}
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"'{item}' is not of the form key=value", "write e.g. text_fields=[sentence]")
        k, v = item.split("=", 1)
        out[k.strip()] = parse_value(v)
    return out


@app.command()
def evaluate(recipe: Optional[Path] = typer.Argument(None, help="YAML recipe (or use --model and --data)"),
             overrides: Optional[List[str]] = OVERRIDES, run_dir: Optional[Path] = RUN_DIR,
             print_config: bool = PRINT,
             model: Optional[Path] = typer.Option(None, "--model", help="a model directory: fine-tuned task model, "
                                                  "pretrained decoder or n-gram model"),
             data: Optional[Path] = typer.Option(None, "--data", help="file in the task's format"),
             output: Optional[Path] = typer.Option(None, "--output", "-o", help="where metrics.json, "
                                                   "predictions.jsonl and errors.jsonl go"),
             batch_size: int = typer.Option(64, "--batch-size", min=1),
             bootstrap: int = typer.Option(1000, "--bootstrap", min=0, help="resamples for 95% CIs (0 = none)")) -> None:
    """Score a model: a recipe's fine-tuned variants on its test split, or any model directory on any file.

    Example: lmforge evaluate recipes/quickstart.yaml
    Example: lmforge evaluate --model runs/quickstart/finetune/pretrained/model --data examples/data/sentiment/test.jsonl
    Extra key=value pairs after --model override the task's saved settings (e.g. text_fields=[sentence]).
    """
    from .errors import ConfigError

    if model is None:
        if recipe is None:
            raise ConfigError("evaluate needs a recipe, or --model DIR --data FILE", "see lmforge evaluate --help")
        _stage_verb(recipe, overrides, run_dir, print_config, "evaluate")
        return
    if data is None:
        raise ConfigError("--model needs --data FILE", "pass the file to evaluate on")
    import json

    from .eval.evaluate import evaluate_model

    extra = ([str(recipe)] if recipe is not None else []) + list(overrides or [])  # all key=value here
    result = evaluate_model(model, data, output, overrides=_kv(extra), batch_size=batch_size, bootstrap=bootstrap,
                            progress=True)
    shown = {k: v for k, v in result.items() if k not in ("details", "warnings")}
    typer.echo(json.dumps(shown, ensure_ascii=False, indent=2))
    if output is not None:
        console.print(f"[green]wrote[/green] {output}/metrics.json")


@app.command()
def predict(model: Path = typer.Option(..., "--model", help="a fine-tuned task model directory"),
            data: Optional[Path] = typer.Option(None, "--data", help="input file in the task's format; "
                                                "omit to read one text per line from stdin"),
            output: Optional[Path] = typer.Option(None, "--output", "-o", help="predictions jsonl (default stdout)"),
            batch_size: int = typer.Option(64, "--batch-size", min=1),
            settings: Optional[List[str]] = typer.Argument(None, help="key=value task settings")) -> None:
    """Predict with a fine-tuned model: labels with scores, entity spans, text or answers, one JSON line each.

    Example: lmforge predict --model runs/quickstart/finetune/pretrained/model --data test.jsonl --output preds.jsonl
    Example: echo "a gorgeous, witty film" | lmforge predict --model runs/quickstart/finetune/pretrained/model
    """
    from .tasks.predict import predict_file

    predict_file(model, data, output, overrides=_kv(settings), batch_size=batch_size)


@app.command()
def compare(run_a: Path = typer.Argument(..., help="a run directory or an `evaluate --output` directory"),
            run_b: Path = typer.Argument(..., help="the other one (same test data)"),
            resamples: int = typer.Option(1000, "--resamples", min=10)) -> None:
    """Compare two models on the same test data: difference, 95% CI and p-value (paired bootstrap).

    Example: lmforge compare runs/sst2-minilm runs/imdb-scratch
    """
    import json

    from .eval.compare import compare_runs

    typer.echo(json.dumps(compare_runs(run_a, run_b, resamples), indent=2))


@app.command()
def report(run_dir: Path = typer.Argument(..., help="a run directory, e.g. runs/quickstart")) -> None:
    """(Re)build RUN_DIR/report.html from the run's artifacts.

    Example: lmforge report runs/quickstart
    """
    from .errors import InputError
    from .eval.report import build_report

    if not (run_dir / "manifest.json").exists():
        raise InputError(f"{run_dir} is not a run directory (no manifest.json)", "pass e.g. runs/quickstart")
    console.print(f"report: {build_report(run_dir)}")


@app.command()
def generate(model: Path = typer.Option(..., "--model", help="a decoder directory, e.g. runs/quickstart/pretrain/model"),
             prompt: str = typer.Option(..., "--prompt", help="text to continue"),
             max_new_tokens: int = typer.Option(64, help="tokens to generate"),
             temperature: float = typer.Option(0.8, help="0 = greedy"),
             top_k: Optional[int] = typer.Option(40, help="keep the k most likely tokens"),
             top_p: Optional[float] = typer.Option(0.95, help="nucleus sampling mass"),
             repetition_penalty: float = typer.Option(1.1, help="> 1 discourages repeats"),
             stop: Optional[List[str]] = typer.Option(None, "--stop", help="stop at this string (repeatable)"),
             seed: int = typer.Option(0, help="sampling seed")) -> None:
    """Generate text from a trained decoder, streaming tokens as they come.

    Example: lmforge generate --model runs/quickstart/pretrain/model --prompt "the movie is"
    """
    from .tasks.generation import GenerateConfig, generate_text, load_decoder

    m, tok = load_decoder(model)
    cfg = GenerateConfig(max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                         repetition_penalty=repetition_penalty, stop=stop or [], seed=seed)
    sys.stdout.write(prompt)
    for piece in generate_text(m, tok, prompt, cfg.sampling()):
        sys.stdout.write(piece)
        sys.stdout.flush()
    sys.stdout.write("\n")


def _mount_subapps() -> None:
    from .data.cli import app as data_app
    from .export.cli import export
    from .models.cli import import_

    app.command("export")(export)
    app.command("import-hf")(import_)
    from .tasks.chat_cli import chat

    app.command("chat")(chat)
    from .serve.cli import serve

    app.command("serve")(serve)
    from .tune.cli import cv, tune

    app.command("tune")(tune)
    app.command("cv")(cv)
    from .data.augment_cli import augment

    app.command("augment")(augment)
    from .export.compress_cli import prune, quantize

    app.command("quantize")(quantize)
    app.command("prune")(prune)
    from .tokenizer.cli import app as tokenizer_app

    app.add_typer(data_app, name="data", help="Data pipeline: process, split, stats, crawl, leakage.\n\n"
                  "Example: lmforge data process examples/data/raw --output out/clean --languages en")
    import importlib.util

    for module, name, text in (("lmforge.models.ngram_cli", "ngram", "n-gram language models (Kneser-Ney): train, generate, score."),
                               ("lmforge.models.vectors_cli", "vectors", "Word vectors (word2vec, GloVe, fastText): train, eval, neighbors."),
                               ("lmforge.models.peft_cli", "peft", "Adapters (LoRA, IA3): merge into a plain model, info."),
                               ("lmforge.label.cli", "label", "Labeling projects: import, export, serve (annotation page), agreement, weak labels, label issues.")):
        if importlib.util.find_spec(module) is not None:
            app.add_typer(importlib.import_module(module).app, name=name, help=text)
    app.add_typer(tokenizer_app, name="tokenizer", help="Train tokenizers, encode corpora to token shards, stats.\n\n"
                  "Example: lmforge tokenizer train corpus.txt --output tok --kind byte_bpe --vocab-size 8192")


_mount_subapps()


def main(argv: list[str] | None = None) -> int:
    """Entry point: user errors become one clear line (no traceback unless --debug)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    try:
        app(args=argv, prog_name="lmforge", standalone_mode=False)
    except LmforgeError as err:
        if debug:
            raise
        from rich.markup import escape

        hint = f" [yellow]({escape(err.hint)})[/yellow]" if err.hint else ""
        console.print(f"[bold red]error:[/bold red] {escape(err.message)}{hint}", highlight=False, soft_wrap=True)
        return 2
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/yellow]: rerun the same command to resume")
        return 130
    except SystemExit as e:  # --help etc.
        return int(e.code or 0)
    except Exception as err:
        # usage errors from click (typer may vendor its own copy of click, so match by shape)
        if hasattr(err, "show") and hasattr(err, "exit_code"):
            err.show()
            return err.exit_code
        if type(err).__name__ == "Abort":
            return 1
        raise
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())


def _console_main() -> None:
    sys.exit(main())
