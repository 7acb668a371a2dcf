"""`container-lock vulndb`'s output: the snapshot an index holds, the records skipped."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from vulns.db import Problem, Snapshot

from ..console import err, escape, out
from .tables import table


def age(snapshot: Snapshot) -> str:
    """'12.3 days old' (from its newest record's `modified` to now), or 'empty'."""
    days = snapshot.age_days()
    return "empty" if days is None else f"{days:.1f} days old"


def problems(found: Sequence[Problem]) -> None:
    """Each skipped record on standard error."""
    for problem in found:
        err().print(f"[yellow]warning:[/] {escape(str(problem))}")


def snapshot(path: Path, snap: Snapshot) -> None:
    """The sources table and a summary line."""
    grid = table("source", "sha256", "records", "newest modified", title=escape(f"{path}: {snap.id}"))
    for source in snap.sources:
        grid.add_row(escape(source.name), source.sha256, str(source.records), source.newest or "-")
    out().print(grid)
    out().print(
        f"{snap.records} records ({snap.withdrawn} withdrawn, {snap.skipped} skipped), "
        f"newest modified {snap.newest or '-'} ({age(snap)})"
    )
