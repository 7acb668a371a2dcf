"""`container-lock update`'s result: a table of old → new pins, or JSON."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..console import err, escape, out
from ..update import UpdatePlan
from .tables import digest, styled, table

STATUS_STYLE = {"error": "red", "added": "green", "updated": "yellow", "platforms": "yellow"}


def as_json(plan: UpdatePlan, lockfile: Path, written: bool) -> dict[str, Any]:
    """The stable JSON form (keys documented in docs/cli.md)."""
    return {
        "lockfile": str(lockfile),
        "written": written,
        "changes": [
            {
                "reference": c.key,
                "status": c.status,
                "old": c.old and c.old.digest,
                "new": c.new and c.new.digest,
                "error": c.error,
            }
            for c in plan.changes
        ],
        "unresolved": [{"where": f.where, "url": f.text, "problem": f.problem} for f in plan.unresolved],
    }


def show(plan: UpdatePlan, lockfile: Path, written: bool, check: bool) -> None:
    """A table of every reference, then what was skipped or failed, then the verdict."""
    grid = table("reference", "lock", "registry", "status", title=escape(str(lockfile)))
    for c in plan.changes:
        grid.add_row(
            escape(c.key),
            digest(c.old and c.old.digest),
            digest(c.new and c.new.digest),
            styled(c.status, STATUS_STYLE.get(c.status, "")),
        )
    out().print(grid)
    _skipped_and_failed(plan)
    out().print(escape(verdict(plan, lockfile, written, check)))


def problems(plan: UpdatePlan, lockfile: Path, written: bool, check: bool) -> None:
    """With --json: what was skipped or failed, then the verdict, on standard error (nothing when
    every reference resolved); the document says it too."""
    _skipped_and_failed(plan)
    if plan.errors or plan.unresolved:
        err().print(escape(verdict(plan, lockfile, written, check)))


def _skipped_and_failed(plan: UpdatePlan) -> None:
    for f in plan.unresolved:
        err().print(f"[yellow]skipped[/] {escape(f'{f.where}: {f.text}: {f.problem}')}")
    for c in plan.errors:
        err().print(f"[red]failed[/] {escape(str(c.error))}")


def verdict(plan: UpdatePlan, lockfile: Path, written: bool, check: bool) -> str:
    """One line: what the lock is (or was made) and why."""
    failed = len(plan.errors)
    if not plan.changes and not lockfile.exists():  # `update` and `update --check` agree: no lock needed
        return f"{lockfile}: not needed: no reference without a digest to lock (nothing written)"
    if check:
        if failed:
            return (
                f"{lockfile}: could not be checked: {failed} of {len(plan.changes)} references "
                f"failed ({len(plan.pending)} to change among the rest)"
            )
        if not lockfile.exists():
            return f"{lockfile}: missing ({len(plan.pending)} to add)"
        return (
            f"{lockfile}: {'out of date' if plan.pending else 'up to date'} ({len(plan.pending)} to change)"
        )
    if written:
        return f"{lockfile}: written" + (
            f" ({failed} failed references keep their old entry)" if failed else ""
        )
    if failed and not plan.resolved:
        return f"{lockfile}: not written: no reference could be resolved"
    return f"{lockfile}: unchanged"
