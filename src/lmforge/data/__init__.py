"""Text data pipeline: readers, steps, dedup, splits, executors (see docs/data.md)."""

from .config import DataStageConfig
from .document import Document, ReadError

__all__ = ["Document", "ReadError", "DataStageConfig"]
