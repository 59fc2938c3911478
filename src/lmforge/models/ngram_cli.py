"""``lmforge ngram``: train, generate, score, import-arpa. Each command parses and calls one library function."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console

app = typer.Typer(help="n-gram language models (Kneser-Ney, Katz, add-k) with ARPA export/import.",
                  no_args_is_help=True, add_completion=False)
console = Console(stderr=True)


def _split_args(args: list[str]) -> tuple[list[str], list[str]]:
    """Files and ``key=value`` overrides, in any order (an existing path is always a file)."""
    files, overrides = [], []
    for a in args:
        (overrides if "=" in a and not Path(a).exists() else files).append(a)
    return files, overrides


@app.command()
def train(
    args: List[str] = typer.Argument(..., help="training files/directories (one sentence a line) and key=value "
                                               "settings, e.g. smoothing=katz unit=char segmenter=jieba"),
    order: Optional[int] = typer.Option(None, "--order", "-n", help="n-gram order 1-6 (default 3)"),
    output: Path = typer.Option(..., "--output", "-o", help="model directory (gets model.arpa, model.npz, config.json)"),
    print_config: bool = typer.Option(False, "--print-config", help="print the resolved settings and exit"),
) -> None:
    """Count n-grams and estimate a back-off model; writes DIR/model.arpa for KenLM/SRILM too.

    Example: lmforge ngram train wiki.train.txt --order 5 --output lm5 smoothing=kneser_ney
    """
    from ..config import dump_config
    from ..errors import InputError
    from .ngram import config_from
    from .ngram import train as train_lm

    files, overrides = _split_args(args)
    cfg = config_from(order, overrides)
    if print_config:
        typer.echo(dump_config(cfg))
        return
    if not files:
        raise InputError("no training files given", "pass text files, e.g. lmforge ngram train train.txt --output lm")
    with console.status(f"counting {cfg.order}-grams in {len(files)} input(s)"):
        lm = train_lm(files, cfg, output)
    t = lm.info["train"]
    if not all(lm.info.get("discounts_estimated", [True])):
        bad = [n + 1 for n, ok in enumerate(lm.info["discounts_estimated"]) if not ok]
        console.print(f"[yellow]warning[/yellow]: too little data for Kneser-Ney discounts of order(s) {bad}; "
                      f"used discount_fallback={list(cfg.discount_fallback)}", highlight=False)
    console.print(f"[green]saved[/green] {output}: {t['sentences']:,} sentences, {t['tokens']:,} tokens, "
                  f"vocab {len(lm.words):,}, n-grams {[len(x) for x in lm.logp]} in {t['seconds']}s", highlight=False)


@app.command()
def generate(
    model: Path = typer.Option(..., "--model", "-m", help="n-gram model directory"),
    prompt: str = typer.Option("", "--prompt", help="text to continue (empty: start a sentence)"),
    max_tokens: int = typer.Option(50, "--max-tokens", min=1, help="stop after this many tokens (or at </s>)"),
    temperature: float = typer.Option(1.0, help="0 = most likely token each step"),
    top_k: Optional[int] = typer.Option(None, "--top-k", min=1, help="sample among the k most likely tokens"),
    num: int = typer.Option(1, "--num", min=1, help="number of samples"),
    seed: int = typer.Option(0, help="sampling seed"),
) -> None:
    """Sample sentences from an n-gram model.

    Example: lmforge ngram generate --model lm5 --prompt "The game" --num 3
    """
    from .ngram import NgramLM

    lm = NgramLM.load(model)
    for i in range(num):
        toks = lm.sample(prompt, max_tokens, temperature, top_k, seed + i)
        typer.echo(lm.detokenize(lm.tokenize(prompt) + toks) if prompt.strip() else lm.detokenize(toks))


@app.command()
def score(
    model: Path = typer.Option(..., "--model", "-m", help="n-gram model directory"),
    data: Path = typer.Option(..., "--data", "-d", help="text file to score, one sentence a line"),
    per_token: Optional[Path] = typer.Option(None, "--per-token", help="write each line's log10 probabilities "
                                                                       "(words, then </s>) as JSON lines here"),
) -> None:
    """Perplexity, loss (nats/token), bits per byte and OOV rate of a model on a file, as JSON.

    Example: lmforge ngram score --model lm5 --data wiki.test.txt
    """
    from .ngram import evaluate_file

    typer.echo(json.dumps(evaluate_file(model, data, per_token), indent=2))


@app.command("import-arpa")
def import_arpa(
    arpa: Path = typer.Argument(..., help="ARPA file, e.g. from KenLM's lmplz or SRILM's ngram-count"),
    output: Path = typer.Option(..., "--output", "-o", help="model directory to write"),
    settings: Optional[List[str]] = typer.Argument(None, help="key=value settings of the text it was trained on, "
                                                              "e.g. unit=char (order comes from the file)"),
) -> None:
    """Turn an ARPA file into an lmforge model directory (for score, generate and evaluate).

    Example: lmforge ngram import-arpa kenlm.arpa --output lm_kenlm
    """
    from .ngram import NgramLM, config_from

    cfg = config_from(None, list(settings or []))
    lm = NgramLM.from_arpa(arpa, cfg)
    lm.save(output)
    console.print(f"[green]saved[/green] {output}: order {lm.order}, vocab {len(lm.words):,}", highlight=False)
