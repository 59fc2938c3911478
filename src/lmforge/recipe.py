"""Recipes: the whole workflow as one YAML file, run stage by stage with caching.

A stage reruns only when its fingerprint changes: its own config section, the hashes of the files
it reads, and the fingerprints of the stages it depends on. So editing ``finetune`` reruns
finetune, evaluate and report, and reuses data, tokenizer and pretrain.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from rich.console import Console

from . import __version__
from .config import StrictModel, load_config
from .data.config import DataStageConfig
from .errors import ConfigError
from .eval.evaluate import EvaluateConfig
from .runs import RunDir, StageResult, fingerprint, hash_inputs
from .tasks.classification import FinetuneConfig
from .tasks.generation import GenerateConfig
from .tokenizer.config import TokenizerConfig
from .train.config import PretrainConfig

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


ORDER = ["data", "tokenizer", "pretrain", "finetune", "evaluate", "generate", "report"]
DEPENDS = {
    "data": [],
    "tokenizer": ["data"],
    "pretrain": ["tokenizer"],
    "finetune": ["pretrain"],
    "evaluate": ["finetune"],
    "generate": ["pretrain"],
    "report": ["data", "tokenizer", "pretrain", "finetune", "evaluate", "generate"],
}


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> Recipe:
    return load_config(Recipe, path, overrides)


def _tokenizer_files(recipe: Recipe, run: RunDir, split: str) -> list[Path]:
    if recipe.data is not None:
        return [run.stage_dir("data") / "splits" / f"{split}.jsonl"]
    if recipe.pretrain is not None and recipe.pretrain.data is not None:
        files = recipe.pretrain.data.train if split == "train" else (recipe.pretrain.data.val or [])
        return [Path(p) for p in files]
    return []


def _run_stage(stage: str, recipe: Recipe, run: RunDir, progress: bool) -> StageResult:
    out = run.stage_dir(stage)
    if stage == "data":
        from .data.stage import run as data_run

        return data_run(recipe.data.model_copy(update={"progress": progress}), out)
    if stage == "tokenizer":
        from .tokenizer.stage import run as tok_run

        train, val = _tokenizer_files(recipe, run, "train"), _tokenizer_files(recipe, run, "val")
        if not recipe.tokenizer.files and not train:
            raise ConfigError("tokenizer: nothing to train on",
                              "add a data section, set tokenizer.files, or set pretrain.data.train")
        return tok_run(recipe.tokenizer, train, val, out)
    if stage == "pretrain":
        from .train.pretrain import run as pretrain_run

        return pretrain_run(recipe.pretrain, run.stage_dir("tokenizer"), out, progress=progress)
    if stage == "finetune":
        from .tasks.classification import run as finetune_run

        body = run.stage_dir("pretrain") / "model" if recipe.pretrain is not None else None
        return finetune_run(recipe.finetune, body, out, progress=progress)
    if stage == "evaluate":
        from .eval.evaluate import run as evaluate_run

        return evaluate_run(recipe.evaluate, recipe.finetune, run.stage_dir("finetune"), out, progress=progress)
    if stage == "generate":
        from .tasks.generation import run as generate_run

        return generate_run(recipe.generate, run.stage_dir("pretrain") / "model", out)
    if stage == "report":
        from .eval.report import build_report

        out.mkdir(parents=True, exist_ok=True)
        return StageResult(metrics={"report": str(build_report(run.path))})
    raise AssertionError(stage)


def missing_dependencies(recipe: Recipe, stage: str) -> list[str]:
    need = {"pretrain": ["tokenizer"], "finetune": [] if recipe.finetune and recipe.finetune.init_from else ["pretrain"],
            "evaluate": ["finetune"], "generate": ["pretrain"]}.get(stage, [])
    return [d for d in need if getattr(recipe, d) is None]


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
        upstream = {d: fps[d] for d in DEPENDS[stage] if d in fps}
        fp = fingerprint({"config": cfg.model_dump(mode="json"), "inputs": inputs, "upstream": upstream,
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
                result = _run_stage(stage, recipe, run, progress)
            except BaseException as err:
                run.fail(stage, f"{type(err).__name__}: {err}")
                raise
            run.finish(stage, result, time.perf_counter() - t0)
            console.print(f"  {stage} done in {time.perf_counter() - t0:.1f}s: {_headline(result.metrics)}")
        if stage == until:
            break
    return run


def _headline(metrics: dict) -> str:
    flat = {k: v for k, v in metrics.items() if isinstance(v, (int, float, str)) and k != "report"}
    text = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in list(flat.items())[:6])
    nested = {k: v for k, v in metrics.items() if isinstance(v, dict)}
    for k, v in nested.items():
        inner = ", ".join(f"{a}={b:.4g}" if isinstance(b, float) else f"{a}={b}" for a, b in v.items()
                          if isinstance(b, (int, float)))
        text += f"; {k}: {inner}"
    return text or str(metrics.get("report", ""))
