"""``lmforge tune``: hyperparameter search with Optuna over any dotted recipe key.

A trial is the recipe with the sampled values as overrides, run up to its training stage in
``tune/trials/<params hash>/`` (validation only: the test set plays no part in choosing). The
trainer reports every evaluation to the pruner through ``train.loop.EVAL_HOOKS``; the trial's value
is the best validation metric it logged. The study lives in SQLite beside the trials unless a
storage URL shares it between machines. After a kill, the trial that was running in this process
is queued again with the same values, so it lands in the same directory and the trainer resumes
from its checkpoint. Results: ``tune/results.json`` (every trial), ``tune/best.yaml`` (a runnable
recipe with the best values), history and importance plots, and a section in the run's report.
"""

from __future__ import annotations

import copy
import difflib
import gc
import hashlib
import json
import os
import shutil
import socket
from pathlib import Path

from rich.console import Console

from ..errors import ConfigError, InputError
from ..runs import atomic_write_json, atomic_write_text
from .config import TuneConfig

console = Console(stderr=True)
LOWER_IS_BETTER = ("loss", "perplexity", "bits_per_byte", "error", "wer", "cer")


def _optuna():
    try:
        import optuna
    except ImportError:
        raise InputError("lmforge tune needs Optuna", "pip install 'lmforge[tune]' (or pip install optuna)") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def dotted_keys(data, prefix: str = "") -> dict[str, object]:
    """Every dotted key of a nested config dict, sections included."""
    out: dict[str, object] = {}
    if isinstance(data, dict):
        for k, v in data.items():
            key = f"{prefix}{k}"
            out[key] = v
            out.update(dotted_keys(v, key + "."))
    return out


def check_space(space: dict, recipe_dump: dict) -> None:
    """Every searched key must exist in the recipe (with its defaults filled in); else did-you-mean."""
    keys = dotted_keys(recipe_dump)
    for key in space:
        if key in keys and not isinstance(keys[key], dict):
            continue
        if key in keys:
            raise ConfigError(f"tune.space.{key} is a section, not a value", "search a key inside it")
        parts = key.split(".")
        unset = next((".".join(parts[:i]) for i in range(1, len(parts)) if ".".join(parts[:i]) in keys
                      and keys[".".join(parts[:i])] is None), None)
        if unset:
            raise ConfigError(f"tune.space.{key}: {unset} is not set in the recipe", f"add a {unset}: section first")
        near = difflib.get_close_matches(key, [k for k, v in keys.items() if not isinstance(v, dict)], n=3, cutoff=0.6)
        raise ConfigError(f"tune.space.{key} does not exist in the recipe",
                          f"did you mean {' or '.join(near)}?" if near else "use a dotted key of the recipe, "
                          "e.g. finetune.train.lr")


def suggest(trial, space: dict) -> dict:
    params = {}
    for key, spec in space.items():
        form, arg = next(iter(spec.items()))
        if form == "log_uniform":
            params[key] = trial.suggest_float(key, arg[0], arg[1], log=True)
        elif form == "uniform":
            params[key] = trial.suggest_float(key, arg[0], arg[1])
        elif form == "int":
            params[key] = trial.suggest_int(key, arg[0], arg[1], step=arg[2] if len(arg) > 2 else 1)
        else:
            params[key] = trial.suggest_categorical(key, arg)
    return params


def _overrides(params: dict) -> list[str]:
    return [f"{k}={json.dumps(v)}" for k, v in params.items()]


def params_dir(params: dict) -> str:
    return "trial-" + hashlib.sha1(json.dumps(params, sort_keys=True).encode()).hexdigest()[:10]


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        return next(int(x.split()[1]) / 1024 for x in f if x.startswith("VmRSS:"))


def _worker() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _alive(worker: str) -> bool:
    host, _, pid = worker.rpartition(":")
    if host != socket.gethostname():
        return True  # another machine's trial: not ours to judge
    try:
        os.kill(int(pid), 0)
    except (ProcessLookupError, ValueError):
        return False
    except PermissionError:
        return True
    return True


class Search:
    """One study over one recipe; ``run()`` adds trials until the study has ``trials`` finished ones."""

    def __init__(self, recipe_path: str | Path, cfg: TuneConfig | None = None, overrides: list[str] | None = None,
                 run_dir: str | Path | None = None, trials: int | None = None, storage: str | None = None,
                 progress: bool = True):
        from ..recipe import load_recipe

        self.recipe_path, self.overrides, self.progress = Path(recipe_path), list(overrides or []), progress
        base = load_recipe(recipe_path, self.overrides)
        cfg = cfg or base.tune
        if cfg is None:
            raise ConfigError(f"{recipe_path} has no tune section",
                              "add tune: {space: {finetune.train.lr: {log_uniform: [1.0e-5, 1.0e-3]}}}")
        self.cfg = cfg.model_copy(update={k: v for k, v in {"trials": trials, "storage": storage}.items() if v})
        self.stage = "finetune" if base.finetune is not None else "pretrain"
        if getattr(base, self.stage) is None:
            raise ConfigError(f"{recipe_path} has neither finetune nor pretrain", "tune searches a training stage")
        check_space(self.cfg.space, base.model_dump(mode="json"))
        train = getattr(base, self.stage).train
        self.metric = self.cfg.metric or (train.metric_for_best if self.stage == "finetune" else "val_loss")
        if self.cfg.folds and not self.metric.startswith("val_"):
            raise ConfigError(f"tune.metric {self.metric}: with folds the held-out folds are scored",
                              "name the validation metric, e.g. val_accuracy (scored as accuracy on each fold)")
        self.direction = self.cfg.direction or ("minimize" if any(w in self.metric for w in LOWER_IS_BETTER)
                                                else "maximize")
        self.name = base.name
        self.root = Path(run_dir) if run_dir else Path(base.runs_root) / base.name
        self.dir = self.root / "tune"

    # -- one trial ------------------------------------------------------------------------------

    def trial_recipe(self, params: dict):
        from ..recipe import load_recipe

        recipe = load_recipe(self.recipe_path, [*self.overrides, *_overrides(params)])
        update: dict = {"report": None, "evaluate": None, "generate": None, "tune": None}
        if recipe.finetune is not None:
            update["finetune"] = recipe.finetune.model_copy(update={"compare_random_init": False})
        return recipe.model_copy(update=update)

    def _share_upstream(self, recipe, trial_dir: Path) -> None:
        """Stages before the searched one (data, tokenizer, pretrain) are the same in every trial when
        the space touches only the training stage: run them once in ``tune/base`` and hard-link them
        into each new trial, whose recipe run then finds them fresh (same fingerprints) and reuses them."""
        from ..recipe import ORDER, run_recipe

        upstream = [s for s in ORDER[:ORDER.index(self.stage)] if getattr(recipe, s) is not None]
        if trial_dir.exists() or not upstream or not all(k.startswith(self.stage + ".") for k in self.cfg.space):
            return
        base = self.dir / "base"
        run_recipe(recipe, base, until=upstream[-1], progress=self.progress)
        trial_dir.mkdir(parents=True)
        for stage in (s for s in upstream if (base / s).exists()):
            shutil.copytree(base / stage, trial_dir / stage, copy_function=os.link)
        manifest = json.loads((base / "manifest.json").read_text())
        manifest["stages"] = {s: manifest["stages"][s] for s in upstream}
        atomic_write_json(trial_dir / "manifest.json", manifest)

    def _metric_rows(self, trial_dir: Path) -> list[dict]:
        sub = "finetune/pretrained" if self.stage == "finetune" else "pretrain"
        path = trial_dir / sub / "metrics.jsonl"
        return [json.loads(x) for x in path.read_text().splitlines() if x.strip()] if path.exists() else []

    def objective(self, trial) -> float:
        from ..train import loop

        optuna = _optuna()
        trial.set_user_attr("worker", _worker())
        params = suggest(trial, self.cfg.space)
        trial_dir = self.dir / "trials" / params_dir(params)
        trial.set_user_attr("dir", str(trial_dir))
        console.print(f"[bold magenta]trial {trial.number}[/bold magenta] " +
                      ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items()))
        if self.cfg.folds:
            return self._cv_value(trial, params, trial_dir)

        def report(step: int, metrics: dict) -> None:
            if self.metric in metrics:
                trial.report(float(metrics[self.metric]), step)
                if trial.should_prune():
                    raise optuna.TrialPruned(f"{self.metric}={metrics[self.metric]:.4g} at step {step}")

        from ..recipe import run_recipe

        recipe = self.trial_recipe(params)
        self._share_upstream(recipe, trial_dir)
        loop.EVAL_HOOKS.append(report)
        try:
            run_recipe(recipe, trial_dir, until=self.stage, progress=self.progress)
        finally:
            loop.EVAL_HOOKS.remove(report)
            gc.collect()
            trial.set_user_attr("rss_mb", round(_rss_mb(), 1))
        values = [float(r[self.metric]) for r in self._metric_rows(trial_dir) if self.metric in r]
        if not values:
            seen = sorted({k for r in self._metric_rows(trial_dir) for k in r if k.startswith("val_")})
            raise ConfigError(f"tune.metric {self.metric} was never logged by the {self.stage} stage",
                              f"use one of: {', '.join(seen) or 'none (no evaluation ran)'}")
        trial.set_user_attr("evaluations", len(values))
        return max(values) if self.direction == "maximize" else min(values)

    def _cv_value(self, trial, params: dict, trial_dir: Path) -> float:
        from .cv import cross_validate

        try:
            result = cross_validate(self.recipe_path, self.cfg.folds, run_dir=trial_dir,
                                    overrides=[*self.overrides, *_overrides(params), "finetune.compare_random_init=false"],
                                    progress=self.progress)
        finally:
            gc.collect()
            trial.set_user_attr("rss_mb", round(_rss_mb(), 1))
        name = self.metric.removeprefix("val_")
        summary = result["summary"]["pretrained"]
        if name not in summary:
            raise ConfigError(f"tune.metric {self.metric}: the folds report no '{name}'",
                              f"use one of: {', '.join('val_' + k for k in summary if k != 'n')}")
        trial.set_user_attr("cv_std", summary[name]["std"])
        return summary[name]["mean"]

    # -- the study ------------------------------------------------------------------------------

    def study(self):
        optuna = _optuna()
        self.dir.mkdir(parents=True, exist_ok=True)
        storage = self.cfg.storage or f"sqlite:///{(self.dir / 'study.db').resolve()}"
        sampler = (optuna.samplers.TPESampler(seed=self.cfg.seed, n_startup_trials=self.cfg.startup_trials)
                   if self.cfg.sampler == "tpe" else optuna.samplers.RandomSampler(seed=self.cfg.seed))
        pruner = {"median": lambda: optuna.pruners.MedianPruner(n_startup_trials=self.cfg.startup_trials),
                  "hyperband": lambda: optuna.pruners.HyperbandPruner(),
                  "none": lambda: optuna.pruners.NopPruner()}[self.cfg.pruner]()
        if self.cfg.storage is None:
            storage = optuna.storages.RDBStorage(storage, engine_kwargs={"connect_args": {"timeout": 60}})
        study = optuna.create_study(study_name=self.name, storage=storage, sampler=sampler, pruner=pruner,
                                    direction=self.direction, load_if_exists=True)
        if study.direction.name.lower() != self.direction:
            raise ConfigError(f"the stored study '{self.name}' is {study.direction.name.lower()}d, not {self.direction}d",
                              f"delete {self.dir} or use another --run-dir")
        return study

    def _requeue_interrupted(self, study) -> int:
        """Trials left RUNNING by a dead process on this machine: failed, and their values queued again."""
        from optuna.trial import TrialState

        n = 0
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            worker = t.user_attrs.get("worker")
            if worker and not _alive(worker):
                study._storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
                params = t.params or t.system_attrs.get("fixed_params", {})  # killed before its first suggest
                study.enqueue_trial(params, user_attrs={"resumed_from": t.number})
                n += 1
        return n

    def run(self) -> dict:
        optuna = _optuna()
        from optuna.trial import TrialState

        study = self.study()
        if (n := self._requeue_interrupted(study)):
            console.print(f"[yellow]{n} interrupted trial(s) queued again: they resume from their checkpoints[/yellow]")
        finished = (TrialState.COMPLETE, TrialState.PRUNED)
        done = len(study.get_trials(deepcopy=False, states=finished))
        if done < self.cfg.trials:
            study.optimize(self.objective, n_trials=self.cfg.trials - done, catch=(FloatingPointError,),
                           callbacks=[optuna.study.MaxTrialsCallback(self.cfg.trials, states=finished)])
        return self.write_results(study)

    def write_results(self, study) -> dict:
        from optuna.trial import TrialState

        rows = [{"number": t.number, "state": t.state.name.lower(), "value": t.value, "params": t.params,
                 "last_step": max(t.intermediate_values) if t.intermediate_values else None,
                 "last_reported": t.intermediate_values[max(t.intermediate_values)] if t.intermediate_values else None,
                 "seconds": round(t.duration.total_seconds(), 1) if t.duration else None,
                 **{k: v for k, v in t.user_attrs.items() if k in ("dir", "rss_mb", "cv_std", "resumed_from")}}
                for t in study.get_trials(deepcopy=False)]
        complete = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
        result = {"recipe": str(self.recipe_path), "overrides": self.overrides, "study": self.name,
                  "metric": self.metric, "direction": self.direction, "sampler": self.cfg.sampler,
                  "pruner": self.cfg.pruner, "folds": self.cfg.folds, "space": self.cfg.space, "trials": rows,
                  "counts": {s: sum(r["state"] == s for r in rows) for s in ("complete", "pruned", "fail", "running")}}
        if complete:
            best = study.best_trial
            result.update(best={"number": best.number, "value": best.value, "params": best.params},
                          importance=_importance(study))
            atomic_write_text(self.dir / "best.yaml", self.best_recipe(best.params, best.value))
        atomic_write_json(self.dir / "results.json", result)
        plot_history(result, self.dir / "history.png")
        if result.get("importance"):
            plot_importance(result["importance"], self.dir / "importance.png")
        return result

    def best_recipe(self, params: dict, value: float) -> str:
        """The recipe file as written, with the best values in place and without its tune section."""
        import yaml

        from ..config import apply_overrides, load_yaml

        data = apply_overrides(load_yaml(self.recipe_path), [*self.overrides, *_overrides(params)])
        data = copy.deepcopy(data)
        data.pop("tune", None)
        data["name"] = f"{data.get('name', self.name)}-best"
        head = (f"# lmforge tune {self.recipe_path}: best of the study '{self.name}' "
                f"({self.metric} = {value:.6g}); values: " + ", ".join(f"{k}={v}" for k, v in params.items()) + "\n")
        return head + yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def _importance(study) -> dict:
    """fANOVA importances (Optuna's default); empty when the study cannot support them yet."""
    import optuna

    try:
        return {k: round(float(v), 4) for k, v in optuna.importance.get_param_importances(study).items()}
    except (RuntimeError, ValueError, ZeroDivisionError):  # too few complete trials, or one constant value
        return {}


def plot_history(result: dict, path: Path) -> Path:
    from ..eval.report import _save, plt

    done = [r for r in result["trials"] if r["value"] is not None]
    fig, ax = plt.subplots(figsize=(5.5, 3.2))
    pruned = [r for r in result["trials"] if r["state"] == "pruned"]
    ax.plot([r["number"] for r in done], [r["value"] for r in done], "o", label="complete")
    if pruned:
        ax.plot([r["number"] for r in pruned], [r["last_reported"] for r in pruned], "x", color="grey",
                label="pruned (last reported)")
    best, line = None, []
    for r in sorted(done, key=lambda r: r["number"]):
        v = r["value"]
        best = v if best is None else (max(best, v) if result["direction"] == "maximize" else min(best, v))
        line.append((r["number"], best))
    if line:
        ax.step([x for x, _ in line], [y for _, y in line], where="post", label="best so far")
    ax.set_xlabel("trial")
    ax.set_ylabel(result["metric"])
    ax.set_title("optimisation history")
    ax.legend(fontsize=7)
    return _save(fig, path)


def plot_importance(importance: dict, path: Path) -> Path:
    from ..eval.report import _save, plt

    keys = list(importance)[::-1]
    fig, ax = plt.subplots(figsize=(5.5, 0.5 + 0.4 * len(keys)))
    ax.barh(keys, [importance[k] for k in keys])
    ax.set_xlabel("importance (fANOVA)")
    ax.set_title("hyperparameter importance")
    return _save(fig, path)
