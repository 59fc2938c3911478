"""``lmforge label ...``: import, export, serve, agreement, stats (mounted by lmforge.cli)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(help="Labeling projects (SQLite): import, annotate in the browser, agreement, export.",
                  no_args_is_help=True)

PROJECT = typer.Option(..., "--project", "-p", help="The project's SQLite file, e.g. labels.db.")


def _labels(text: Optional[str]) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()] if text else []


@app.command("import")
def import_(
    file: Path = typer.Argument(..., help="jsonl/json/csv/tsv, a `data split` directory, or a Label Studio JSON export."),
    project: Path = PROJECT,
    kind: Optional[str] = typer.Option(None, help="classification | multilabel | ner (new projects; else guessed "
                                       "from the labels in the file)."),
    labels: Optional[str] = typer.Option(None, help="Comma-separated label names to add, e.g. pos,neg."),
    text_field: str = typer.Option("text", help="Field (or column) with the text."),
    label_field: str = typer.Option("label", help="Field with the label (also looked up under meta)."),
    id_field: str = typer.Option("id", help="Field with the example id."),
    annotator: str = typer.Option("import", help="Whose annotations the file's labels become."),
    label_separator: str = typer.Option(",", help="Multi-label labels given as one string, e.g. 'a,b'."),
    offsets: str = typer.Option("auto", help="Label Studio span offsets: auto | codepoints | utf16 (versions "
                                "from 2021 and before)."),
) -> None:
    """Add examples (and their labels, predictions, Label Studio annotations) to a project.

    Example: lmforge label import reviews.csv --project labels.db --kind classification --labels pos,neg
    """
    from .io import import_file

    res = import_file(project, file, kind, _labels(labels), text_field, label_field, id_field, annotator,
                      label_separator, offsets)
    extra = "".join(f", {res[k]} {k.replace('_', ' ')}" for k in ("skipped", "predictions", "spans_dropped")
                    if res.get(k))
    typer.echo(f"{res['added']} examples added ({res['existing']} already there), {res['annotations']} annotations"
               f"{extra} -> {project} [{res['kind']}: {', '.join(res['labels'])}]")
    if res.get("unreadable"):
        typer.echo(f"warning: {res['unreadable']} annotations were left out: they hold results of another "
                   f"labeling config ({'; '.join(res['unreadable_examples'])})", err=True)
    if res.get("spans_dropped"):
        typer.echo("warning: spans whose offsets match neither code points nor UTF-16 were left out "
                   "(they stay in the Label Studio export)", err=True)


@app.command()
def export(
    project: Path = PROJECT,
    format: str = typer.Option("jsonl", "--format", "-f", help="jsonl (what `finetune` reads) | labelstudio | "
                               "conll (NER)."),
    output: Path = typer.Option(..., "--output", "-o", help="File to write."),
    annotator: Optional[str] = typer.Option(None, help="Export this annotator's labels (default: the majority of "
                                            "annotators, ties to the latest)."),
    include_unlabeled: bool = typer.Option(False, help="jsonl: also examples without a label (label null)."),
    offsets: str = typer.Option("codepoints", help="labelstudio: codepoints (current Label Studio) | utf16."),
) -> None:
    """Write the project's labels for training or for Label Studio.

    Example: lmforge label export --project labels.db --format jsonl --output train.jsonl
    """
    from .io import export as run_export

    n = run_export(project, format, output, annotator, include_unlabeled, offsets)
    typer.echo(f"{n} examples -> {output}")
    if format == "labelstudio":
        from .labelstudio import labeling_config
        from .project import Project

        config = output.with_name(output.stem + ".label_config.xml")
        with Project(project) as proj:
            config.write_text(labeling_config(proj), encoding="utf-8")
        typer.echo(f"Label Studio labeling interface -> {config}")


@app.command()
def serve(
    project: Path = PROJECT,
    host: str = typer.Option("127.0.0.1", help="Address to bind (the page has no login: keep it local)."),
    port: int = typer.Option(8765, help="Port."),
    annotator: str = typer.Option("default", help="Annotator name for this browser session (or ?annotator=NAME)."),
) -> None:
    """Open the annotation page: one example at a time, keyboard shortcuts, spans by mouse.

    Example: lmforge label serve --project labels.db --annotator alice   (then open http://127.0.0.1:8765)
    """
    from .project import Project
    from .server import serve as run_server

    Project(project).close()  # a clear error before the server starts
    if host not in ("127.0.0.1", "localhost", "::1"):
        typer.echo(f"warning: binding {host}: anyone who can reach it can read and annotate the project", err=True)
    typer.echo(f"annotating {project} as {annotator}: http://{host}:{port}/")
    run_server(project, host, port, annotator)


@app.command()
def agreement(
    project: Path = PROJECT,
    annotators: Optional[str] = typer.Option(None, help="Comma-separated annotators to compare (default: all)."),
    conflicts: Optional[Path] = typer.Option(None, help="Write the conflicting examples here (jsonl)."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Inter-annotator agreement: Cohen's kappa per pair, Fleiss' kappa, Krippendorff's alpha; conflicts.

    Example: lmforge label agreement --project labels.db --conflicts conflicts.jsonl
    """
    from .agreement import agreement as run_agreement, conflicts as find_conflicts
    from .project import Project

    who = _labels(annotators) or None
    with Project(project) as proj:
        report = run_agreement(proj, who)
        if conflicts is not None:
            from ..runs import atomic_write_text

            rows = find_conflicts(proj, who)
            atomic_write_text(conflicts, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    if as_json:
        typer.echo(json.dumps(report, ensure_ascii=False, indent=2))
        return
    typer.echo(f"{report['kind']}: {len(report['annotators'])} annotators, {report['items']} items "
               "labeled by two or more")
    for pair, r in report["pairs"].items():
        f1 = f", span F1 {r['span_f1']}" if "span_f1" in r else ""
        typer.echo(f"  {pair}: Cohen's kappa {r['kappa']}, agreement {r['agreement']} on {r['items']} items{f1}")
    typer.echo(f"Fleiss' kappa {report['fleiss_kappa']} ({report['fleiss_items']} items labeled by all); "
               f"Krippendorff's alpha {report['krippendorff_alpha']}; {report['conflicts']} conflicting examples"
               + (f" -> {conflicts}" if conflicts else ""))


@app.command()
def stats(project: Path = PROJECT) -> None:
    """Examples, labels, annotators and their progress.

    Example: lmforge label stats --project labels.db
    """
    from .project import Project

    with Project(project) as proj:
        typer.echo(json.dumps(proj.stats(), ensure_ascii=False, indent=2))


@app.command()
def suggest(
    project: Path = PROJECT,
    model: Path = typer.Option(..., "--model", help="a fine-tuned lmforge model directory (classification or NER)"),
    all_examples: bool = typer.Option(False, "--all", help="also pre-label examples that already have labels"),
) -> None:
    """Store a model's pre-labels (label and confidence) for the page to show.

    Example: lmforge label suggest --project labels.db --model runs/sst2/finetune/pretrained/model
    """
    from .assist import suggest as run_suggest
    from .cli_extra import model_predictor_factory
    from .project import Project

    with Project(project) as proj:
        out = run_suggest(proj, model_predictor_factory()(str(model)), model.name or str(model),
                          only_unlabeled=not all_examples)
    typer.echo(json.dumps(out, ensure_ascii=False))


@app.command("next")
def next_(
    project: Path = PROJECT,
    model: Path = typer.Option(..., "--model", help="a fine-tuned lmforge classification model directory"),
    k: int = typer.Option(10, "--k", min=1, help="how many examples to pick"),
    strategy: str = typer.Option("entropy", "--strategy",
                                 help="entropy | margin | least_confident | random | diversity"),
    seed: int = typer.Option(0, "--seed"),
    output: Path | None = typer.Option(None, "--output", "-o", help="write the picks as jsonl (default: stdout)"),
) -> None:
    """Pick the unlabeled examples to label next (active learning), best first.

    Example: lmforge label next --project labels.db --model MODEL_DIR --k 20 --strategy margin
    """
    from .assist import next_batch
    from .cli_extra import model_predictor_factory
    from .project import Project

    with Project(project) as proj:
        picks = next_batch(proj, model_predictor_factory()(str(model)), k, strategy, seed=seed)
    text = "".join(json.dumps(p, ensure_ascii=False) + "\n" for p in picks)
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
        typer.echo(f"{len(picks)} examples -> {output}")


@app.command()
def backend(
    model: Path = typer.Option(..., "--model", help="a fine-tuned lmforge classification or NER model directory"),
    host: str = typer.Option("127.0.0.1", help="Address to bind."),
    port: int = typer.Option(9090, help="Port (Label Studio's ML backends default to 9090)."),
) -> None:
    """A Label Studio ML backend (/health, /setup, /predict) over an lmforge model.

    Example: lmforge label backend --model runs/sst2/finetune/pretrained/model   (then connect
    http://127.0.0.1:9090 in Label Studio: Settings -> Model)
    """
    import uvicorn

    from ..errors import InputError
    from .cli_extra import model_predictor_factory
    from .ml_backend import create_app

    meta = model / "task.json"
    if not meta.exists():
        raise InputError(f"{model}: no task.json, not a fine-tuned task model", "pass a finetune/*/model directory")
    kind = json.loads(meta.read_text(encoding="utf-8")).get("kind")
    if kind not in ("classification", "ner"):
        raise InputError(f"{model}: a {kind} model cannot label in Label Studio", "use a classification or NER model")
    app_ = create_app(model_predictor_factory()(str(model)), model.name or str(model), kind)
    uvicorn.run(app_, host=host, port=port, log_level="warning")


def _mount_extra() -> None:
    """Weak labels and label issues live in cli_extra.py (their options are many); same sub-app."""
    from .cli_extra import issues, weak

    app.command("weak")(weak)
    app.command("issues")(issues)


_mount_extra()
