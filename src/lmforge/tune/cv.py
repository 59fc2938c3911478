"""``lmforge cv``: k-fold cross-validation of a fine-tuning recipe.

Each fold is the recipe run with ``finetune.data.fold = {k, index}``: the held-out fold of the
training file is the test set, validation comes out of the other folds as usual, and the recipe's
own test file is never touched. Folds are stratified by label (or grouped, so near-duplicate
clusters never straddle train and held-out; or random). The summary is every evaluate metric's mean
and sample standard deviation over the folds, a per-fold table and a plot, in ``cv/results.json``
and in the run's report.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from rich.console import Console

from ..errors import ConfigError
from ..runs import atomic_write_json

console = Console(stderr=True)


def fold_recipe(recipe_path: str | Path, overrides: list[str], k: int, index: int, mode: str | None, seed: int,
                group_field: str | None):
    """The recipe of one fold: evaluation on the held-out fold, no per-fold report."""
    from ..eval.evaluate import EvaluateConfig
    from ..recipe import load_recipe

    fold = {"k": k, "index": index, "mode": mode, "seed": seed, "group_field": group_field}
    recipe = load_recipe(recipe_path, [*overrides, f"finetune.data.fold={json.dumps(fold)}"])
    if recipe.finetune is None:
        raise ConfigError(f"{recipe_path} has no finetune section", "cross-validation folds the fine-tuning data")
    if recipe.evaluate is not None and recipe.evaluate.data is not None:
        raise ConfigError("evaluate.data is set: the folds would not be scored on their held-out part",
                          "remove evaluate.data for lmforge cv")
    return recipe.model_copy(update={"evaluate": recipe.evaluate or EvaluateConfig(), "report": None})


def summarize(fold_metrics: list[dict]) -> dict:
    """Per variant and metric: mean, std (n-1) and the per-fold values; metrics every fold has."""
    out: dict = {}
    for variant in fold_metrics[0]:
        rows = [m.get(variant, {}) for m in fold_metrics]
        keys = [k for k, v in rows[0].items() if isinstance(v, (int, float)) and not isinstance(v, bool)
                and k not in ("n", "confidence", "bootstrap_resamples") and all(isinstance(r.get(k), (int, float)) for r in rows)]
        out[variant] = {k: {"mean": statistics.fmean(r[k] for r in rows),
                            "std": statistics.stdev([r[k] for r in rows]) if len(rows) > 1 else 0.0,
                            "folds": [r[k] for r in rows]} for k in keys}
        out[variant]["n"] = [r.get("n") for r in rows]
    return out


def plot_folds(summary: dict, path: Path) -> Path:
    from ..eval.report import _save, plt

    variants = list(summary)
    keys = [k for k in summary[variants[0]] if k != "n"]
    fig, axes = plt.subplots(1, len(keys), figsize=(3.2 * len(keys), 2.8), squeeze=False)
    for ax, key in zip(axes[0], keys):
        for v in variants:
            vals = summary[v][key]["folds"]
            line, = ax.plot(range(1, len(vals) + 1), vals, "o", label=v)
            ax.axhline(summary[v][key]["mean"], color=line.get_color(), ls="--", lw=1)
        ax.set_title(key)
        ax.set_xlabel("fold")
        ax.set_xticks(range(1, len(vals) + 1))
    if len(variants) > 1:
        axes[0][0].legend(fontsize=7)
    return _save(fig, path)


def cross_validate(recipe_path: str | Path, folds: int, run_dir: str | Path | None = None, mode: str | None = None,
                   seed: int = 0, group_field: str | None = None, overrides: list[str] | None = None,
                   progress: bool = True) -> dict:
    """Run every fold (finished folds are reused, an interrupted one resumes) and summarize them."""
    from ..recipe import load_recipe, run_recipe

    overrides = list(overrides or [])
    base = load_recipe(recipe_path, overrides)
    root = Path(run_dir) if run_dir else Path(base.runs_root) / base.name
    cv_dir = root / "cv"
    recipes = [fold_recipe(recipe_path, overrides, folds, i, mode, seed, group_field) for i in range(folds)]
    per_fold = []
    for i, recipe in enumerate(recipes):
        console.print(f"[bold magenta]fold {i + 1}/{folds}[/bold magenta]")
        run = run_recipe(recipe, cv_dir / f"fold-{i}", until="evaluate", progress=progress)
        metrics = json.loads((run.stage_dir("evaluate") / "metrics.json").read_text())
        per_fold.append({v: {k: x for k, x in r.items() if isinstance(x, (int, float))} for v, r in metrics.items()})
    summary = summarize(per_fold)
    result = {"recipe": str(recipe_path), "overrides": overrides, "folds": folds, "mode": mode, "seed": seed,
              "group_field": group_field, "summary": summary,
              "fold_dirs": [str(cv_dir / f"fold-{i}") for i in range(folds)]}
    atomic_write_json(cv_dir / "results.json", result)
    plot_folds(summary, cv_dir / "folds.png")
    return result
