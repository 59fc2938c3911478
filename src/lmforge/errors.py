"""User-facing errors.

Anything a user can fix (a bad key, a missing file, a malformed line) is raised as an
``LmforgeError``: the CLI prints its one-line message plus the hint and exits non-zero, without a
traceback unless ``--debug``. Bugs stay ordinary exceptions so they are never hidden.
"""

from __future__ import annotations


class LmforgeError(Exception):
    """An error the user can fix; ``hint`` says how."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class ConfigError(LmforgeError):
    """A recipe or override is invalid."""


class InputError(LmforgeError):
    """An input file is missing, unreadable or in the wrong format."""


def require_file(path, what: str = "file"):
    """Return ``path`` as a Path, or raise an InputError naming it."""
    from pathlib import Path

    p = Path(path)
    if not p.exists():
        raise InputError(f"{what} not found: {p}", "check the path, or create the file first")
    return p
