"""Provenance facts (where and how an image was built) and how a policy judges them.

The CLI reads them from verified SLSA attestations (`container-lock verify --provenance`) and
records them in the lock; the layer judges the recorded facts against CONTAINER_POLICY before
any download. Standard library only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from fnmatch import fnmatch
from typing import Any

# Why an image's provenance is not accepted, most telling first (the status `verify` reports).
REASONS = (
    "builder not allowed",
    "source not allowed",
    "build type not allowed",
    "untrusted signer",
    "other digest",
    "invalid signature",
    "unknown predicate",
    "not verifiable",
    "no attestation",
)
FACT_KEYS = (
    "digest",
    "predicate_type",
    "builder_id",
    "build_type",
    "source_uri",
    "source_digest",
    "attestation",
    "signer",
)


@dataclass(frozen=True)
class Facts:
    """What a verified SLSA provenance attestation says about one digest."""

    digest: str  # the image digest the statement's subject names
    predicate_type: str
    builder_id: str
    build_type: str
    source_uri: str
    source_digest: str  # the source revision (git commit), "" if the predicate names none
    attestation: str  # the digest of the attestation (bundle or DSSE envelope) it came from
    signer: str  # the policy signer that accepted the attestation's signature

    def to_json(self) -> dict[str, str]:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: Mapping[str, str]) -> Facts:
        return cls(**{key: str(raw.get(key, "")) for key in FACT_KEYS})


@dataclass(frozen=True)
class Rule:
    """`[[provenance]]`: the images it covers (globs on host[:port]/path), whether an attestation
    is required, and what it may say (empty: anything)."""

    images: tuple[str, ...]
    required: bool = True
    builder_id: tuple[str, ...] = ()  # exact builder ids
    source_uri: tuple[str, ...] = ()  # globs
    build_type: tuple[str, ...] = ()  # exact build types

    def applies_to(self, name: str) -> bool:
        return any(fnmatch(name, pattern) for pattern in self.images)

    def problem(self, facts: Facts) -> tuple[str, str] | None:
        """(reason, detail) if the facts break the rule, else None."""
        if self.builder_id and facts.builder_id not in self.builder_id:
            return (
                "builder not allowed",
                f"built by {facts.builder_id or 'no builder'}, not {', '.join(self.builder_id)}",
            )
        if self.source_uri and not any(fnmatch(facts.source_uri, p) for p in self.source_uri):
            return (
                "source not allowed",
                f"built from {facts.source_uri or 'no source'}, not {', '.join(self.source_uri)}",
            )
        if self.build_type and facts.build_type not in self.build_type:
            return (
                "build type not allowed",
                f"build type {facts.build_type or 'none'}, not {', '.join(self.build_type)}",
            )
        return None


RECORD_HINT = "run `container-lock verify --provenance --record`"


def judge_recorded(
    rule: Rule, recorded: tuple[Mapping[str, str], ...], pin: str, platforms: set[str]
) -> tuple[str, str] | None:
    """(reason, detail) when the lock's recorded provenance does not satisfy `rule` for the image
    pinned by `pin` (an attestation about the pin, or one about each of its `platforms`
    manifests), else None."""
    about = [f for f in map(Facts.from_json, recorded) if f.digest == pin or f.digest in platforms]
    problems = {f: rule.problem(f) for f in about}
    accepted = {f.digest for f, problem in problems.items() if problem is None}
    if pin in accepted or (platforms and platforms <= accepted):
        return None
    found = [p for p in problems.values() if p is not None]
    if found:
        return found[0]
    return "no attestation", f"no verified provenance recorded for {pin} in the lockfile; {RECORD_HINT}"


def judge_lock_entry(rule: Rule, entry: Any, pin: str) -> tuple[str, str] | None:
    """`judge_recorded` for the lock entry (a `LockEntry` or None) of the image pinned by `pin`:
    what it recorded counts only while it pins that digest."""
    recorded = entry.provenance if entry is not None and entry.digest == pin else ()
    platforms = set(entry.platforms.values()) - {pin} if recorded else set()
    return judge_recorded(rule, recorded, pin, platforms)
