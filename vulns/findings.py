"""Findings: each package inside each image against the index, records merged by their aliases."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal

from sbom.memory import no_cycle_collection

from . import severity as severities
from .db import Index, parse_entry
from .ecosystems import Lookup, lookup
from .matching import match
from .osv import Affected, Record
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


_Matched = tuple[str, str | None, Affected]  # record id, the fix of the range it is in, the entry


def _matched(index: Index, wheres: Sequence[Lookup], notes: list[str]) -> list[list[_Matched]]:
    """The entries that affect each lookup's version, in the order of `Index.listed` (the lookup's
    names in turn, by record, by place in the record), with notes on ranges not evaluated.

    Each version is placed among its package's versions (`Order.position`); the index answers
    the entries it holds by place (`Index.placed`, a few queries for all lookups); `match`
    compares the others."""
    orders = index.orders((w.ecosystem, name) for w in wheres for name in w.names)
    places: dict[tuple[int, str], int] = {}
    unordered = []
    for n, where in enumerate(wheres):
        for name in where.names:
            order = orders.get((where.ecosystem, name))
            if order is None:
                unordered.append((n, name))
            else:
                places[n, name] = order.position(where.version)
    answered, compared = index.placed(
        (n, wheres[n].ecosystem, name, place, wheres[n].version) for (n, name), place in places.items()
    )
    found: dict[tuple[int, str, str, int], tuple[str | None, Affected]] = {}
    for n, name, record_id, position, fix, _, entry in sorted(answered, key=lambda a: a[5]):
        found.setdefault((n, name, record_id, position), (fix, parse_entry(entry)))  # ranges before versions
    for n, name, record_id, position, entry in compared:
        where, affected = wheres[n], parse_entry(entry)
        order = orders[where.ecosystem, name]
        hit, problems = match(where.version, where.kind, affected, order.ranks, places[n, name])
        notes += [f"{record_id}: {p}" for p in problems]
        if hit is not None:
            found[n, name, record_id, position] = (hit.fixed, affected)
    for n, name in unordered:  # not in an index `build` writes: every listed package has an order
        where = wheres[n]
        for position, (_, record_id, affected) in enumerate(index.listed(where.ecosystem, [name])):
            hit, problems = match(where.version, where.kind, affected)
            notes += [f"{record_id}: {p}" for p in problems]
            if hit is not None:
                found[n, name, record_id, position] = (hit.fixed, affected)
    matched: list[list[_Matched]] = [[] for _ in wheres]
    for n, name, record_id, position in sorted(
        found, key=lambda k: (k[0], wheres[k[0]].names.index(k[1]), k[2], k[3])
    ):
        fix, affected = found[n, name, record_id, position]
        matched[n].append((record_id, fix, affected))
    return matched


def _vulnerabilities(
    where: Lookup, matched: list[_Matched], records: dict[str, Record]
) -> list[Vulnerability]:
    """The vulnerabilities of a package version in an ecosystem (records merged by aliases)."""
    hits: dict[str, tuple[Record, list[str | None], list[Rating]]] = {}
    for record_id, fixed, affected in matched:
        record = records[record_id]
        if record.withdrawn:
            continue  # not indexed by `build`; an index from elsewhere might
        entry = hits.setdefault(record.id, (record, [], []))
        entry[1].append(fixed)
        entry[2].extend(severities.ratings(record, affected.severity))
    found_vulnerabilities = []
    for group in _groups([hits[i][0] for i in sorted(hits)]):
        ids = {r.id for r in group} | {a for r in group for a in r.aliases}
        primary = _primary(ids)
        known = [f for r in group for f in hits[r.id][1] if f is not None]
        fixed = (
            (known[0] if len(known) == 1 else max(known, key=lambda f: key(where.kind, f))) if known else None
        )
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


def audit(
    index: Index, targets: Sequence[Target], progress: Callable[[int, int], None] | None = None
) -> tuple[list[Finding], list[str]]:
    """Every finding of every target (sorted by image, package, id) and notes on what was not evaluated.

    The packages are looked up together: each distinct (ecosystem, name, version) once, the
    index asked a few queries for all of them (`_matched`), the matching records read at once.
    The cyclic garbage collector is off meanwhile (`memory.no_cycle_collection`).
    """
    with no_cycle_collection():
        return _audit(index, targets, progress)


def _audit(
    index: Index, targets: Sequence[Target], progress: Callable[[int, int], None] | None
) -> tuple[list[Finding], list[str]]:
    notes: list[str] = []
    ordered = sorted(targets, key=lambda t: (t.image_ref, t.bom_ref))  # findings in this order, by id
    lookups: dict[tuple[str | None, ...], Lookup | None] = {}
    readable: dict[tuple[str, str], str | None] = {}  # (kind, version): why it is not comparable
    wheres: dict[Lookup, int] = {}
    at: list[int | None] = []  # each target's lookup (index into `wheres`), None: not looked up
    for target in ordered:
        fields = (
            target.type,
            target.name,
            target.version,
            target.source,
            target.distro,
            target.epoch,
            target.source_version,
        )
        if fields not in lookups:
            lookups[fields] = lookup(*fields)  # type: ignore[arg-type]
        where = lookups[fields]
        if where is None:
            at.append(None)
            continue
        if (where.kind, where.version) not in readable:
            try:
                key(where.kind, where.version)
                readable[where.kind, where.version] = None
            except VersionError as err:
                readable[where.kind, where.version] = str(err)
        problem = readable[where.kind, where.version]
        if problem is not None:
            notes.append(f"{target.image}: {target.name}: installed version not comparable: {problem}")
            at.append(None)
            continue
        at.append(wheres.setdefault(where, len(wheres)))
    matched = _matched(index, list(wheres), notes)
    records = index.records(r for found in matched for r, _, _ in found)
    vulnerabilities = [_vulnerabilities(w, m, records) for w, m in zip(wheres, matched, strict=True)]
    findings: list[Finding] = []
    for n, (target, found) in enumerate(zip(ordered, at, strict=True), 1):
        if found is not None:
            findings += [Finding(target, v) for v in vulnerabilities[found]]
        if progress is not None and (n % 200 == 0 or n == len(ordered)):
            progress(n, len(ordered))
    return findings, sorted(set(notes))
