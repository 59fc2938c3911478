"""``lmforge label weak`` and ``lmforge label issues``: each parses its arguments and calls the
functions of ``label/weak.py`` and ``label/issues.py``. Mounted under the ``label`` Typer app."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console

console = Console(stderr=True)


def model_predictor_factory(batch_size: int = 64):
    """``model_dir -> predictor(texts) -> [{"label", "score", ...}]`` for ``kind: model`` labeling
    functions: any fine-tuned lmforge model, loaded once per directory."""
    cache: dict = {}

    def factory(model_dir: str):
        def predict(texts: list[str]) -> list[dict]:
            from ..tasks.stage import encode_all, load_task_model, predict_features

            if model_dir not in cache:
                cache[model_dir] = load_task_model(model_dir)
            task, model, tok = cache[model_dir]
            examples = [task.example(t, i) for i, t in enumerate(texts)]
            return predict_features(task, model, tok, encode_all(task, examples, tok), batch_size)

        return predict

    return factory


def _jsonl(rows) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


def weak(lfs: Path = typer.Option(..., "--lfs", help="YAML file of labeling functions (labels: + functions:)"),
         data: Path = typer.Option(..., "--data", help="texts to label (.jsonl/.csv/.tsv)"),
         output: Optional[Path] = typer.Option(None, "--output", "-o", help="write training labels here (jsonl)"),
         dev: Optional[Path] = typer.Option(None, "--dev", help="a labeled dev set: adds correct/incorrect/empirical "
                                            "accuracy to the table and scores the label model against majority vote"),
         text_field: str = typer.Option("text", "--text-field"),
         label_field: str = typer.Option("label", "--label-field", help="the gold label field of --dev"),
         id_field: str = typer.Option("id", "--id-field"),
         label_model: str = typer.Option("dawid-skene", "--label-model", help="dawid-skene or majority"),
         labels_out: str = typer.Option("hard", "--labels", help="hard (one label) or probs (also a probability "
                                        "per label)"),
         keep_uncovered: bool = typer.Option(False, "--keep-uncovered", help="also write rows no function voted on"),
         table: Optional[Path] = typer.Option(None, "--table", help="also write the analysis (json)")) -> None:
    """Apply labeling functions, print their analysis table, combine their votes into labels.

    Example: lmforge label weak --lfs lfs.yaml --data unlabeled.jsonl --dev dev.tsv --text-field sentence -o weak.jsonl
    """
    from ..data.readers import read_records
    from ..errors import InputError
    from ..runs import atomic_write_json, atomic_write_text
    from .issues import read_labeled
    from .weak import analyze, apply_lfs, combine, compare_on_dev, failure_lines, format_table, label_rows, load_lfs, totals

    if labels_out not in ("hard", "probs"):
        raise InputError(f"--labels {labels_out}", "use hard or probs")
    labels, fns = load_lfs(lfs, model_predictor_factory())
    ids, texts = [], []
    for line, rec in read_records(str(data)):
        if text_field not in rec:
            raise InputError(f"{data}:{line}: no field '{text_field}'", "set --text-field")
        ids.append(str(rec.get(id_field)) if rec.get(id_field) is not None else f"{data.name}:{line}")
        texts.append(str(rec[text_field]))
    if not texts:
        raise InputError(f"{data}: no texts", "pass a file with one text per record")
    L = apply_lfs(fns, texts, labels)
    for line in failure_lines(fns):
        console.print(f"[yellow]warning[/yellow]: {line}")
    names = [f.name for f in fns]
    report: dict = {"data": str(data), "n": len(texts), "totals": totals(L), "functions": analyze(L, names, labels),
                    "failures": failure_lines(fns)}
    console.print(f"[bold]{data}[/bold]: {len(texts)} texts; any function votes on {report['totals']['coverage']:.1%}, "
                  f"2+ on {report['totals']['overlap']:.1%}, conflicts on {report['totals']['conflict']:.1%}")
    if dev is not None:
        _, dev_texts, dev_gold = read_labeled(dev, text_field, label_field, id_field)
        index = {y: i for i, y in enumerate(labels)}
        gold = [index.get(g, -1) for g in dev_gold]
        for lf in fns:
            lf.errors, lf.first_error = 0, None
        L_dev = apply_lfs(fns, dev_texts, labels)
        for line in failure_lines(fns):
            console.print(f"[yellow]warning[/yellow] (dev): {line}")
        report["dev"] = {"data": str(dev), "functions": analyze(L_dev, names, labels, gold),
                         "label_models": compare_on_dev(L, L_dev, gold, len(labels))}
        console.print(f"\n[bold]on {dev}[/bold] ({len(dev_texts)} labeled)")
        print(format_table(report["dev"]["functions"]))
        lm = report["dev"]["label_models"]
        console.print(f"dev rows with a vote: {lm['coverage']:.1%}; accuracy there: Dawid-Skene "
                      f"{lm['dawid_skene']['accuracy_covered']:.4f}, majority vote "
                      f"{lm['majority_vote']['accuracy_covered']:.4f} (ties at random: {lm['mv_ties']})")
    else:
        print(format_table(report["functions"]))
    if table is not None:
        atomic_write_json(table, report)
    if output is not None:
        probs = combine(L, len(labels), "majority" if label_model == "majority" else label_model)
        rows = label_rows(ids, texts, L, probs, labels, labels_out, keep_uncovered)
        atomic_write_text(output, _jsonl(rows))
        console.print(f"[green]wrote[/green] {len(rows)} labeled rows ({label_model}, {labels_out}) to {output}"
                      + ("" if keep_uncovered else f"; {len(texts) - len(rows)} rows without a vote left out"))


def issues(data: Path = typer.Option(..., "--data", help="labeled file (.jsonl/.csv/.tsv)"),
           output: Path = typer.Option(..., "--output", "-o", help="jsonl of likely label errors, worst first"),
           recipe: Optional[Path] = typer.Option(None, "--recipe", help="classification recipe whose finetune "
                                                 "section is the model (default: TF-IDF + logistic regression)"),
           folds: int = typer.Option(5, "--folds", "-k", help="cross-validation folds"),
           text_field: str = typer.Option("text", "--text-field"),
           label_field: str = typer.Option("label", "--label-field"),
           id_field: str = typer.Option("id", "--id-field"),
           rank_by: str = typer.Option("self_confidence", "--rank-by", help="self_confidence, normalized_margin or "
                                       "confidence_weighted_entropy"),
           all_rows: bool = typer.Option(False, "--all", help="write every row ranked, not only the flagged ones"),
           seed: int = typer.Option(0, "--seed"),
           run_dir: Optional[Path] = typer.Option(None, "--run-dir", help="--recipe: where the fold runs go"),
           overrides: Optional[List[str]] = typer.Argument(None, help="--recipe: dotted key=value overrides")) -> None:
    """Rank likely label errors by confident learning on cross-validated probabilities (cleanlab).

    Example: lmforge label issues --data train.jsonl --folds 5 --output issues.jsonl
    """
    from ..errors import InputError
    from ..runs import atomic_write_text
    from .issues import find_issues

    if rank_by not in ("self_confidence", "normalized_margin", "confidence_weighted_entropy"):
        raise InputError(f"--rank-by {rank_by}", "use self_confidence, normalized_margin or confidence_weighted_entropy")
    if overrides and recipe is None:
        raise InputError(f"overrides {overrides} given without --recipe", "overrides apply to a recipe")
    rows = find_issues(data, folds, recipe, text_field, label_field, id_field, seed, rank_by, all_rows,  # type: ignore[arg-type]
                       run_dir, overrides or [], progress=recipe is not None)
    atomic_write_text(output, _jsonl(rows))
    flagged = sum(r["is_issue"] for r in rows)
    console.print(f"[green]wrote[/green] {len(rows)} rows to {output} ({flagged} flagged as likely label errors)")
    for r in [r for r in rows if r["is_issue"]][:5]:
        console.print(f"  {r['id']}: {r['given_label']} -> {r['suggested_label']} (score {r['score']:.3f}) "
                      f"{(r.get('text') or '')[:70]!r}")
