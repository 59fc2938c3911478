"""Rich progress bars for every long loop (documents, training steps, evaluation batches)."""

from __future__ import annotations

import contextlib

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


class _Null:
    def add_task(self, *a, **k):
        return 0

    def update(self, *a, **k):
        pass

    def advance(self, *a, **k):
        pass


@contextlib.contextmanager
def progress_bar(enabled: bool = True):
    """A progress bar with an ``info`` field; silent when disabled (tests, non-main ranks)."""
    if not enabled:
        yield _Null()
        return
    bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[info]}"),
                   transient=False, refresh_per_second=4)
    with bar:
        yield bar
