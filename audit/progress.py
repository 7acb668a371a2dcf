"""Progress of long work, on a terminal only: silent when piped or with --json; with `NO_COLOR`,
plain lines without cursor control."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from .console import err, interactive, no_color

Advance = Callable[[int, int], None]  # (done, total)


def _ignore(_done: int, _total: int) -> None:
    """Progress nobody sees."""


@contextmanager
def progress(description: str, quiet: bool = False) -> Iterator[Advance]:
    """A callback `(done, total)` that drives a rich progress bar on standard error.

    No bar (and no rich import) when standard error is not a terminal or `quiet` is set; with
    `NO_COLOR`, a line when the work starts and one when it is done (no escape sequence).
    """
    if quiet or not interactive():
        yield _ignore
        return
    if no_color():
        with _plain(description) as advance:
            yield advance
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


@contextmanager
def _plain(description: str) -> Iterator[Advance]:
    """`description …` when the work starts, `description: done of total in S s` when it ends;
    nothing in between (a line per step would flood a terminal that cannot overwrite it)."""
    state = [0, 0]
    started = time.monotonic()

    def advance(done: int, total: int) -> None:
        state[:] = [done, total]

    sys.stderr.write(f"{description} …\n")
    sys.stderr.flush()
    yield advance
    done, total = state
    count = f"{done} of {total} " if total else ""
    sys.stderr.write(f"{description}: {count}done in {time.monotonic() - started:.1f} s\n")
    sys.stderr.flush()
