"""``lmforge tune`` and ``lmforge cv``: each parses its arguments and calls one function."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console

console = Console(stderr=True)
OVERRIDES = typer.Argument(None, help="dotted key=value overrides applied before the search, e.g. finetune.train.max_steps=300")
RUN_DIR = typer.Option(None, "--run-dir", help="the recipe's run directory (default: <runs_root>/<recipe name>); "
                       "results go to its tune/ or cv/ folder")


def tune(recipe: Path = typer.Argument(..., help="YAML recipe with a tune: section"),
         overrides: Optional[List[str]] = OVERRIDES,
         trials: Optional[int] = typer.Option(None, "--trials", "-n", help="finished trials the study should have "
                                              "(default: tune.trials)"),
         storage: Optional[str] = typer.Option(None, "--storage", help="Optuna RDB URL shared by several machines "
                                               "(default: SQLite in the run directory)"),
         run_dir: Optional[Path] = RUN_DIR) -> None:
    """Search hyperparameters with Optuna (TPE, median/Hyperband pruning); rerun to resume.

    Example: lmforge tune recipes/classify/sst2-bow-tune.yaml --trials 20
    """
    from ..eval.report import build_report
    from .search import Search

    search = Search(recipe, overrides=overrides, run_dir=run_dir, trials=trials, storage=storage)
    result = search.run()
    c = result["counts"]
    console.print(f"[green]done[/green]: {c['complete']} complete, {c['pruned']} pruned, {c['fail']} failed "
                  f"in {search.dir}")
    if "best" in result:
        b = result["best"]
        console.print(f"best {result['metric']} = {b['value']:.6g} (trial {b['number']}): " +
                      ", ".join(f"{k}={v}" for k, v in b["params"].items()))
        console.print(f"best recipe: {search.dir / 'best.yaml'}")
    console.print(f"report: {build_report(search.root)}")


def cv(recipe: Path = typer.Argument(..., help="YAML recipe with a finetune section"),
       overrides: Optional[List[str]] = OVERRIDES,
       folds: int = typer.Option(5, "--folds", "-k", help="number of folds"),
       mode: Optional[str] = typer.Option(None, "--mode", help="stratified (default where each example has one "
                                          "label), grouped (near-duplicates stay together) or random"),
       group_field: Optional[str] = typer.Option(None, "--group-field", help="grouped: also keep examples with "
                                                 "equal values of this key together"),
       seed: int = typer.Option(0, "--seed", help="fold assignment seed"),
       run_dir: Optional[Path] = RUN_DIR) -> None:
    """K-fold cross-validation: mean and standard deviation of every metric over held-out folds.

    Example: lmforge cv recipes/classify/sst2-bow-tune.yaml --folds 5
    """
    from ..eval.report import build_report
    from .cv import cross_validate

    result = cross_validate(recipe, folds, run_dir=run_dir, mode=mode, seed=seed, group_field=group_field,
                            overrides=overrides)
    for variant, metrics in result["summary"].items():
        shown = ", ".join(f"{k} {m['mean']:.4f} ± {m['std']:.4f}" for k, m in metrics.items() if k != "n")
        console.print(f"{variant}: {shown}")
    root = Path(result["fold_dirs"][0]).parent.parent
    console.print(f"report: {build_report(root)}")
