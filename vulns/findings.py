"""Findings: each package inside each image against the index, records merged by their aliases and
`upstream`."""

from __future__ import annotations

import re
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


class _Ids:
    """Union-find over vulnerability ids: the classes of ids that name one vulnerability."""

    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def find(self, x: str) -> str:
        parent = self.parent
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def union(self, a: str, b: str) -> bool:
        a, b = self.find(a), self.find(b)
        if a == b:
            return False
        self.parent[max(a, b)] = min(a, b)
        return True

    def classes(self) -> dict[str, set[str]]:
        """Every class by its root."""
        found: dict[str, set[str]] = {}
        for x in list(self.parent):
            found.setdefault(self.find(x), set()).add(x)
        return found


# A distribution's record of a CVE (osv.dev's DEBIAN-CVE-X, UBUNTU-CVE-X, ALPINE-CVE-X), for an
# `upstream` id the index does not hold.
_DISTRO_CVE = re.compile(r"^[A-Z]+-(CVE-[0-9]{4}-[0-9]+)$")


def _upstream(
    record_id: str, links: dict[str, Record], seen: frozenset[str] = frozenset()
) -> tuple[set[str], set[str]]:
    """The ids `record_id` is derived from, followed through the known records' `upstream`: (the
    ids at the ends of the chains, every id on them)."""
    record = links.get(record_id)
    if record is None or not record.upstream or record_id in seen:
        return {record_id}, {record_id}
    ends: set[str] = set()
    visited = {record_id}
    for name in record.upstream:
        more_ends, more_visited = _upstream(name, links, seen | {record_id})
        ends |= more_ends
        visited |= more_visited
    return ends, visited


def _groups(
    records: Sequence[Record], links: dict[str, Record] | None = None
) -> list[tuple[list[Record], set[str]]]:
    """The vulnerabilities among `records`, each as (its records, all its ids), in a stable order.

    Records are one vulnerability when one names the other in `aliases` (transitively), or when a
    record is derived (`upstream`, OSV 1.7) from exactly one vulnerability: Debian's DSA-N
    (`upstream: [CVE-X, DEBIAN-CVE-X]`) and DEBIAN-CVE-X (`upstream: [CVE-X]`) are CVE-X.
    `links` are further records (from the index) whose `upstream` tells what an id is derived
    from; an id it does not hold named `<DISTRO>-CVE-X` is CVE-X. An advisory derived from
    several vulnerabilities (a DSA or USN fixing several CVEs) is none of them alone: it is
    counted in each (one finding per vulnerability, shown by its CVE).
    """
    known = {**(links or {}), **{r.id: r for r in records}}
    ids = _Ids()
    for record in records:
        ids.find(record.id)
        for alias in record.aliases:
            ids.union(record.id, alias)
    chains = {r.id: _upstream(r.id, known) for r in records if r.upstream}
    for ends, _ in chains.values():
        for end in ends - known.keys():
            named = _DISTRO_CVE.match(end)
            if named:  # DEBIAN-CVE-X, UBUNTU-CVE-X, ALPINE-CVE-X: the distribution's record of CVE-X
                ids.union(end, named[1])
    several: dict[str, set[str]] = {}
    changed = True
    while changed:  # a record joined to its vulnerability can make another record's ends one
        changed = False
        for record_id, (ends, visited) in chains.items():
            roots = {ids.find(e) for e in ends - {record_id}}
            if len(roots) == 1:
                several.pop(record_id, None)
                for other in visited:
                    changed |= ids.union(record_id, other)
            elif roots:
                several[record_id] = roots
    grouped: dict[str, list[Record]] = {}
    extra: dict[str, set[str]] = {}
    for record in records:
        if record.id in several:
            for root in {ids.find(r) for r in several[record.id]}:
                grouped.setdefault(root, []).append(record)
                extra.setdefault(root, set()).update((record.id, *record.aliases))
        else:
            grouped.setdefault(ids.find(record.id), []).append(record)
    classes = ids.classes()
    return [(grouped[root], classes[root] | extra.get(root, set())) for root in sorted(grouped)]


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
    where: Lookup, matched: list[_Matched], records: dict[str, Record], links: dict[str, Record] | None = None
) -> list[Vulnerability]:
    """The vulnerabilities of a package version in an ecosystem (records merged by aliases and
    upstream, see `_groups`; `links`: the records their `upstream` names)."""
    hits: dict[str, tuple[Record, list[str | None], list[Rating]]] = {}
    for record_id, fixed, affected in matched:
        record = records[record_id]
        if record.withdrawn:
            continue  # not indexed by `build`; an index from elsewhere might
        entry = hits.setdefault(record.id, (record, [], []))
        entry[1].append(fixed)
        entry[2].extend(severities.ratings(record, affected.severity))
    found_vulnerabilities = []
    for group, ids in _groups([hits[i][0] for i in sorted(hits)], links):
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


def _links(index: Index, records: dict[str, Record]) -> dict[str, Record]:
    """The records of the index that `records` name in `upstream`, and those they name in turn
    (Debian's DSA-N names DEBIAN-CVE-X, which names CVE-X): what an id is derived from."""
    links: dict[str, Record] = {}
    asked = set(records)
    wanted = {u for r in records.values() for u in r.upstream} - asked
    while wanted:
        asked |= wanted
        found = index.records(wanted, present=True)
        links.update(found)
        wanted = {u for r in found.values() for u in r.upstream} - asked
    return links


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
    links = _links(index, records)
    vulnerabilities = [_vulnerabilities(w, m, records, links) for w, m in zip(wheres, matched, strict=True)]
    findings: list[Finding] = []
    for n, (target, found) in enumerate(zip(ordered, at, strict=True), 1):
        if found is not None:
            findings += [Finding(target, v) for v in vulnerabilities[found]]
        if progress is not None and (n % 200 == 0 or n == len(ordered)):
            progress(n, len(ordered))
    return findings, sorted(set(notes))
