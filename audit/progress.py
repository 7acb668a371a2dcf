"""Progress of long work, on a terminal only: silent when piped, with --json, or for short work."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from .console import err, interactive

Advance = Callable[[int, int], None]  # (done, total)


def _ignore(_done: int, _total: int) -> None:
    """Progress nobody sees."""


@contextmanager
def progress(description: str, quiet: bool = False) -> Iterator[Advance]:
    """A callback `(done, total)` that drives a rich progress bar on standard error.

    No bar (and no rich import) when standard error is not a terminal or `quiet` is set.
    """
    if quiet or not interactive():
        yield _ignore
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err(),
        transient=True,
    ) as bar:
        task = bar.add_task(description, total=None)

        def advance(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield advance
