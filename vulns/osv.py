"""OSV records (https://ossf.github.io/osv-schema/): the fields the audit uses, checked as they are read.

A record that breaks the schema where the audit depends on it is a RecordError naming
its id; the rest of the record (details, credits, …) is not looked at.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

RANGE_TYPES = ("ECOSYSTEM", "SEMVER", "GIT")
EVENT_KINDS = ("introduced", "fixed", "last_affected", "limit")
_TIMESTAMP = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?Z$")


class RecordError(ValueError):
    """A record that cannot be used; the text names its id (when it has one) and the reason."""


@dataclass(frozen=True)
class Range:
    """One `affected[].ranges[]` entry: its type and its events, (kind, version) in record order."""

    type: str
    events: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Affected:
    """One `affected[]` entry: a package in an ecosystem, its ranges and listed versions."""

    ecosystem: str
    name: str
    ranges: tuple[Range, ...]
    versions: tuple[str, ...]
    severity: tuple[tuple[str, str], ...]  # (type, score)


@dataclass(frozen=True)
class Record:
    """The parts of an OSV record the audit uses."""

    id: str
    modified: str
    withdrawn: str | None
    aliases: tuple[str, ...]
    upstream: tuple[str, ...]  # the records this one is derived from (schema 1.7: a DSA → its CVEs)
    summary: str
    severity: tuple[tuple[str, str], ...]  # (type, score): CVSS_V2/V3/V4 vectors, Ubuntu levels
    own_severity: str | None  # database_specific.severity (GHSA "HIGH", "MODERATE", …)
    references: tuple[tuple[str, str], ...]  # (type, url)
    affected: tuple[Affected, ...]


def _string(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise RecordError(f"{where}: expected a non-empty string, found {type(value).__name__}")
    return value


def _list(value: Any, where: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise RecordError(f"{where}: expected an array, found {type(value).__name__}")
    return value


def _object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise RecordError(f"{where}: expected an object, found {type(value).__name__}")
    return value


def _timestamp(value: Any, where: str) -> str:
    text = _string(value, where)
    if not _TIMESTAMP.match(text):
        raise RecordError(f"{where}: {text!r} is not an RFC 3339 UTC timestamp (…T…Z)")
    return text


def _severity(value: Any, where: str) -> tuple[tuple[str, str], ...]:
    found = []
    for n, entry in enumerate(_list(value, where)):
        entry = _object(entry, f"{where}[{n}]")
        found.append(
            (
                _string(entry.get("type"), f"{where}[{n}].type"),
                _string(entry.get("score"), f"{where}[{n}].score"),
            )
        )
    return tuple(found)


def _range(value: Any, where: str) -> Range:
    raw = _object(value, where)
    kind = _string(raw.get("type"), f"{where}.type")
    if kind not in RANGE_TYPES:
        raise RecordError(f"{where}.type: {kind!r} is not one of {', '.join(RANGE_TYPES)}")
    events = []
    for n, event in enumerate(_list(raw.get("events"), f"{where}.events")):
        event = _object(event, f"{where}.events[{n}]")
        if len(event) != 1 or next(iter(event)) not in EVENT_KINDS:
            raise RecordError(
                f"{where}.events[{n}]: one of {', '.join(EVENT_KINDS)} per event, found {sorted(event)}"
            )
        ((name, version),) = event.items()
        events.append((name, _string(version, f"{where}.events[{n}].{name}")))
    names = {name for name, _ in events}
    if "introduced" not in names:
        raise RecordError(f"{where}.events: no 'introduced' event")
    if "fixed" in names and "last_affected" in names:
        raise RecordError(f"{where}.events: both 'fixed' and 'last_affected' (the schema allows one kind)")
    if kind == "GIT" and "repo" not in raw:
        raise RecordError(f"{where}: a GIT range needs 'repo'")
    return Range(kind, tuple(events))


def _affected(value: Any, where: str) -> Affected:
    raw = _object(value, where)
    package = _object(raw.get("package"), f"{where}.package")
    return Affected(
        ecosystem=_string(package.get("ecosystem"), f"{where}.package.ecosystem"),
        name=_string(package.get("name"), f"{where}.package.name"),
        ranges=tuple(
            _range(r, f"{where}.ranges[{n}]")
            for n, r in enumerate(_list(raw.get("ranges"), f"{where}.ranges"))
        ),
        versions=tuple(
            _string(v, f"{where}.versions[{n}]")
            for n, v in enumerate(_list(raw.get("versions"), f"{where}.versions"))
        ),
        severity=_severity(raw.get("severity"), f"{where}.severity"),
    )


def parse(doc: Any) -> Record:
    """A record from its JSON; RecordError (naming the id) if it cannot be used."""
    if not isinstance(doc, dict):
        raise RecordError(f"not an OSV record (the top level is a {type(doc).__name__}, not an object)")
    record_id = doc.get("id")
    if not isinstance(record_id, str) or not record_id:
        raise RecordError("no 'id'")
    try:
        specific = doc.get("database_specific")
        own = specific.get("severity") if isinstance(specific, dict) else None
        return Record(
            id=record_id,
            modified=_timestamp(doc.get("modified"), "modified"),
            withdrawn=_timestamp(doc["withdrawn"], "withdrawn") if doc.get("withdrawn") is not None else None,
            aliases=tuple(
                _string(a, f"aliases[{n}]") for n, a in enumerate(_list(doc.get("aliases"), "aliases"))
            ),
            upstream=tuple(
                _string(u, f"upstream[{n}]") for n, u in enumerate(_list(doc.get("upstream"), "upstream"))
            ),
            summary=doc["summary"] if isinstance(doc.get("summary"), str) else "",
            severity=_severity(doc.get("severity"), "severity"),
            own_severity=own if isinstance(own, str) and own else None,
            references=tuple(
                (
                    _string(_object(r, f"references[{n}]").get("type"), f"references[{n}].type"),
                    _string(r.get("url"), f"references[{n}].url"),
                )
                for n, r in enumerate(_list(doc.get("references"), "references"))
            ),
            affected=tuple(
                _affected(a, f"affected[{n}]") for n, a in enumerate(_list(doc.get("affected"), "affected"))
            ),
        )
    except RecordError as err:
        raise RecordError(f"{record_id}: {err}") from None


def trusted(doc: dict[str, Any]) -> Record:
    """A record from the index, which `parse` checked when it was imported (no checks again)."""
    specific = doc.get("database_specific")
    own = specific.get("severity") if isinstance(specific, dict) else None

    def severity(entries: Any) -> tuple[tuple[str, str], ...]:
        return tuple((e["type"], e["score"]) for e in entries or ())

    return Record(
        id=doc["id"],
        modified=doc["modified"],
        withdrawn=doc.get("withdrawn"),
        aliases=tuple(doc.get("aliases") or ()),
        upstream=tuple(doc.get("upstream") or ()),
        summary=doc["summary"] if isinstance(doc.get("summary"), str) else "",
        severity=severity(doc.get("severity")),
        own_severity=own if isinstance(own, str) and own else None,
        references=tuple((r["type"], r["url"]) for r in doc.get("references") or ()),
        affected=tuple(
            Affected(
                ecosystem=a["package"]["ecosystem"],
                name=a["package"]["name"],
                ranges=tuple(
                    Range(r["type"], tuple(next(iter(e.items())) for e in r["events"]))
                    for r in a.get("ranges") or ()
                ),
                versions=tuple(a.get("versions") or ()),
                severity=severity(a.get("severity")),
            )
            for a in doc.get("affected") or ()
        ),
    )
