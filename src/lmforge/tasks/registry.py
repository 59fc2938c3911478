"""Every task's config in one discriminated union (``finetune.task.kind``); importing this module
registers every task. Adding a task: its module in tasks/, then one line in each list below."""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated, Union

from pydantic import Field, TypeAdapter

from .classification import ClassificationConfig

CONFIGS = (ClassificationConfig,)

TaskConfig = Annotated[Union[CONFIGS], Field(discriminator="kind")]  # type: ignore[valid-type]


@lru_cache(maxsize=1)
def task_config_adapter() -> TypeAdapter:
    return TypeAdapter(TaskConfig)
