"""Recipes: YAML validated by pydantic, with dotted ``key=value`` overrides.

Every stage owns its schema (``lmforge.<stage>.config``); this module composes them into a
``Recipe`` and turns pydantic's errors into one-line messages that name the key and suggest a fix.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from .errors import ConfigError


class StrictModel(BaseModel):
    """Base for every config: unknown keys are errors, assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())


def parse_value(text: str) -> Any:
    """Parse an override value with YAML rules, so ``50``, ``3e-4``, ``true``, ``[a,b]`` work."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    # YAML 1.1 reads "3e-4" as a string; users mean a number.
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Apply ``a.b.c=value`` overrides to a nested dict (copy-on-write)."""
    import copy

    data = copy.deepcopy(data)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(
                f"override '{item}' is not of the form key=value",
                "write e.g. pretrain.max_steps=50",
            )
        key, raw = item.split("=", 1)
        parts = [p for p in key.strip().split(".") if p]
        if not parts:
            raise ConfigError(f"override '{item}' has an empty key", "write e.g. pretrain.max_steps=50")
        node = data
        for part in parts[:-1]:
            if node.get(part) is None:
                node[part] = {}
            if not isinstance(node[part], dict):
                raise ConfigError(
                    f"override '{item}': '{part}' is a value, not a section",
                    f"override '{key.rsplit('.', 1)[0]}' directly",
                )
            node = node[part]
        node[parts[-1]] = parse_value(raw)
    return data


def _fields_at(model: type[BaseModel], loc: tuple) -> list[str]:
    """Field names valid at ``loc`` (the parent of an unknown key), for suggestions."""
    import typing

    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return []
        field = current.model_fields.get(part)
        if field is None:
            return []
        current = field.annotation
        # unwrap Optional[...] / list[...] / X | None
        for _ in range(3):
            args = [a for a in typing.get_args(current) if a is not type(None)]
            if isinstance(current, type) and issubclass(current, BaseModel):
                break
            if not args:
                break
            current = next((a for a in args if isinstance(a, type) and issubclass(a, BaseModel)), args[0])
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


def format_validation_error(err: ValidationError, model: type[BaseModel], source: str) -> ConfigError:
    """The first problem of a ValidationError as one actionable message."""
    first = err.errors()[0]
    loc = tuple(first["loc"])
    key = ".".join(str(p) for p in loc)
    if first["type"] == "extra_forbidden":
        options = _fields_at(model, loc[:-1])
        close = difflib.get_close_matches(str(loc[-1]), options, n=1, cutoff=0.5)
        hint = f"did you mean '{'.'.join([*map(str, loc[:-1]), close[0]])}'?" if close else (
            f"valid keys here: {', '.join(options)}" if options else "remove it")
        return ConfigError(f"{source}: unknown config key '{key}'", hint)
    value = first.get("input")
    shown = repr(value) if not isinstance(value, dict) else "a section"
    return ConfigError(f"{source}: bad value for '{key}': {first['msg']} (got {shown})",
                       "fix the value in the recipe or override it with key=value")


def validate(model: type[BaseModel], data: dict, source: str):
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise format_validation_error(err, model, source) from None


def load_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"recipe not found: {path}", "pass the path of a YAML recipe, e.g. recipes/quickstart.yaml")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f":{mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}{where}: invalid YAML: {getattr(err, 'problem', err)}",
                          "fix the YAML syntax at that line") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a recipe must be a mapping of sections", "see recipes/quickstart.yaml")
    return data


def load_config(model: type[BaseModel], path: str | Path | None, overrides: list[str] | None = None,
                base: dict | None = None):
    """Load ``path`` (or ``base``), apply overrides, validate against ``model``."""
    data = load_yaml(path) if path else dict(base or {})
    data = apply_overrides(data, overrides or [])
    return validate(model, data, str(path) if path else "config")


def dump_config(cfg: BaseModel) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False, allow_unicode=True)
