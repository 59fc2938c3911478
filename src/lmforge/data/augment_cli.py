"""``lmforge augment INPUT --output OUT --method M [--n K]``: copies of every record, written as JSONL.

The output holds each readable record (as a Document: ``id``, ``text``, ``meta``, the record's other
fields under ``meta``) followed by its copies; unreadable records go to ``OUT.errors.jsonl`` with file,
line and error, and ``OUT.stats.json`` has the accounting (records in + created = written + errors).
This is the layer that turns model directories into the callables the data steps receive.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import typer

from ..errors import ConfigError, InputError
from ..runs import atomic_write_json


def _options(items: list[str] | None) -> dict:
    from ..config import parse_value

    out = {}
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"'{item}' is not of the form key=value", "write e.g. alpha_sr=0.2 p_rd=0.1")
        k, v = item.split("=", 1)
        out[k.strip()] = parse_value(v)
    return out


def translator(model_dir: Path, batch_size: int = 32) -> Callable[[list[str]], list[str]]:
    """``translate(texts) -> texts`` over a fine-tuned lmforge translation model (loaded once)."""
    from ..tasks.stage import encode_all, load_task_model, predict_features

    task, model, tok = load_task_model(model_dir)
    if getattr(task, "kind", None) not in ("translation", "summarization"):
        raise InputError(f"{model_dir} is a '{getattr(task, 'kind', '?')}' model, not a translation model",
                         "pass directories written by fine-tuning a translation task")

    def translate(texts: list[str]) -> list[str]:
        examples = [task.example(t, i) for i, t in enumerate(texts)]
        preds = predict_features(task, model, tok, encode_all(task, examples, tok), batch_size)
        return [p["prediction"] for p in preds]

    return translate


def mask_filler(model_dir: Path, batch_size: int = 32):
    """``MLMFiller`` over an lmforge BERT directory or a Hugging Face BERT directory (config.json with
    ``num_hidden_layers``), each with its ``tokenizer.json``."""
    from ..models.io import load_model
    from ..tokenizer import Tok
    from .steps.augment import MLMFiller

    cfg_path = Path(model_dir) / "config.json"
    if not cfg_path.exists():
        raise InputError(f"no config.json in {model_dir}", "pass a BERT model directory (lmforge or Hugging Face)")
    hc = json.loads(cfg_path.read_text(encoding="utf-8"))
    if "num_hidden_layers" in hc:  # a Hugging Face layout
        from ..models.hf import import_hf

        model, _ = import_hf(model_dir)
    else:
        model = load_model(model_dir)
    return MLMFiller(model, Tok.load(model_dir), batch_size=batch_size)


def run_augment(input: Path, output: Path, step, read_cfg=None) -> dict:
    """Read ``input``, run ``step`` and write ``output`` (+ errors and stats next to it); returns the stats."""
    from .config import ReadConfig
    from .document import ReadError
    from .inputs import expand_inputs
    from .readers import read_file
    from .writers import ShardWriter

    if not Path(input).exists():
        raise InputError(f"input not found: {input}", "check the path")
    files = expand_inputs([str(input)])
    if not files:
        raise InputError(f"no input files under {input}", "pass a .jsonl, .csv, .tsv, .txt (or .conll) file")
    read_cfg = read_cfg or ReadConfig(unit="line")
    stem = str(output).removesuffix(".jsonl")
    errors_path, stats_path = Path(stem + ".errors.jsonl"), Path(stem + ".stats.json")
    counts = {"records_in": 0, "errors": 0}
    t0 = time.perf_counter()
    out_w = ShardWriter(output, "jsonl")
    err_w = ShardWriter(errors_path, "jsonl")
    dropped: dict[str, int] = {}

    def source():
        for f in files:
            for item in read_file(f, read_cfg):
                counts["records_in"] += 1
                if isinstance(item, ReadError):
                    counts["errors"] += 1
                    err_w.write(item.to_dict())
                else:
                    yield item

    def sink(doc, reason):  # augmenters keep every original; a drop would be a bug, still never lost
        dropped[reason] = dropped.get(reason, 0) + 1
        err_w.write({"path": doc.meta.get("source"), "line": doc.meta.get("line"), "error": reason, "id": doc.id})

    try:
        for doc in step(source(), sink):
            out_w.write(doc.to_dict())
    except BaseException:
        out_w.abort()
        err_w.abort()
        raise
    out_w.close()
    err_w.close()
    if not counts["errors"] and not dropped:
        errors_path.unlink(missing_ok=True)
    st = step.stats
    stats = {"records_in": counts["records_in"], "created": st.created, "written": out_w.count,
             "errors": counts["errors"] + sum(dropped.values()), "method": step.method, "n": step.n,
             "seed": step.seed, "step": st.to_dict(), "seconds": round(time.perf_counter() - t0, 3)}
    atomic_write_json(stats_path, stats)
    return stats


def augment(
    input: Path = typer.Argument(..., help="a .jsonl/.csv/.tsv/.txt file (or .conll, or a directory of them)"),
    options: list[str] | None = typer.Argument(None, help="key=value method options, e.g. alpha_sr=0.2 p=0.1"),
    output: Path = typer.Option(..., "--output", "-o", help="JSONL to write: originals, each followed by its copies"),
    method: str = typer.Option("eda", "--method", "-m",
                               help="eda|synonym|insert|swap|delete|noise|contextual|backtranslate"),
    n: int = typer.Option(1, "--n", min=1, help="copies per record"),
    seed: int = typer.Option(0, "--seed"),
    lang: str = typer.Option("auto", "--lang", help="en, zh or auto (per record: meta.lang, else the script)"),
    model: Path | None = typer.Option(None, "--model", help="contextual: a BERT with its MLM head "
                                         "(lmforge or Hugging Face directory)"),
    forward: Path | None = typer.Option(None, "--forward", help="backtranslate: translation model, e.g. en->de"),
    backward: Path | None = typer.Option(None, "--backward", help="backtranslate: the way back, e.g. de->en"),
    vectors: Path | None = typer.Option(None, "--vectors", help="EDA: synonyms from word vectors "
                                           "(`lmforge vectors train` output) instead of WordNet/Cilin"),
    wordnet: Path | None = typer.Option(None, "--wordnet", help="WordNet dict directory (default "
                                           "/usr/share/wordnet from Debian wordnet-base, or $LMFORGE_WORDNET)"),
    cilin: Path | None = typer.Option(None, "--cilin", help="Cilin cilin_ex.txt (default $LMFORGE_CILIN, else "
                                         "$LMFORGE_DATASETS/lexicons/cilin/cilin_ex.txt)"),
    text_field: str = typer.Option("text", "--text-field", help="jsonl/csv field with the text"),
    batch_size: int = typer.Option(32, "--batch-size", min=1, help="documents per model call"),
) -> None:
    """Augment a dataset: EDA, character noise, masked-LM substitution or back-translation.

    Copies keep their record's labels and NER spans (offsets updated) and carry meta.augmented_from,
    so `lmforge data split` keeps them on their source's side.

    Example: lmforge augment train.jsonl --output train.aug.jsonl --method eda --n 4 alpha_sr=0.1
    Example: lmforge augment zh.tsv --output zh.aug.jsonl --method noise --lang zh p=0.05
    Example: lmforge augment train.jsonl -o bt.jsonl --method backtranslate --forward m/en-de --backward m/de-en
    """
    from rich.console import Console

    from .config import ReadConfig
    from .steps.augment import METHODS, build_augmenter

    if method not in METHODS:
        raise ConfigError(f"unknown method '{method}'", f"use one of {', '.join(METHODS)}")
    opts = _options(options)
    kw: dict = {"batch_size": batch_size}
    if method in ("eda", "synonym", "insert", "swap", "delete"):
        kw.update(wordnet_dir=str(wordnet) if wordnet else None, cilin=str(cilin) if cilin else None)
    if method == "contextual":
        if model is None:
            raise ConfigError("--method contextual needs --model DIR", "pass a BERT with its MLM head")
        kw["fill"] = mask_filler(model, batch_size)
    if method == "backtranslate":
        if forward is None or backward is None:
            raise ConfigError("--method backtranslate needs --forward DIR and --backward DIR",
                              "pass two translation models, e.g. en->de and de->en")
        kw["forward"], kw["backward"] = translator(forward, batch_size), translator(backward, batch_size)
    if vectors is not None:
        from ..models.vectors import load_vectors
        from .steps.augment import VectorNeighbors

        words, matrix = load_vectors(vectors)
        kw["lexicon"] = VectorNeighbors(words, matrix)
    step = build_augmenter(method, n, seed, lang, opts, **kw)
    stats = run_augment(input, output, step, ReadConfig(unit="line", text_field=text_field))
    console = Console(stderr=True)
    console.print(f"[green]wrote[/green] {output}: {stats['records_in']} records in, {stats['created']} copies, "
                  f"{stats['written']} written, {stats['errors']} errors")
    if stats["errors"]:
        stem = str(output).removesuffix(".jsonl")
        console.print(f"[yellow]{stats['errors']} unreadable records[/yellow]: see {stem}.errors.jsonl "
                      "(fix them and rerun to include them)")
    empty = stats["step"].get("counters", {}).get("empty_copies", 0)
    if empty:
        console.print(f"[yellow]warning[/yellow]: {empty} copies came out empty and were not written")
    skipped = {k: v for k, v in stats["step"].get("counters", {}).items() if k.startswith("skipped:")}
    if skipped:
        console.print(f"[yellow]passed through without copies[/yellow]: {skipped}")
