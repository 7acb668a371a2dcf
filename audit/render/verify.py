"""`container-lock verify`'s verdicts: a table (status, signed digests, why), or JSON."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from containerlock.lock.policy import Policy

from ..console import escape, out
from ..verify import ACCEPTED, ImageVerdict
from .tables import digest, styled, table

Verdicts = Sequence[tuple[ImageVerdict, list[str]]]


def as_json(verdicts: Verdicts, policy: Policy, recorded: bool) -> dict[str, Any]:
    """The stable JSON form (keys documented in docs/cli.md)."""
    return {
        "policy": policy.name,
        "recorded": recorded,
        "images": [
            {
                "reference": v.key,
                "digest": v.digest or None,
                "status": v.status(p),
                "required": list(v.required),
                "signed_digests": v.signed_digests,
                "error": v.error,
                "detail": detail(v, p),
                "evidence": [e.__dict__ for e in v.evidence],
            }
            for v, p in verdicts
        ],
    }


def detail(verdict: ImageVerdict, platforms: list[str]) -> str:
    """Why the status is what it is, in words."""
    if verdict.error:
        return verdict.error
    if verdict.evidence:
        return "; ".join(sorted({f"{e.kind} for {e.digest}: {e.detail}" for e in verdict.evidence}))
    if not verdict.required:
        return "no [[signers]] entry of the policy applies to this image"
    if not verdict.pinned:
        return "not pinned (no digest in the recipe nor the lockfile): run `container-lock update` first"
    return "no signature found for " + ", ".join([verdict.digest, *platforms])


def show(verdicts: Verdicts, policy: Policy, relaxed: bool) -> None:
    """A row per reference; rejected statuses in red (yellow when the policy relaxes them)."""
    grid = table(
        "reference", "pinned", "status", "signed digest(s)", "detail", title=f"policy '{policy.name}'"
    )
    for v, p in verdicts:
        status = v.status(p)
        style = "green" if status == "verified" else "" if status in ACCEPTED else "red"
        if style == "red" and relaxed and status != "error":
            style = "yellow"
        grid.add_row(
            escape(v.key),
            digest(v.digest or None),
            styled(status, style),
            "\n".join(v.signed_digests) or "-",
            escape(detail(v, p)),
        )
    out().print(grid)
