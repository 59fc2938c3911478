"""Recipes: the whole workflow as one YAML file, run stage by stage with caching.

A stage reruns only when its fingerprint changes: its own config section, the hashes of the files
it reads, and the fingerprints of the stages it depends on. So editing ``finetune`` reruns
finetune, evaluate and report, and reuses data, tokenizer and pretrain.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from pydantic import Field
from rich.console import Console

from . import __version__
from .config import StrictModel, load_config
from .data.config import DataStageConfig
from .errors import ConfigError
from .eval.evaluate import EvaluateConfig
from .runs import RunDir, StageResult, fingerprint, hash_inputs
from .tasks.stage import FinetuneConfig
from .tasks.generation import GenerateConfig
from .tokenizer.config import TokenizerConfig
from .train.config import PretrainConfig
from .tune.config import TuneConfig

console = Console(stderr=True)


class ReportConfig(StrictModel):
    enabled: bool = True


class Recipe(StrictModel):
    name: str
    runs_root: str = "runs"
    data: DataStageConfig | None = None
    tokenizer: TokenizerConfig | None = None
    pretrain: PretrainConfig | None = None
    finetune: FinetuneConfig | None = None
    evaluate: EvaluateConfig | None = None
    generate: GenerateConfig | None = None
    report: ReportConfig | None = None
    tune: TuneConfig | None = Field(None, description="lmforge tune: the search space and objective (no stage)")


def _tokenizer_files(recipe: Recipe, run: RunDir, split: str) -> list[Path]:
    if recipe.data is not None:
        return [run.stage_dir("data") / "splits" / f"{split}.jsonl"]
    if recipe.pretrain is not None and recipe.pretrain.data is not None:
        files = recipe.pretrain.data.train if split == "train" else (recipe.pretrain.data.val or [])
        return [Path(p) for p in files]
    return []


def _data(recipe: Recipe, run: RunDir, out: Path, progress: bool) -> StageResult:
    from .data.stage import run as data_run

    return data_run(recipe.data.model_copy(update={"progress": progress}), out)


def _tokenizer(recipe: Recipe, run: RunDir, out: Path, progress: bool) -> StageResult:
    from .tokenizer.stage import run as tok_run

    train, val = _tokenizer_files(recipe, run, "train"), _tokenizer_files(recipe, run, "val")
    if not recipe.tokenizer.files and not train:
        raise ConfigError("tokenizer: nothing to train on",
                          "add a data section, set tokenizer.files, or set pretrain.data.train")
    return tok_run(recipe.tokenizer, train, val, out)


def _pretrain(recipe: Recipe, run: RunDir, out: Path, progress: bool) -> StageResult:
    from .train.pretrain import run as pretrain_run

    return pretrain_run(recipe.pretrain, run.stage_dir("tokenizer"), out, progress=progress)


def _finetune(recipe: Recipe, run: RunDir, out: Path, progress: bool) -> StageResult:
    from .tasks.stage import run as finetune_run

    body = run.stage_dir("pretrain") / "model" if recipe.pretrain is not None else None
    tok_dir = run.stage_dir("tokenizer") if recipe.tokenizer is not None else None
    return finetune_run(recipe.finetune, body, out, progress=progress, tokenizer_dir=tok_dir)


def _evaluate(recipe: Recipe, run: RunDir, out: Path, progress: bool) -> StageResult:
    from .eval.evaluate import run as evaluate_run

    return evaluate_run(recipe.evaluate, recipe.finetune, run.stage_dir("finetune"), out, progress=progress)


def _generate(recipe: Recipe, run: RunDir, out: Path, progress: bool) -> StageResult:
    from .tasks.generation import run as generate_run

    return generate_run(recipe.generate, run.stage_dir("pretrain") / "model", out)


def _report(recipe: Recipe, run: RunDir, out: Path, progress: bool) -> StageResult:
    from .eval.report import build_report

    out.mkdir(parents=True, exist_ok=True)
    return StageResult(metrics={"report": str(build_report(run.path, finishing="report"))})


@dataclass(frozen=True)
class Stage:
    """One entry per stage: ``upstream`` feeds its fingerprint; ``needs`` must be in the recipe."""

    run: Callable[[Recipe, RunDir, Path, bool], StageResult]
    upstream: tuple[str, ...] = ()
    needs: Callable[[Recipe], tuple[str, ...]] = lambda r: ()


STAGES: dict[str, Stage] = {
    "data": Stage(_data),
    "tokenizer": Stage(_tokenizer, ("data",)),
    "pretrain": Stage(_pretrain, ("tokenizer",), lambda r: ("tokenizer",)),
    "finetune": Stage(_finetune, ("tokenizer", "pretrain"), lambda r: () if r.finetune.init_from else
                      ("tokenizer",) if r.finetune.model is not None else ("pretrain",)),
    "evaluate": Stage(_evaluate, ("finetune",), lambda r: ("finetune",)),
    "generate": Stage(_generate, ("pretrain",), lambda r: ("pretrain",)),
    "report": Stage(_report, ("data", "tokenizer", "pretrain", "finetune", "evaluate", "generate")),
}
ORDER = list(STAGES)


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> Recipe:
    return load_config(Recipe, path, overrides)


def missing_dependencies(recipe: Recipe, stage: str) -> list[str]:
    return [d for d in STAGES[stage].needs(recipe) if getattr(recipe, d) is None]


def run_recipe(recipe: Recipe, run_dir: str | Path | None = None, until: str | None = None,
               force: bool = False, progress: bool = True) -> RunDir:
    """Run every configured stage in order (up to ``until``), skipping those that are unchanged."""
    if until is not None and getattr(recipe, until) is None:
        raise ConfigError(f"the recipe has no '{until}' section", f"add a {until}: section to the recipe")
    run = RunDir(run_dir or Path(recipe.runs_root) / recipe.name, config=recipe.model_dump(mode="json"))
    fps: dict[str, str] = {}
    for stage in ORDER:
        cfg = getattr(recipe, stage)
        if cfg is None:
            continue
        missing = missing_dependencies(recipe, stage)
        if missing:
            raise ConfigError(f"stage '{stage}' needs the {', '.join(missing)} section(s)",
                              f"add {', '.join(missing)} to the recipe")
        inputs = hash_inputs(cfg.input_paths()) if hasattr(cfg, "input_paths") else {}
        upstream = {d: fps[d] for d in STAGES[stage].upstream if d in fps}
        fp = fingerprint({"config": _outcome_config(cfg.model_dump(mode="json")), "inputs": inputs, "upstream": upstream,
                          "version": __version__})
        fps[stage] = fp
        if not force and run.is_fresh(stage, fp):
            console.print(f"[dim]- {stage}: unchanged, reusing {run.stage_dir(stage)}[/dim]")
        else:
            previous = run.stage(stage)
            if previous.get("fingerprint") != fp and run.stage_dir(stage).exists():
                shutil.rmtree(run.stage_dir(stage))  # stale outputs of another config; same fp = resume
            console.print(f"[bold cyan]▶ {stage}[/bold cyan]")
            run.begin(stage, fp, inputs)
            t0 = time.perf_counter()
            try:
                result = STAGES[stage].run(recipe, run, run.stage_dir(stage), progress)
            except BaseException as err:
                run.fail(stage, f"{type(err).__name__}: {err}")
                raise
            run.finish(stage, result, time.perf_counter() - t0)
            console.print(f"  {stage} done in {time.perf_counter() - t0:.1f}s: {_headline(result.metrics)}")
        if stage == until:
            break
    return run


# settings that change where metrics are also sent, not what a stage computes: turning a tracker on
# must not retrain a finished stage
NOT_FINGERPRINTED = ("track", "tensorboard")


def _outcome_config(d):
    if isinstance(d, dict):
        return {k: _outcome_config(v) for k, v in d.items() if k not in NOT_FINGERPRINTED}
    return d


def _headline(metrics: dict) -> str:
    """One line: top-level numbers, then ``group: key=value`` per nested dict (one level deeper as
    ``name.key``, e.g. ``baselines: tfidf+lr.accuracy=0.83``)."""
    def fmt(k, v):
        return f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"

    flat = {k: v for k, v in metrics.items() if isinstance(v, (int, float, str)) and k != "report"}
    parts = [", ".join(fmt(k, v) for k, v in list(flat.items())[:6])] if flat else []
    for k, v in metrics.items():
        if not isinstance(v, dict):
            continue
        items = [fmt(a, b) for a, b in v.items() if isinstance(b, (int, float))]
        items += [fmt(f"{a}.{c}", d) for a, b in v.items() if isinstance(b, dict)
                  for c, d in b.items() if isinstance(d, (int, float))]
        if items:
            parts.append(f"{k}: {', '.join(items)}")
    return "; ".join(parts) or str(metrics.get("report", ""))
