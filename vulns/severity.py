"""Severity of a record: from its CVSS vectors (v2, v3.x, v4.0, scored by the `cvss` package) or the
record's own level (Ubuntu's priorities, GitHub's database_specific.severity)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache

from .osv import Record

LEVELS = ("none", "low", "medium", "high", "critical")
UNKNOWN = "unknown"
# Levels as other databases name them.
_LEVEL_NAMES = {
    "negligible": "low",
    "low": "low",
    "moderate": "medium",
    "medium": "medium",
    "high": "high",
    "important": "high",
    "critical": "critical",
    "none": "none",
}
_METHODS = {"CVSS_V2": "CVSSv2", "CVSS_V3": "CVSSv3", "CVSS_V4": "CVSSv4"}


@dataclass(frozen=True, order=True)
class Rating:
    """One rating: method (CVSSv2/CVSSv3/CVSSv31/CVSSv4/other), score, level, vector."""

    method: str
    severity: str
    score: Decimal | None = None
    vector: str | None = None


def rank(level: str) -> int:
    """Order of levels: unknown below none."""
    return LEVELS.index(level) if level in LEVELS else -1


@lru_cache(maxsize=4096)
def cvss_rating(kind: str, vector: str) -> Rating | None:
    """The base score and level of a CVSS vector; None if the vector is not valid."""
    import cvss

    try:
        if kind == "CVSS_V4":
            v4 = cvss.CVSS4(vector)
            return Rating("CVSSv4", str(v4.severity).lower(), Decimal(str(v4.base_score)), vector)
        if kind == "CVSS_V3":
            v3 = cvss.CVSS3(vector)
            method = "CVSSv31" if vector.startswith("CVSS:3.1/") else "CVSSv3"
            return Rating(method, v3.severities()[0].lower(), Decimal(str(v3.scores()[0])), vector)
        if kind == "CVSS_V2":
            score = Decimal(str(cvss.CVSS2(vector).scores()[0]))
            level = "low" if score < 4 else "medium" if score < 7 else "high"
            return Rating("CVSSv2", level, score, vector)
    except Exception:  # cvss raises its own errors for malformed vectors
        return None
    return None


def ratings(record: Record, affected_severity: tuple[tuple[str, str], ...] = ()) -> tuple[Rating, ...]:
    """Every rating the record gives (record level and affected package level), deduplicated, sorted."""
    found: set[Rating] = set()
    for kind, score in (*record.severity, *affected_severity):
        if kind in _METHODS:
            rating = cvss_rating(kind, score)
            if rating is not None:
                found.add(rating)
        elif score.lower() in _LEVEL_NAMES:
            found.add(Rating("other", _LEVEL_NAMES[score.lower()]))
    if record.own_severity and record.own_severity.lower() in _LEVEL_NAMES:
        found.add(Rating("other", _LEVEL_NAMES[record.own_severity.lower()]))
    return tuple(sorted(found))


def level(found: tuple[Rating, ...]) -> str:
    """The level a finding has: the newest CVSS version's, else the highest other level, else unknown."""
    for method in ("CVSSv4", "CVSSv31", "CVSSv3", "CVSSv2"):
        levels = [r.severity for r in found if r.method == method]
        if levels:
            return max(levels, key=rank)
    others = [r.severity for r in found]
    return max(others, key=rank) if others else UNKNOWN
