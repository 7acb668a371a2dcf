"""`container-lock verify`: which pinned images carry signatures the policy requires."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from containerlock.fetch.skopeo import RegistryError
from containerlock.lock import lockfile
from containerlock.lock.lockfile import Lock, LockEntry
from containerlock.lock.policy import Policy

from .provenance import ProvenanceVerdict
from .provenance import find_and_verify as find_attestations
from .scan import Found
from .signatures import FAILURES, Evidence, find_and_verify


@dataclass
class ImageVerdict:
    """What was found for one pinned reference."""

    key: str
    digest: str
    required: tuple[str, ...]
    evidence: list[Evidence] = field(default_factory=list)
    error: str | None = None

    @property
    def signed_digests(self) -> list[str]:
        return sorted({e.digest for e in self.evidence if e.verified})

    pinned: bool = True
    provenance: ProvenanceVerdict | None = None  # checked when the policy requires it, or --provenance

    def provenance_status(self, platforms: Sequence[str]) -> str | None:
        """The provenance status (None when provenance was not checked)."""
        if self.provenance is None:
            return None
        if self.provenance.required and not self.pinned:
            return "not pinned"
        return self.provenance.status(self.digest, list(platforms))

    def status(self, platforms: Sequence[str]) -> str:
        """verified, not required, error, not pinned, unsigned, or why the signatures were rejected."""
        if self.error:
            return "error"
        if not self.required:
            return "not required"
        if not self.pinned:
            return "not pinned"
        signed = set(self.signed_digests)
        if self.digest in signed or (platforms and set(platforms) <= signed):
            return "verified"
        failures = {e.failure for e in self.evidence if e.failure}
        return next((f for f in FAILURES if f in failures), "unsigned")


ACCEPTED = ("verified", "not required")


def targets(found: Sequence[Found], lock: Lock) -> dict[str, tuple[str | None, LockEntry | None]]:
    """Each reference with its pin (recipe digest, else the lock's; None if unpinned).

    Without recipes, every lock entry.
    """
    pins: dict[str, tuple[str | None, LockEntry | None]] = {}
    if not found:
        return {key: (entry.digest, entry) for key, entry in lock.entries.items()}
    for f in found:
        if f.ref is None:
            continue
        entry = lock.get(f.ref.tagged)
        digest = f.ref.digest or (entry.digest if entry else None)
        if digest or f.ref.tagged not in pins:
            pins[f.ref.tagged] = (digest, entry if entry and entry.digest == digest else None)
    return dict(sorted(pins.items()))


def verify(
    found: Sequence[Found],
    lock: Lock,
    policy: Policy,
    policy_dir: Path,
    trusted_root: Path | None,
    offline: bool,
    timeout: float = 60.0,
    provenance: bool = False,
) -> list[tuple[ImageVerdict, list[str]]]:
    """A verdict per pinned reference, with the platform digests that were considered.

    Provenance is checked where the policy has a [[provenance]] rule for the image, and for
    every image with `provenance`.
    """
    verdicts = []
    for key, (digest, entry) in targets(found, lock).items():
        name = lockfile.key_reference(key).name
        signers = policy.signers_for(name)
        rule = policy.provenance_for(name)
        platforms = sorted(set((entry.platforms if entry else {}).values()) - {digest})
        verdict = ImageVerdict(key, digest or "", tuple(s.describe() for s in signers), pinned=bool(digest))
        if rule is not None or provenance:
            verdict.provenance = ProvenanceVerdict(rule)
        try:
            if signers and digest:
                verdict.evidence = find_and_verify(
                    name, [digest, *platforms], signers, trusted_root, offline, policy_dir, timeout
                )
            if verdict.provenance is not None and digest:
                verdict.provenance.attestations = find_attestations(
                    name, [digest, *platforms], signers, rule, trusted_root, offline, policy_dir, timeout
                )
        except RegistryError as err:
            verdict.error = f"{key}: {err}"
        verdicts.append((verdict, platforms))
    return verdicts


def failed(
    verdicts: Sequence[tuple[ImageVerdict, list[str]]], policy: Policy
) -> list[tuple[ImageVerdict, list[str]]]:
    """Images whose required signature is not verified: fail closed unless the policy relaxes it.

    Only an explicit `unsigned = "warning"` (or "ignore") in the policy lets them pass.
    """
    signatures = policy.severity("unsigned") == "error"
    provenance = policy.severity("provenance") == "error"
    return [
        (v, platforms)
        for v, platforms in verdicts
        if not v.error
        and (
            (signatures and v.status(platforms) not in ACCEPTED)
            or (provenance and v.provenance_status(platforms) not in (None, *ACCEPTED))
        )
    ]


def record(path: Path, verdicts: Sequence[tuple[ImageVerdict, list[str]]]) -> bool:
    """Write which signer signed which digest, and the provenance accepted, into the lock entries
    (`verify --record`)."""

    def change(current: Lock) -> None:
        for verdict, platforms in verdicts:
            before = current.get(verdict.key)
            entry = before or LockEntry(verdict.digest)  # a recipe pin gets an entry
            if entry.digest != verdict.digest:
                continue
            if verdict.status(platforms) == "verified":
                proofs = tuple(
                    {"digest": e.digest, "kind": e.kind, "signer": e.signer or "", "source": e.source}
                    for e in verdict.evidence
                    if e.verified
                )
                entry = replace(entry, verified=proofs)
            if verdict.provenance_status(platforms) == "verified" and verdict.provenance is not None:
                facts = {
                    json.dumps(f.to_json(), sort_keys=True): f.to_json()
                    for f in verdict.provenance.accepted()
                }
                entry = replace(entry, provenance=tuple(facts[k] for k in sorted(facts)))
            if entry != (before or LockEntry(verdict.digest)):
                current.entries[verdict.key] = entry

    return lockfile.update(path, change)
