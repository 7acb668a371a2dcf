"""Findings: each package inside each image against the index, records merged by their aliases."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal

from sbom.memory import no_cycle_collection

from . import severity as severities
from .db import Index
from .ecosystems import Lookup, lookup
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
class Vulnerability:
    """A finding without its package: what every package with the same lookup shares."""

    ecosystem: str
    id: str
    aliases: tuple[str, ...]
    records: tuple[str, ...]
    fixed: str | None
    ratings: tuple[Rating, ...]
    severity: str
    summary: str
    references: tuple[str, ...]


@dataclass(frozen=True)
class Finding:
    """A vulnerability of one package inside one image: the id shown (a CVE when there is one), the
    other ids of the same vulnerability, the fix, the ratings and level (shared by every package
    with the same lookup), the team's triage."""

    target: Target
    vulnerability: Vulnerability
    analysis: Analysis | None = field(default=None)

    @property
    def ecosystem(self) -> str:
        return self.vulnerability.ecosystem

    @property
    def id(self) -> str:
        return self.vulnerability.id

    @property
    def aliases(self) -> tuple[str, ...]:
        return self.vulnerability.aliases

    @property
    def records(self) -> tuple[str, ...]:
        """The OSV records merged into this finding."""
        return self.vulnerability.records

    @property
    def fixed(self) -> str | None:
        return self.vulnerability.fixed

    @property
    def ratings(self) -> tuple[Rating, ...]:
        return self.vulnerability.ratings

    @property
    def severity(self) -> str:
        return self.vulnerability.severity

    @property
    def summary(self) -> str:
        return self.vulnerability.summary

    @property
    def references(self) -> tuple[str, ...]:
        return self.vulnerability.references

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


def _of_lookup(index: Index, where: Lookup, notes: list[str]) -> list[Vulnerability]:
    """The vulnerabilities of a package version in an ecosystem (records merged by aliases)."""
    hits: dict[str, tuple[Record, list[str | None], list[Rating]]] = {}
    orders: dict[str, tuple[dict[str, int], int] | None] = {}
    for name, record_id, affected in index.listed(where.ecosystem, where.names):
        if name not in orders:
            order = index.order(where.ecosystem, name)
            orders[name] = None if order is None else (order.ranks, order.position(where.version))
        placed = orders[name]
        found, problems = match(where.version, where.kind, affected, *(placed or (None, None)))
        notes += [f"{record_id}: {p}" for p in problems]
        if found is None:
            continue
        record = index.record(record_id)
        if record.withdrawn:
            continue  # not indexed by `build`; an index from elsewhere might
        entry = hits.setdefault(record.id, (record, [], []))
        entry[1].append(found.fixed)
        entry[2].extend(severities.ratings(record, affected.severity))
    found_vulnerabilities = []
    for group in _groups([hits[i][0] for i in sorted(hits)]):
        ids = {r.id for r in group} | {a for r in group for a in r.aliases}
        primary = _primary(ids)
        known = [f for r in group for f in hits[r.id][1] if f is not None]
        fixed = max(known, key=lambda f: key(where.kind, f)) if known else None
        ratings = tuple(sorted({r for rec in group for r in hits[rec.id][2]}))
        found_vulnerabilities.append(
            Vulnerability(
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
    return sorted(found_vulnerabilities, key=lambda v: v.id)


def of_target(
    index: Index, target: Target, notes: list[str], seen: dict[Lookup, list[Vulnerability]] | None = None
) -> list[Finding]:
    """The findings of one package (`seen`: the vulnerabilities of lookups done before: images
    sharing a base share most packages)."""
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
    seen = {} if seen is None else seen
    if where not in seen:
        seen[where] = _of_lookup(index, where, notes)
    return [Finding(target, v) for v in seen[where]]


def audit(
    index: Index, targets: Sequence[Target], progress: Callable[[int, int], None] | None = None
) -> tuple[list[Finding], list[str]]:
    """Every finding of every target (sorted by image, package, id) and notes on what was not evaluated.

    The cyclic garbage collector is off meanwhile (`memory.no_cycle_collection`).
    """
    with no_cycle_collection():
        return _audit(index, targets, progress)


def _audit(
    index: Index, targets: Sequence[Target], progress: Callable[[int, int], None] | None
) -> tuple[list[Finding], list[str]]:
    notes: list[str] = []
    findings: list[Finding] = []
    seen: dict[Lookup, list[Vulnerability]] = {}
    ordered = sorted(targets, key=lambda t: (t.image_ref, t.bom_ref))  # findings in this order, by id
    for n, target in enumerate(ordered, 1):
        findings += of_target(index, target, notes, seen)
        if progress is not None and (n % 200 == 0 or n == len(ordered)):
            progress(n, len(ordered))
    return findings, sorted(set(notes))
