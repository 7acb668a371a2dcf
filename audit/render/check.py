"""`container-lock check`'s findings: a line each (file:line first), or JSON."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from containerlock.lock.policy import Policy
from policies.evaluate import Finding

from ..console import escape, out


def as_json(findings: Sequence[Finding], policy: Policy, references: int, lock: str | None) -> dict[str, Any]:
    """The stable JSON form (keys documented in docs/cli.md)."""
    return {
        "policy": policy.name,
        "references": references,
        "lockfile": lock,
        "findings": [f.to_json() for f in findings],
    }


def show(findings: Sequence[Finding], policy: Policy, references: int) -> None:
    """Each finding as `where: severity [rule] message`, then a summary line."""
    errors = sum(1 for f in findings if f.severity == "error")
    for f in findings:
        colour = "red" if f.severity == "error" else "yellow"
        out().print(f"{escape(f.where)}: [{colour}]{f.severity}[/] {escape(f'[{f.rule}] {f.message}')}")
    out().print(
        f"{references} references, {errors} errors, {len(findings) - errors} warnings "
        f"(policy '{escape(policy.name)}')"
    )
