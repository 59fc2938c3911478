"""Every task's config in one discriminated union (``finetune.task.kind``); importing this module
registers every task. A task is one module in tasks/ that defines its Task subclass (``@register``)
and ``CONFIG``, its pydantic config with a ``kind`` literal; adding one is a line in ``MODULES``."""

from __future__ import annotations

import importlib
import importlib.util
from functools import lru_cache
from typing import Annotated, Union

from pydantic import Field, TypeAdapter

MODULES = ("classification", "ner", "seq2seq", "qa", "chat")

CONFIGS = tuple(importlib.import_module(f"{__package__}.{m}").CONFIG for m in MODULES
                if importlib.util.find_spec(f"{__package__}.{m}") is not None)

TaskConfig = Annotated[Union[CONFIGS], Field(discriminator="kind")]  # type: ignore[valid-type]


@lru_cache(maxsize=1)
def task_config_adapter() -> TypeAdapter:
    return TypeAdapter(TaskConfig)
