"""The ``tune:`` section of a recipe: what to search, how, and what to optimise."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from ..config import StrictModel

FORMS = {"log_uniform": "two positive numbers [low, high]", "uniform": "two numbers [low, high]",
         "int": "two integers [low, high] (optionally a third: the step)", "choice": "a list of values"}


class TuneConfig(StrictModel):
    space: dict[str, dict[str, Any]] = Field(
        ..., description="dotted recipe key -> {log_uniform: [lo, hi]} | {uniform: [lo, hi]} | {int: [lo, hi]} | "
                         "{choice: [a, b, ...]}, e.g. finetune.train.lr: {log_uniform: [1e-5, 1e-3]}")
    metric: str | None = Field(None, description="a validation metric the trainer logs (val_accuracy, val_loss, ...); "
                                                 "default: finetune.train.metric_for_best")
    direction: Literal["maximize", "minimize"] | None = Field(None, description="default: minimize losses and "
                                                                                "perplexities, maximize the rest")
    trials: int = Field(20, ge=1, description="finished trials (complete or pruned) the study should have")
    sampler: Literal["tpe", "random"] = "tpe"
    pruner: Literal["median", "hyperband", "none"] = Field("median", description="stops trials whose validation "
                                                           "metric lags, from the trainer's evaluation steps")
    startup_trials: int = Field(5, ge=0, description="trials before TPE and the median pruner act")
    seed: int = 0
    storage: str | None = Field(None, description="an Optuna RDB URL (postgresql://..., mysql://...) to share "
                                                  "the study between machines; default: SQLite in the run")
    folds: int | None = Field(None, ge=2, description="score each trial by k-fold cross-validation of the training "
                                                       "file (the held-out folds' mean; no pruning)")

    @field_validator("space")
    @classmethod
    def _forms(cls, space: dict) -> dict:
        for key, spec in space.items():
            if len(spec) != 1 or next(iter(spec)) not in FORMS:
                raise ValueError(f"tune.space.{key}: give one of " + "; ".join(f"{k}: {v}" for k, v in FORMS.items()))
            form, arg = next(iter(spec.items()))
            if form == "choice":
                if not isinstance(arg, list) or not arg:
                    raise ValueError(f"tune.space.{key}.choice: {FORMS['choice']}")
                continue
            if not isinstance(arg, list) or len(arg) not in (2, 3 if form == "int" else 2) or not all(
                    isinstance(x, (int, float)) and not isinstance(x, bool) for x in arg) or arg[0] >= arg[1]:
                raise ValueError(f"tune.space.{key}.{form}: {FORMS[form]}, low < high (got {arg})")
            if form == "log_uniform" and arg[0] <= 0:
                raise ValueError(f"tune.space.{key}.log_uniform: {FORMS[form]} (got {arg})")
            if form == "int" and not all(isinstance(x, int) for x in arg):
                raise ValueError(f"tune.space.{key}.int: {FORMS['int']} (got {arg})")
        return space
