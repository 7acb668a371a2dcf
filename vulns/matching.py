"""OSV's rules for "is this version affected": ranges (ECOSYSTEM, SEMVER) with introduced / fixed /
last_affected / limit events, several ranges per package, explicit `versions` lists.

A range's events are ordered by version; a version's state is set by the last event at or
below it (introduced: affected from there; fixed: not from there; last_affected: not above
it). A `limit` excludes every version at or above it. GIT ranges name commits, not
versions, and are not evaluated.
"""

from __future__ import annotations

from dataclasses import dataclass

from .osv import Affected, Range
from .versions import VersionError, key


@dataclass(frozen=True)
class Match:
    """An affected version: the fix of the range it is in (None: no fixed version), notes on skipped parts."""

    fixed: str | None


def _sort_key(kind: str, event: tuple[str, str]) -> tuple[int, object]:
    name, version = event
    if name == "introduced" and version == "0":
        return (0, 0)
    if name == "limit" and version == "*":
        return (2, 0)
    return (1, key(kind, version))


def in_range(installed: str, kind: str, entry: Range) -> Match | None:
    """The match of `installed` in one range, None if not affected by it; VersionError on a bad version."""
    range_kind = "semver" if entry.type == "SEMVER" else kind
    v = (1, key(range_kind, installed))
    limits = [e for e in entry.events if e[0] == "limit"]
    if limits and not any(v < _sort_key(range_kind, e) for e in limits):
        return None
    affected = False
    for event in sorted((e for e in entry.events if e[0] != "limit"), key=lambda e: _sort_key(range_kind, e)):
        at = _sort_key(range_kind, event)
        if event[0] == "introduced" and v >= at:
            affected = True
        elif (event[0] == "fixed" and v >= at) or (event[0] == "last_affected" and v > at):
            affected = False
    if not affected:
        return None
    fixes = sorted(
        (_sort_key(range_kind, e), e[1])
        for e in entry.events
        if e[0] == "fixed" and _sort_key(range_kind, e) > v
    )
    return Match(fixes[0][1] if fixes else None)


def match(installed: str, kind: str, affected: Affected) -> tuple[Match | None, list[str]]:
    """Is `installed` affected (by any range or the versions list)? With notes on ranges that could
    not be evaluated (a version the ecosystem's order cannot read)."""
    notes: list[str] = []
    found: list[Match] = []
    for entry in affected.ranges:
        if entry.type == "GIT":
            continue
        try:
            hit = in_range(installed, kind, entry)
        except VersionError as err:
            notes.append(f"{affected.ecosystem}/{affected.name}: a {entry.type} range not evaluated: {err}")
            continue
        if hit is not None:
            found.append(hit)
    if not found and installed in affected.versions:
        found.append(Match(None))
    if not found:
        return None, notes
    fixes = [m.fixed for m in found if m.fixed is not None]
    if not fixes:
        return Match(None), notes
    try:
        return Match(max(fixes, key=lambda f: key(kind, f))), notes
    except VersionError:
        return Match(sorted(fixes)[-1]), notes
