"""``lmforge vectors``: train, eval, neighbors. Each command parses arguments and calls the library."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console

app = typer.Typer(help="Word vectors: word2vec (skip-gram, CBOW), GloVe, fastText subwords.",
                  no_args_is_help=True, add_completion=False)
console = Console(stderr=True)


def _split_inputs(items: list[str]) -> tuple[list[str], list[str]]:
    """Existing paths are inputs; other ``key=value`` items are config overrides."""
    files, overrides = [], []
    for item in items:
        (overrides if "=" in item and not Path(item).exists() else files).append(item)
    return files, overrides


def load_config(overrides: list[str], config: Path | None = None):
    """VectorsConfig from an optional YAML file (top level or a ``vectors:`` section) plus overrides."""
    from ..config import apply_overrides, load_yaml, validate
    from .vectors import VectorsConfig

    data: dict = {}
    source = "vectors config"
    if config is not None:
        data = load_yaml(config) or {}
        data = data.get("vectors", data) if isinstance(data, dict) else data
        source = str(config)
    data = apply_overrides(data, overrides)
    return validate(VectorsConfig, data, source + (" + overrides" if overrides else ""))


@app.command()
def train(
    inputs: List[str] = typer.Argument(..., help="input files/directories (.txt, .jsonl, .parquet), then key=value overrides"),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="directory for vectors.txt (word2vec text) and config.json"),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="YAML with the settings (top level or a 'vectors:' section)"),
    print_config: bool = typer.Option(False, "--print-config", help="print the resolved config and exit"),
) -> None:
    """Train word vectors; settings are key=value (model=skipgram|cbow|glove, dim, window, epochs, subwords=true, ...).

    Example: lmforge vectors train corpus.txt --output out/w2v model=skipgram dim=100 window=5 epochs=5 threads=2
    """
    from ..errors import InputError
    from .vectors import train_files

    files, overrides = _split_inputs(inputs)
    cfg = load_config(overrides, config)
    if print_config:
        typer.echo(json.dumps(cfg.model_dump(), indent=2))
        return
    if output is None:
        raise InputError("no --output directory given", "add --output DIR")
    if not files:
        raise InputError("no input files given", "pass text files before the key=value settings")
    with console.status(f"training {cfg.model}{' + subwords' if cfg.subwords else ''} on {len(files)} input(s)"):
        wv, stats = train_files(files, cfg, output)
    s = stats.to_dict()
    console.print(f"[green]saved[/green] {output / 'vectors.txt'}  vocab={len(wv):,} dim={wv.dim}  "
                  f"{s['raw_words']:,} words x {s['epochs']} epochs in {s['seconds']:.1f}s = {s['words_per_s']:,} words/s",
                  highlight=False)


@app.command("eval")
def eval_(
    vectors: Path = typer.Argument(..., help="vector file (word2vec text/binary, GloVe text) or a `vectors train` directory"),
    analogies: Optional[List[Path]] = typer.Option(None, "--analogies", help="analogy file(s): ': section' + 'a b c d' lines"),
    similarity: Optional[List[Path]] = typer.Option(None, "--similarity", help="word-pair file(s): 'w1<TAB>w2<TAB>score'"),
    suite: str = typer.Option("auto", help="with no files: en (Google analogies, WordSim-353, SimLex-999), zh (CA8) or auto"),
    datasets: Optional[Path] = typer.Option(None, "--datasets", help="shared datasets folder (default $LMFORGE_DATASETS or ../shared/datasets)"),
    restrict_vocab: int = typer.Option(300_000, "--restrict-vocab", help="only the N most frequent words answer (gensim's default)"),
    json_out: Optional[Path] = typer.Option(None, "--json", help="also write the results as JSON"),
) -> None:
    """Analogy accuracy and word-similarity Spearman, computed as gensim does.

    Example: lmforge vectors eval out/w2v --suite en
    """
    from ..errors import ConfigError
    from .vectors import WordVectors
    from .vectors.evaluate import datasets_dir, evaluate, guess_language, standard_suite

    wv = WordVectors.load(vectors)
    if not analogies and not similarity:
        if suite not in ("auto", "en", "zh"):
            raise ConfigError(f"unknown --suite '{suite}'", "use en, zh or auto")
        lang = guess_language(wv) if suite == "auto" else suite
        analogies, similarity = standard_suite(lang, datasets_dir(datasets))
    results = evaluate(wv, list(analogies or []), list(similarity or []), restrict_vocab)
    for name, r in results.items():
        if r["kind"] == "analogy":
            typer.echo(f"{name:28s} analogy accuracy {100 * r['accuracy']:6.2f}%  "
                       f"({r['correct']}/{r['total']} covered, {r['oov_questions']} skipped for unknown words)")
        else:
            rho = "n/a" if r["spearman"] != r["spearman"] else f"{r['spearman']:.4f}"
            typer.echo(f"{name:28s} Spearman {rho:>8s}  ({r['pairs']} pairs, {r['oov_pairs']} skipped for unknown words)")
    if json_out is not None:
        json_out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


_TERM = re.compile(r"([+-]?)([^+-]+)")


def _parse_query(query: str) -> tuple[list[str], list[str]]:
    """'king-man+woman' -> (['king', 'woman'], ['man']); a plain word is itself."""
    pos, neg = [], []
    for sign, word in _TERM.findall(query.strip()):
        (neg if sign == "-" else pos).append(word.strip())
    return pos, neg


@app.command()
def neighbors(
    vectors: Path = typer.Argument(..., help="vector file or a `vectors train` directory"),
    queries: List[str] = typer.Argument(..., help="words, or analogies written king-man+woman"),
    topn: int = typer.Option(10, "--topn", "-n", help="neighbours per query"),
) -> None:
    """Nearest neighbours by cosine similarity (fastText models answer unknown words from n-grams too).

    Example: lmforge vectors neighbors out/w2v king paris-france+italy
    """
    from ..errors import InputError
    from .vectors import WordVectors

    wv = WordVectors.load(vectors)
    parsed = [_parse_query(q) for q in queries]
    unknown = sorted({w for pos, neg in parsed for w in pos + neg if not wv.has_vector(w)})
    if unknown:
        shown = ", ".join(f"'{w}'" for w in unknown[:5]) + (" ..." if len(unknown) > 5 else "")
        raise InputError(f"not in the vocabulary of {vectors} ({len(wv):,} words): {shown}",
                         "check the spelling and case (training lowercases by default), or train with subwords=true")
    for query, (pos, neg) in zip(queries, parsed):
        if not pos and not neg:
            raise InputError(f"empty query '{query}'", "pass a word or an expression like king-man+woman")
        typer.echo(f"{query}:")
        for word, score in wv.most_similar(pos, neg, topn=topn):
            typer.echo(f"  {score:.4f}  {word}")
