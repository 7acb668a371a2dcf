"""Findings: each package inside each image against the index, records merged by their aliases."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal

from . import severity as severities
from .db import Index
from .ecosystems import lookup
from .matching import match
from .osv import Record
from .severity import Rating
from .targets import Target
from .versions import VersionError, key


@dataclass(frozen=True)
class Analysis:
    """The team's triage of a finding (from VEX): state, justification, detail."""

    state: str  # CycloneDX ImpactAnalysisState: not_affected, false_positive, exploitable, in_triage, …
    justification: str | None = None
    detail: str | None = None
    source: str = ""  # the VEX file

    @property
    def suppresses(self) -> bool:
        return self.state in ("not_affected", "false_positive", "resolved")


@dataclass(frozen=True)
class Finding:
    """A vulnerability of one package inside one image: the id shown (a CVE when there is one), the
    other ids of the same vulnerability, the fix, the ratings and level."""

    target: Target
    ecosystem: str
    id: str
    aliases: tuple[str, ...]
    records: tuple[str, ...]  # the OSV records merged into this finding
    fixed: str | None
    ratings: tuple[Rating, ...]
    severity: str
    summary: str
    references: tuple[str, ...]
    analysis: Analysis | None = field(default=None)

    @property
    def ids(self) -> tuple[str, ...]:
        return (self.id, *self.aliases)

    @property
    def score(self) -> Decimal | None:
        scores = [r.score for r in self.ratings if r.score is not None]
        return max(scores) if scores else None

    def triaged(self, analysis: Analysis) -> Finding:
        return replace(self, analysis=analysis)


def _primary(ids: set[str]) -> str:
    """The id a finding is shown by: the CVE when there is one, else the smallest id."""
    cves = sorted(i for i in ids if i.startswith("CVE-"))
    return cves[0] if cves else sorted(ids)[0]


def _groups(records: Sequence[Record]) -> list[list[Record]]:
    """Records joined when one names the other (id or aliases), transitively."""
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for record in records:
        for alias in record.aliases:
            a, b = find(record.id), find(alias)
            if a != b:
                parent[max(a, b)] = min(a, b)
    groups: dict[str, list[Record]] = {}
    for record in records:
        groups.setdefault(find(record.id), []).append(record)
    return [groups[k] for k in sorted(groups)]


def of_target(index: Index, target: Target, notes: list[str]) -> list[Finding]:
    """The findings of one package."""
    where = lookup(
        target.type,
        target.name,
        target.version,
        target.source,
        target.distro,
        target.epoch,
        target.source_version,
    )
    if where is None:
        return []
    try:
        key(where.kind, where.version)
    except VersionError as err:
        notes.append(f"{target.image}: {target.name}: installed version not comparable: {err}")
        return []
    hits: dict[str, tuple[Record, list[str | None], list[Rating]]] = {}
    for record, affected in index.listed(where.ecosystem, where.names):
        if record.withdrawn:
            continue
        found, problems = match(where.version, where.kind, affected)
        notes += [f"{record.id}: {p}" for p in problems]
        if found is None:
            continue
        entry = hits.setdefault(record.id, (record, [], []))
        entry[1].append(found.fixed)
        entry[2].extend(severities.ratings(record, affected.severity))
    findings = []
    for group in _groups([hits[i][0] for i in sorted(hits)]):
        ids = {r.id for r in group} | {a for r in group for a in r.aliases}
        primary = _primary(ids)
        known = [f for r in group for f in hits[r.id][1] if f is not None]
        fixed = max(known, key=lambda f: key(where.kind, f)) if known else None
        ratings = tuple(sorted({r for rec in group for r in hits[rec.id][2]}))
        findings.append(
            Finding(
                target=target,
                ecosystem=where.ecosystem,
                id=primary,
                aliases=tuple(sorted(ids - {primary})),
                records=tuple(sorted(r.id for r in group)),
                fixed=fixed,
                ratings=ratings,
                severity=severities.level(ratings),
                summary=next((r.summary for r in sorted(group, key=lambda r: r.id) if r.summary), ""),
                references=tuple(sorted({url for r in group for _, url in r.references})),
            )
        )
    return findings


def audit(
    index: Index, targets: Sequence[Target], progress: Callable[[int, int], None] | None = None
) -> tuple[list[Finding], list[str]]:
    """Every finding of every target (sorted by image, package, id) and notes on what was not evaluated."""
    notes: list[str] = []
    findings: list[Finding] = []
    for n, target in enumerate(targets, 1):
        findings += of_target(index, target, notes)
        if progress is not None and (n % 200 == 0 or n == len(targets)):
            progress(n, len(targets))
    findings.sort(key=lambda f: (f.target.image_ref, f.target.bom_ref, f.id))
    return findings, sorted(set(notes))
