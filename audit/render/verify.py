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
                "provenance": None
                if v.provenance is None
                else {
                    "status": v.provenance_status(p),
                    "required": v.provenance.required,
                    "detail": provenance_detail(v, p),
                    "attestations": [a.to_json() for a in v.provenance.attestations],
                },
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


def provenance_detail(verdict: ImageVerdict, platforms: list[str]) -> str:
    """What the attestations say, or why there is none."""
    if verdict.provenance is None:
        return ""
    if verdict.provenance.attestations:
        found = {
            f"{a.kind} {a.source[:19]}… for {a.digest}: {a.detail}" for a in verdict.provenance.attestations
        }
        return "; ".join(sorted(found))
    if not verdict.pinned:
        return "not pinned: no attestation can name it"
    return "no attestation found for " + ", ".join([verdict.digest, *platforms])


def _style(status: str, relaxed: bool) -> str:
    style = "green" if status == "verified" else "" if status in ACCEPTED else "red"
    return "yellow" if style == "red" and relaxed and status != "error" else style


def show(verdicts: Verdicts, policy: Policy, relaxed: bool, provenance_relaxed: bool = False) -> None:
    """A row per reference; rejected statuses in red (yellow when the policy relaxes them); a
    provenance column when provenance was checked."""
    with_provenance = any(v.provenance is not None for v, _ in verdicts)
    columns = ["reference", "pinned", "status", "signed digest(s)", "detail"]
    columns += ["provenance", "provenance detail"] if with_provenance else []
    grid = table(*columns, title=f"policy '{policy.name}'")
    for v, p in verdicts:
        status = v.status(p)
        row = [
            escape(v.key),
            digest(v.digest or None),
            styled(status, _style(status, relaxed)),
            "\n".join(v.signed_digests) or "-",
            escape(detail(v, p)),
        ]
        if with_provenance:
            checked = v.provenance_status(p)
            row += (
                [styled(checked, _style(checked, provenance_relaxed)), escape(provenance_detail(v, p))]
                if checked
                else ["-", ""]
            )
        grid.add_row(*row)
    out().print(grid)
