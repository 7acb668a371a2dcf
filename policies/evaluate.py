"""Evaluate a policy over the scanned recipes and the lockfile: findings with file:line."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from containerlock.lock.lockfile import Lock
from containerlock.lock.policy import Policy
from containerlock.lock.provenance import judge_lock_entry
from containerlock.oci.reference import ImageReference


class Reference(Protocol):
    """A docker:// URL found in a recipe (the scanner's `Found`): what the policy judges."""

    @property
    def where(self) -> str: ...  # file:line

    text: str
    url: str | None
    ref: ImageReference | None  # None: the URL could not be resolved or parsed
    problem: str | None


@dataclass(frozen=True)
class Finding:
    """One policy finding."""

    rule: str
    severity: str
    where: str
    message: str

    def to_json(self) -> dict[str, str]:
        return {"rule": self.rule, "severity": self.severity, "where": self.where, "message": self.message}


def evaluate(found: Sequence[Reference], lock: Lock, lock_path: Path | None, policy: Policy) -> list[Finding]:
    """Findings for every reference (and unused lock entry), most severe first, then by place."""
    findings: list[Finding] = []

    def add(rule: str, where: str, message: str) -> None:
        severity = policy.severity(rule)
        if severity != "ignore":
            findings.append(Finding(rule, severity, where, message))

    used: set[str] = set()
    for f in found:
        if f.ref is None:
            add("invalid-url" if f.url else "unresolved", f.where, f"{f.text}: {f.problem}")
            continue
        ref, key = f.ref, f.ref.tagged
        used.add(key)
        entry = lock.get(key)
        if not ref.tag_given:
            add("no-tag", f.where, f"{f.text}: no tag (it defaults to 'latest'); add ;tag=…")
        if ref.digest is None and entry is None:
            add(
                "unpinned",
                f.where,
                f"{key}: no digest in the recipe nor in the lockfile; run `container-lock update`",
            )
        if ref.digest and entry and entry.digest != ref.digest:
            add(
                "lock-mismatch",
                f.where,
                f"{key}: the recipe pins {ref.digest}, the lockfile has {entry.digest} (the recipe wins)",
            )
        for rule, reason in policy.image_denials(ref.registry, ref.name, ref.tag):
            add(rule, f.where, f"{key}: {reason}")
        requirement = policy.provenance_for(ref.name)
        if requirement is not None and requirement.required:
            pin = ref.digest or (entry.digest if entry else None)
            if pin is None:
                add("provenance", f.where, f"{key}: not pinned, so no attestation can name it")
            else:
                problem = judge_lock_entry(requirement, entry, pin)
                if problem is not None:
                    add("provenance", f.where, f"{key}: provenance: {problem[0]}: {problem[1]}")
    if found and lock_path is not None:
        for key in sorted(set(lock.entries) - used):
            add("unused-lock-entry", str(lock_path), f"{key}: no scanned recipe uses this lock entry")
    order = {"error": 0, "warning": 1}
    return sorted(findings, key=lambda x: (order[x.severity], x.where, x.rule, x.message))
