"""Rich progress bars on stderr (stdout stays free for `--json`)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Protocol

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class Bar(Protocol):
    def advance(self, n: int = 1, **fields: object) -> None: ...


class _RichBar:
    def __init__(self, progress: Progress, task: int) -> None:
        self._progress, self._task = progress, task

    def advance(self, n: int = 1, **fields: object) -> None:
        self._progress.update(self._task, advance=n, **fields)


class _NullBar:
    def advance(self, n: int = 1, **fields: object) -> None:
        pass


@contextlib.contextmanager
def progress_bar(description: str, total: int, enabled: bool = True) -> Iterator[Bar]:
    """A transient bar with a free-text `info` field (e.g. the running loss)."""
    if not enabled:
        yield _NullBar()
        return
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
        console=Console(stderr=True),
        transient=True,
    )
    with progress:
        yield _RichBar(progress, progress.add_task(description, total=total, info=""))
