"""Every task's config in one discriminated union (``finetune.task.kind``); importing this module
registers every task. A task is one module in tasks/ that defines its Task subclass (``@register``)
and ``CONFIG``, its pydantic config with a ``kind`` literal (or a tuple of them); adding one is a line in ``MODULES``."""

from __future__ import annotations

import importlib
import importlib.util
from functools import lru_cache
from typing import Annotated, Union

from pydantic import Field, TypeAdapter

MODULES = ("classification", "ner", "seq2seq", "qa", "chat")


def _configs() -> tuple:
    out = []
    for m in MODULES:
        if importlib.util.find_spec(f"{__package__}.{m}") is not None:
            c = importlib.import_module(f"{__package__}.{m}").CONFIG  # a config class, or a tuple of them
            out.extend(c if isinstance(c, tuple) else (c,))
    return tuple(out)


CONFIGS = _configs()

TaskConfig = Annotated[Union[CONFIGS], Field(discriminator="kind")]  # type: ignore[valid-type]


@lru_cache(maxsize=1)
def task_config_adapter() -> TypeAdapter:
    return TypeAdapter(TaskConfig)
