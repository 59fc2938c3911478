"""``lmforge data ...``: process, split, stats, crawl, leakage (mounted by lmforge.cli)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from ..errors import InputError

app = typer.Typer(help="Text data pipeline: read, clean, filter, redact, dedup, split, crawl.",
                  no_args_is_help=True)


def _split_args(args: list[str]) -> tuple[list[str], list[str]]:
    """Positional arguments are inputs, except ``key=value`` overrides."""
    inputs = [a for a in args if "=" not in a or Path(a).exists()]
    overrides = [a for a in args if a not in inputs]
    return inputs, overrides


def load_data_config(config: Optional[Path], overrides: list[str], base: dict | None = None):
    """The data config from a YAML file (a whole recipe's ``data:`` section, or the section itself)."""
    from ..config import apply_overrides, load_yaml, validate
    from .config import DataStageConfig

    data: dict = {}
    if config is not None:
        raw = load_yaml(config)
        data = raw["data"] if isinstance(raw.get("data"), dict) else raw
    for k, v in (base or {}).items():
        if v is not None:
            data[k] = v
    overrides = [o[len("data."):] if o.startswith("data.") else o for o in overrides]
    data = apply_overrides(data, overrides)
    return validate(DataStageConfig, data, str(config) if config else "data config")


@app.command(context_settings={"allow_extra_args": True})
def process(
    inputs: list[str] = typer.Argument(..., help="Files, directories or globs; then optional key=value overrides."),
    output: Path = typer.Option(..., "--output", "-o", help="Output directory."),
    languages: Optional[str] = typer.Option(None, help="Comma-separated ISO codes to keep, e.g. en,zh."),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="YAML with the data settings."),
    progress: bool = typer.Option(True, help="Show a progress bar."),
) -> None:
    """Run the recommended pipeline and write OUT/kept, OUT/dropped, OUT/errors.jsonl, OUT/stats.json.

    Example: lmforge data process corpus/ web.warc.gz --output out --languages en,zh dedup.threshold=0.8
    """
    from .pipeline import process as run_pipeline

    paths, overrides = _split_args(inputs)
    if not paths:
        raise InputError("no input paths given", "pass files, directories or globs before key=value overrides")
    langs = [x.strip() for x in languages.split(",") if x.strip()] if languages else None
    cfg = load_data_config(config, overrides, {"inputs": paths, "languages": langs})
    cfg.progress = progress
    stats = run_pipeline(cfg, output)
    _print_summary(stats, output)


def _print_summary(stats: dict, output: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    con = Console()
    con.print(f"[bold]{stats['records_in']:,}[/] records in: [green]{stats['kept']:,} kept[/], "
              f"{stats['dropped']:,} dropped, [red]{stats['errors']:,} errors[/] in {stats['seconds']:.1f}s")
    table = Table("step", "in", "out", "seconds", "top drops")
    for name, st in stats["steps"].items():
        top = ", ".join(f"{k}={v}" for k, v in sorted(st["dropped"].items(), key=lambda kv: -kv[1])[:3])
        table.add_row(name, f"{st['in']:,}", f"{st['out']:,}", f"{st['seconds']:.2f}", top)
    con.print(table)
    con.print(f"outputs in {output}/ (kept/, dropped/, errors.jsonl, stats.json)")


@app.command()
def split(
    inputs: list[Path] = typer.Argument(..., help="JSONL(.gz) or Parquet shards, e.g. OUT/kept/*.jsonl.gz."),
    output: Path = typer.Option(..., "--output", "-o", help="Directory for train/val/test.jsonl."),
    val: float = typer.Option(0.1, help="Validation fraction."),
    test: float = typer.Option(0.0, help="Test fraction."),
    mode: str = typer.Option("random", help="random | stratified (by label) | grouped (near-dups together)."),
    seed: int = typer.Option(0, help="Seed of the hash that assigns documents."),
    label_field: str = typer.Option("label", help="meta key for stratified splits."),
    group_field: Optional[str] = typer.Option(None, help="meta key that groups documents (grouped mode)."),
) -> None:
    """Deterministic train/val/test splits.

    Example: lmforge data split out/kept/*.jsonl.gz --output splits --val 0.1 --test 0.1 --mode grouped
    """
    from ..config import validate
    from .config import SplitConfig
    from .split import split_files

    for p in inputs:
        if not p.exists():
            raise InputError(f"input not found: {p}", "pass the shards written by `lmforge data process`")
    cfg = validate(SplitConfig, {"val_fraction": val, "test_fraction": test, "mode": mode, "seed": seed,
                                 "label_field": label_field, "group_field": group_field}, "split options")
    counts = split_files(sorted(inputs), output, cfg)
    typer.echo(" ".join(f"{k}={v}" for k, v in counts.items()) + f" -> {output}/")


@app.command()
def stats(
    inputs: list[Path] = typer.Argument(..., help="A `data process` output directory, or JSONL shards."),
    output: Path = typer.Option(Path("dataset_card.html"), "--output", "-o", help="HTML card to write."),
) -> None:
    """Write a dataset card: length histograms, language mix, drop reasons, duplicate clusters.

    Example: lmforge data stats out/ --output out/card.html
    """
    from .card import write_card

    for p in inputs:
        if not p.exists():
            raise InputError(f"input not found: {p}", "pass a `lmforge data process` output directory")
    summary = write_card(inputs, output)
    typer.echo(f"{summary['documents']:,} documents -> {output}")


@app.command()
def crawl(
    seeds: list[str] = typer.Argument(None, help="Seed URLs."),
    output: Path = typer.Option(..., "--output", "-o", help="Directory: pages.warc.gz, docs.jsonl, frontier."),
    sitemap: Optional[str] = typer.Option(None, help="A sitemap.xml URL to seed from."),
    api: Optional[str] = typer.Option(None, help="A paged JSON API URL instead of HTML pages."),
    max_pages: int = typer.Option(100, help="Stop after this many pages."),
    max_depth: int = typer.Option(2, help="Link depth from the seeds."),
    max_bytes: int = typer.Option(5_000_000, help="Skip responses larger than this."),
    delay: float = typer.Option(1.0, help="Seconds between requests to one host."),
    concurrency: int = typer.Option(4, help="Parallel requests (per host at most one at a time)."),
    same_domain: bool = typer.Option(True, help="Follow links only within the seeds' hosts."),
    user_agent: str = typer.Option("lmforge-crawler/0.1", help="User-Agent, also matched in robots.txt."),
) -> None:
    """Politely crawl from seed URLs or a sitemap (robots.txt, rate limits, resumable frontier).

    Example: lmforge data crawl https://example.org/ --output crawl --max-pages 50 --delay 2
    """
    from .crawl import CrawlConfig, crawl as run_crawl, crawl_api

    if not seeds and not sitemap and not api:
        raise InputError("no seeds given", "pass seed URLs, --sitemap URL or --api URL")
    cfg = CrawlConfig(seeds=list(seeds or []), sitemap=sitemap, max_pages=max_pages, max_depth=max_depth,
                      max_bytes=max_bytes, delay=delay, concurrency=concurrency, same_domain=same_domain,
                      user_agent=user_agent)
    res = crawl_api(api, output, cfg) if api else run_crawl(cfg, output)
    typer.echo(json.dumps(res))


@app.command()
def leakage(
    a: Path = typer.Argument(..., help="First split (JSONL), e.g. train.jsonl."),
    b: Path = typer.Argument(..., help="Second split (JSONL), e.g. test.jsonl."),
    threshold: float = typer.Option(0.7, help="Estimated Jaccard for a near overlap."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write the report as JSON here."),
) -> None:
    """Report exact and near-duplicate overlap of split B with split A.

    Example: lmforge data leakage splits/train.jsonl splits/test.jsonl --threshold 0.8
    """
    from ..runs import atomic_write_json
    from .split import leakage as run_leakage

    for p in (a, b):
        if not p.exists():
            raise InputError(f"split not found: {p}", "pass two JSONL files of documents")
    report = run_leakage([a], [b], threshold)
    if output:
        atomic_write_json(output, report)
    typer.echo(json.dumps(report, ensure_ascii=False, indent=2))
