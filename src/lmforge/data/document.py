"""The Document every step reads and writes: ``{"id", "text", "meta"}`` (ARCHITECTURE.md)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Document:
    id: str
    text: str
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "text": self.text, "meta": self.meta}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Document":
        return cls(id=str(d["id"]), text=d["text"], meta=dict(d.get("meta") or {}))


@dataclass
class ReadError:
    """An input record that could not be read; it goes to ``errors.jsonl``, never vanishes."""

    path: str
    line: int | None
    error: str

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "line": self.line, "error": self.error}
