"""OSV's rules for "is this version affected": ranges (ECOSYSTEM, SEMVER) with introduced / fixed /
last_affected / limit events, several ranges per package, explicit `versions` lists.

A range's events are ordered by version; a version's state is set by the last event at or
below it (introduced: affected from there; fixed: not from there; last_affected: not above
it). A `limit` excludes every version at or above it. GIT ranges name commits, not
versions, and are not evaluated.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from .osv import Affected, Range
from .versions import Ordered, VersionError, key


@dataclass(frozen=True)
class Match:
    """An affected version: the fix of the range it is in (None: no fixed version), notes on skipped parts."""

    fixed: str | None


_BOTTOM, _TOP = 0, 2  # introduced "0" (before every version), limit "*" (after every version)


@dataclass(frozen=True)
class _Event:
    kind: str  # introduced | fixed | last_affected | limit
    version: str
    bound: int  # _BOTTOM, 1 (an ordered version), _TOP
    key: Ordered | None


@lru_cache(maxsize=1 << 16)
def _ordered(kind: str, events: tuple[tuple[str, str], ...]) -> tuple[_Event, ...]:
    """A range's events in version order (computed once per range: records are shared by packages)."""
    found = []
    for name, version in events:
        if name == "introduced" and version == "0":
            found.append(_Event(name, version, _BOTTOM, None))
        elif name == "limit" and version == "*":
            found.append(_Event(name, version, _TOP, None))
        else:
            found.append(_Event(name, version, 1, key(kind, version)))
    bottom = [e for e in found if e.bound == _BOTTOM]
    top = [e for e in found if e.bound == _TOP]
    return (*bottom, *sorted((e for e in found if e.bound == 1), key=lambda e: e.key), *top)


@lru_cache(maxsize=1 << 20)
def _less(kind: str, a: str, b: str) -> bool:
    """`a` before `b` in `kind`'s order (remembered: images share packages, records share versions)."""
    return key(kind, a) < key(kind, b)


def _below(kind: str, installed: str, event: _Event) -> bool:
    """Is `installed` before the event's version?"""
    if event.bound != 1:
        return event.bound == _TOP
    return _less(kind, installed, event.version)


def in_range(installed: str, kind: str, entry: Range) -> Match | None:
    """The match of `installed` in one range, None if not affected by it; VersionError on a bad version."""
    range_kind = "semver" if entry.type == "SEMVER" else kind
    key(range_kind, installed)  # VersionError before anything is compared
    events = _ordered(range_kind, entry.events)
    limits = [e for e in events if e.kind == "limit"]
    if limits and not any(_below(range_kind, installed, e) for e in limits):
        return None
    affected = False
    rest: tuple[_Event, ...] = ()
    ordered = [e for e in events if e.kind != "limit"]
    for n, event in enumerate(ordered):
        if event.kind == "last_affected":
            if event.bound == 1 and _less(range_kind, event.version, installed):
                affected = False  # above the last affected version
                continue
            rest = tuple(ordered[n:])
            break
        if _below(range_kind, installed, event):
            rest = tuple(ordered[n:])
            break
        affected = event.kind == "introduced"
    if not affected:
        return None
    fix = next((e.version for e in rest if e.kind == "fixed"), None)
    return Match(fix)


def _in_ranks(v: int, entry: Range, ranks: dict[str, int]) -> Match | None:
    """`in_range` for a version whose place among the range's versions is known: `v` and the events
    as numbers (`Order.position`: twice a version's rank, odd between two ranks), so no version is
    compared again. The same walk as `in_range`."""
    numbered = []
    for name, version in entry.events:
        if name == "introduced" and version == "0":
            numbered.append((-2, name, version))
        elif name == "limit" and version == "*":
            numbered.append((1 << 62, name, version))
        else:
            numbered.append((2 * ranks[version], name, version))
    limits = [n for n, name, _ in numbered if name == "limit"]
    if limits and not any(v < n for n in limits):
        return None
    ordered = sorted((e for e in numbered if e[1] != "limit"), key=lambda e: e[0])
    affected = False
    rest: list[tuple[int, str, str]] = []
    for n, (number, name, _) in enumerate(ordered):
        if name == "last_affected":
            if number < v:
                affected = False
                continue
            rest = ordered[n:]
            break
        if v < number:
            rest = ordered[n:]
            break
        affected = name == "introduced"
    if not affected:
        return None
    return Match(next((version for _, name, version in rest if name == "fixed"), None))


def _by_rank(entry: Range, ranks: dict[str, int]) -> bool:
    """Can `_in_ranks` evaluate the range: ECOSYSTEM, every event's version in the order (or
    `introduced 0`, `limit *`)?"""
    return entry.type == "ECOSYSTEM" and all(
        version in ranks or (name, version) in (("introduced", "0"), ("limit", "*"))
        for name, version in entry.events
    )


def places(affected: Affected, ranks: dict[str, int] | None) -> list[tuple[int, int, str | None]] | None:
    """`match`'s answer for every place a version can have among the package's ranked versions
    (`Order.position`: -1 up to twice the highest rank + 1), worked out once when the index is
    written: the affected places as (first, last, fix) intervals, in order. None when a range is
    not evaluated by rank (SEMVER, a version the order lacks): `match` compares those. The
    entry's `versions` list is not part of the answer (asked separately when no range matches).

    The answer can only change at an event's place or just above it, so `_in_ranks` is asked at
    those places (and at -1) and holds until the next one."""
    if ranks is None:
        return None
    ranges = [r for r in affected.ranges if r.type != "GIT"]
    if not all(_by_rank(r, ranks) for r in ranges):
        return None
    top = 2 * max(ranks.values(), default=-1) + 1
    starts = {-1}
    for entry in ranges:
        for name, version in entry.events:
            if (name, version) not in (("introduced", "0"), ("limit", "*")):
                starts.update(p for p in (2 * ranks[version], 2 * ranks[version] + 1) if p <= top)
    ordered = sorted(starts)
    found: list[tuple[int, int, str | None]] = []
    previous: object = False
    for n, start in enumerate(ordered):
        hits = [m for m in (_in_ranks(start, r, ranks) for r in ranges) if m is not None]
        fixes = [m.fixed for m in hits if m.fixed is not None]
        answer = (max(fixes, key=lambda f: ranks[f]) if fixes else None) if hits else False
        last = ordered[n + 1] - 1 if n + 1 < len(ordered) else top
        if answer is not False and found and previous == answer and found[-1][1] == start - 1:
            found[-1] = (found[-1][0], last, found[-1][2])
        elif answer is not False:
            found.append((start, last, answer))  # type: ignore[arg-type]
        previous = answer
    return found


def match(
    installed: str,
    kind: str,
    affected: Affected,
    ranks: dict[str, int] | None = None,
    position: int | None = None,
) -> tuple[Match | None, list[str]]:
    """Is `installed` affected (by any range or the versions list)? With notes on ranges that could
    not be evaluated (a version the ecosystem's order cannot read).

    `ranks` / `position`: the index's order of the package's versions and the place of `installed`
    in it; ECOSYSTEM ranges whose versions it holds are evaluated by number.
    """
    notes: list[str] = []
    found: list[Match] = []
    for entry in affected.ranges:
        if entry.type == "GIT":
            continue
        try:
            if ranks is not None and position is not None and _by_rank(entry, ranks):
                hit = _in_ranks(position, entry, ranks)
            else:
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
