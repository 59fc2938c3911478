"""``lmforge tokenizer``: train, encode, stats. Each command parses and calls one library function."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console

app = typer.Typer(help="Train tokenizers, encode corpora into token shards, measure tokenizers.",
                  no_args_is_help=True, add_completion=False)
console = Console(stderr=True)

FILES = typer.Argument(..., help="input files or directories: .txt, .jsonl (a 'text' field), .parquet")
TXT_SPLIT = typer.Option("paragraph", "--txt-split", help="how .txt files split into documents: paragraph, line or file")


@app.command()
def train(
    files: List[Path] = FILES,
    output: Path = typer.Option(..., "--output", "-o", help="directory for tokenizer.json"),
    kind: str = typer.Option("byte_bpe", help="byte_bpe, bpe, wordpiece, unigram or char"),
    vocab_size: int = typer.Option(8192, "--vocab-size", help="target vocabulary size, special tokens included"),
    family: str = typer.Option("gpt", help="model family, decides special tokens: gpt, bert or seq2seq"),
    min_frequency: int = typer.Option(2, "--min-frequency", help="minimum count of a merge/word piece"),
    special_tokens: Optional[str] = typer.Option(None, "--special-tokens", help="comma-separated list replacing the family's"),
    lowercase: bool = typer.Option(False, "--lowercase", help="lowercase text first"),
    max_docs: Optional[int] = typer.Option(None, "--max-docs", help="train on the first N documents only"),
    txt_split: str = TXT_SPLIT,
) -> None:
    """Train a tokenizer and save tokenizer.json (+ tokenizer_meta.json) into --output.

    Example: lmforge tokenizer train data/train.jsonl --output tok/ --kind byte_bpe --vocab-size 8192
    """
    from pydantic import ValidationError

    from ..errors import ConfigError
    from .config import TokenizerConfig
    from .corpus import expand_inputs, iter_corpus
    from .train import train_tokenizer

    data = {"kind": kind, "vocab_size": vocab_size, "family": family, "min_frequency": min_frequency,
            "lowercase": lowercase, "max_train_docs": max_docs, "txt_split": txt_split,
            "special_tokens": [t.strip() for t in special_tokens.split(",") if t.strip()] if special_tokens else None}
    try:
        cfg = TokenizerConfig.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        option = _OPTION.get(str(first["loc"][0]) if first["loc"] else "", "an option")
        raise ConfigError(f"bad value for {option}: {first['msg']} (got {first.get('input')!r})",
                          "see `lmforge tokenizer train --help`") from None
    paths = expand_inputs(files)
    with console.status(f"training {cfg.kind} tokenizer on {len(paths)} file(s)"):
        tok = train_tokenizer(iter_corpus(paths, cfg.txt_split), cfg)
    file = tok.save(output)
    console.print(f"[green]saved[/green] {file}  vocab_size={tok.vocab_size}  specials={_ids(tok)}", highlight=False)


@app.command()
def encode(
    files: List[Path] = FILES,
    tokenizer: Path = typer.Option(..., "--tokenizer", "-t", help="directory with tokenizer.json (or the file)"),
    output: Path = typer.Option(..., "--output", "-o", help="token shard to write (.bin)"),
    workers: Optional[int] = typer.Option(None, "--workers", "-w", help="processes, one file each (default: one process, all cores via the Rust thread pool)"),
    no_eos: bool = typer.Option(False, "--no-eos", help="do not append EOS after each document"),
    txt_split: str = TXT_SPLIT,
) -> None:
    """Encode documents into one token shard (uint16/uint32 tokens + document index).

    Example: lmforge tokenizer encode data/*.jsonl --tokenizer tok/ --output shards/train.bin --workers 4
    """
    from ..errors import ConfigError
    from .corpus import encode_corpus
    from .tok import Tok

    if txt_split not in ("paragraph", "line", "file"):
        raise ConfigError(f"--txt-split {txt_split!r} is not one of paragraph, line, file", "pick one of them")
    tok = Tok.load(tokenizer)
    stats = encode_corpus(list(files), tok, output, append_eos=not no_eos, workers=workers, txt_split=txt_split)
    console.print(f"[green]wrote[/green] {output}: {stats['docs']:,} docs, {stats['tokens']:,} tokens, "
                  f"{stats['bytes_per_token']} bytes/token", highlight=False)
    typer.echo(json.dumps(stats))


@app.command()
def stats(
    file: Path = typer.Argument(..., help="held-out .txt/.jsonl file"),
    tokenizer: Path = typer.Option(..., "--tokenizer", "-t", help="directory with tokenizer.json (or the file)"),
    max_docs: Optional[int] = typer.Option(None, "--max-docs", help="measure the first N documents only"),
    txt_split: str = TXT_SPLIT,
) -> None:
    """Bytes per token, tokens per word/char, unknown-token rate and vocabulary coverage on a held-out file.

    Example: lmforge tokenizer stats --tokenizer tok/ data/val.jsonl
    """
    from .stats import tokenizer_stats
    from .tok import Tok

    typer.echo(json.dumps(tokenizer_stats(Tok.load(tokenizer), file, txt_split=txt_split, max_docs=max_docs), indent=2))


_OPTION = {"kind": "--kind", "vocab_size": "--vocab-size", "family": "--family", "min_frequency": "--min-frequency",
           "lowercase": "--lowercase", "max_train_docs": "--max-docs", "txt_split": "--txt-split",
           "special_tokens": "--special-tokens"}


def _ids(tok) -> str:
    return ", ".join(f"{k}={v}" for k, v in tok.special_ids.items() if v is not None)
