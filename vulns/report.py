"""What an audit reports: stable JSON (`--json`) and CycloneDX 1.6 `vulnerabilities[]`
(cyclonedx-python-lib's models, written as the library writes them), each affecting the package
component's bom-ref inside its image component."""

from __future__ import annotations

import json
from collections.abc import Sequence
from decimal import Decimal
from functools import lru_cache
from typing import Any

from .db import Snapshot
from .findings import Finding
from .severity import Rating
from .vex import Triage

PROPERTY = "container-lock"
OSV_URL = "https://osv.dev/vulnerability/"
# The source of an id, by prefix (for `source` and `references[].source`).
_SOURCES = (
    ("CVE-", "NVD", "https://nvd.nist.gov/vuln/detail/"),
    ("GHSA-", "GitHub", "https://github.com/advisories/"),
    ("DSA-", "Debian", "https://security-tracker.debian.org/tracker/"),
    ("DLA-", "Debian", "https://security-tracker.debian.org/tracker/"),
    ("DEBIAN-", "Debian", "https://security-tracker.debian.org/tracker/"),
)


def _source(vuln_id: str) -> tuple[str, str]:
    for prefix, name, url in _SOURCES:
        if vuln_id.startswith(prefix):
            return name, url + vuln_id.removeprefix("DEBIAN-")
    return "OSV", OSV_URL + vuln_id


def _number(value: Decimal | None) -> float | None:
    return float(value) if value is not None else None


def finding_json(finding: Finding, failed: bool) -> dict[str, Any]:
    """One finding in `--json`."""
    target = finding.target
    return {
        "aliases": list(finding.aliases),
        "analysis": None
        if finding.analysis is None
        else {
            "detail": finding.analysis.detail,
            "justification": finding.analysis.justification,
            "state": finding.analysis.state,
        },
        "bom_ref": target.bom_ref,
        "ecosystem": finding.ecosystem,
        "failed": failed,
        "fixed": finding.fixed,
        "id": finding.id,
        "image": target.image,
        "image_ref": target.image_ref,
        "installed": target.version,
        "package": target.name,
        "purl": target.purl,
        "records": list(finding.records),
        "score": _number(finding.score),
        "severity": finding.severity,
        "source_package": target.source,
        "source_version": target.source_version,
        "summary": finding.summary,
    }


def as_json(
    snapshot: Snapshot,
    findings: Sequence[Finding],
    failing: Sequence[Finding],
    stale: Sequence[Triage],
    notes: Sequence[str],
) -> dict[str, Any]:
    """The whole audit as stable JSON (no time of day in it: the snapshot's age goes to stderr)."""
    failed = {id(f) for f in failing}
    return {
        "findings": [finding_json(f, id(f) in failed) for f in findings],
        "notes": list(notes),
        "snapshot": snapshot.to_json(),
        "stale_triage": [t.to_json() for t in stale],
        "summary": {
            "failed": len(failing),
            "findings": len(findings),
            "suppressed": sum(1 for f in findings if f.analysis is not None and f.analysis.suppresses),
        },
    }


def vulnerability_model(finding: Finding) -> Any:
    """The cyclonedx-python-lib model of one finding (`vulnerabilities` writes the same JSON faster)."""
    from cyclonedx.model import Property, XsUri
    from cyclonedx.model.impact_analysis import (
        ImpactAnalysisAffectedStatus,
        ImpactAnalysisJustification,
        ImpactAnalysisState,
    )
    from cyclonedx.model.vulnerability import (
        BomTarget,
        BomTargetVersionRange,
        Vulnerability,
        VulnerabilityAdvisory,
        VulnerabilityAnalysis,
    )

    analysis = None
    if finding.analysis is not None:
        analysis = VulnerabilityAnalysis(
            state=ImpactAnalysisState(finding.analysis.state),
            justification=ImpactAnalysisJustification(finding.analysis.justification)
            if finding.analysis.justification
            else None,
            detail=finding.analysis.detail,
        )
    return Vulnerability(
        bom_ref=_bom_ref(finding),
        id=finding.id,
        source=_source_model(finding.id),
        references=_reference_models(finding.aliases),
        ratings=_rating_models(finding.ratings, finding.records[0]),
        description=finding.summary or None,
        recommendation=_recommendation(finding),
        advisories=[VulnerabilityAdvisory(url=XsUri(u)) for u in finding.references if _is_uri(u)],
        analysis=analysis,
        affects=[
            BomTarget(
                ref=finding.target.bom_ref,
                versions=[
                    BomTargetVersionRange(
                        version=finding.target.version, status=ImpactAnalysisAffectedStatus.AFFECTED
                    )
                ],
            )
        ],
        properties=[Property(name=name, value=value) for name, value in _properties(finding)],
    )


def _bom_ref(finding: Finding) -> str:
    return f"vulnerability:{finding.id}@{finding.target.bom_ref}"


def _recommendation(finding: Finding) -> str | None:
    return f"upgrade {finding.target.name} to {finding.fixed} or later" if finding.fixed else None


def _properties(finding: Finding) -> list[tuple[str, str]]:
    found = [(f"{PROPERTY}:osv-record", r) for r in finding.records]
    found.append((f"{PROPERTY}:ecosystem", finding.ecosystem))
    if finding.fixed is not None:
        found.append((f"{PROPERTY}:fixed-version", finding.fixed))
    return sorted(found)


def _source_model(vuln_id: str) -> Any:
    from cyclonedx.model import XsUri
    from cyclonedx.model.vulnerability import VulnerabilitySource

    name, url = _source(vuln_id)
    return VulnerabilitySource(name=name, url=XsUri(url))


def _reference_models(aliases: tuple[str, ...]) -> list[Any]:
    from cyclonedx.model.vulnerability import VulnerabilityReference

    return [VulnerabilityReference(id=alias, source=_source_model(alias)) for alias in aliases]


def _rating_models(ratings: tuple[Rating, ...], record: str) -> list[Any]:
    from cyclonedx.model import XsUri
    from cyclonedx.model.vulnerability import (
        VulnerabilityRating,
        VulnerabilityScoreSource,
        VulnerabilitySeverity,
        VulnerabilitySource,
    )

    osv = VulnerabilitySource(name="OSV", url=XsUri(OSV_URL + record))
    return [
        VulnerabilityRating(
            source=osv,
            score=r.score,
            severity=VulnerabilitySeverity(r.severity),
            method=VulnerabilityScoreSource(r.method),
            vector=r.vector,
        )
        for r in ratings
    ] or [VulnerabilityRating(source=osv, severity=VulnerabilitySeverity.UNKNOWN)]


def _library_json(model: Any) -> Any:
    from cyclonedx.schema.schema import SchemaVersion1Dot6

    return json.loads(model.as_json(view_=SchemaVersion1Dot6))


@lru_cache(maxsize=1 << 12)
def _ratings_json(ratings: tuple[Rating, ...]) -> list[dict[str, Any]]:
    """The `ratings` JSON the library writes (its vector forms, its order), its source's URL left out:
    made once per set of ratings, the URL (the OSV record) filled in per finding."""
    from cyclonedx.model.vulnerability import Vulnerability

    doc = _library_json(Vulnerability(ratings=_rating_models(ratings, "")))
    return list(doc["ratings"])


def _source_json(vuln_id: str) -> dict[str, str]:
    name, url = _source(vuln_id)
    return {"name": name, "url": url}


def vulnerability_json(finding: Finding) -> dict[str, Any]:
    """One finding as CycloneDX 1.6 JSON: what cyclonedx-python-lib writes for `vulnerability_model`
    (the test compares them); the ratings made by the library once per set of ratings."""
    osv_source = {"name": "OSV", "url": OSV_URL + finding.records[0]}
    doc: dict[str, Any] = {}
    advisories = sorted({u for u in finding.references if _is_uri(u)})
    if advisories:
        doc["advisories"] = [{"url": u} for u in advisories]
    doc["affects"] = [
        {
            "ref": finding.target.bom_ref,
            "versions": [{"status": "affected", "version": finding.target.version}],
        }
    ]
    if finding.analysis is not None:
        analysis = {
            "detail": finding.analysis.detail,
            "justification": finding.analysis.justification,
            "state": finding.analysis.state,
        }
        doc["analysis"] = {k: v for k, v in analysis.items() if v is not None}
    doc["bom-ref"] = _bom_ref(finding)
    if finding.summary:
        doc["description"] = finding.summary
    doc["id"] = finding.id
    doc["properties"] = [{"name": n, "value": v} for n, v in _properties(finding)]
    doc["ratings"] = [{**r, "source": osv_source} for r in _ratings_json(finding.ratings)]
    recommendation = _recommendation(finding)
    if recommendation:
        doc["recommendation"] = recommendation
    if finding.aliases:
        doc["references"] = [{"id": a, "source": _source_json(a)} for a in finding.aliases]
    doc["source"] = _source_json(finding.id)
    return doc


def vulnerabilities(findings: Sequence[Finding]) -> list[dict[str, Any]]:
    """CycloneDX 1.6 `vulnerabilities[]`: one per finding (a vulnerability of one package in one image)."""
    return [vulnerability_json(f) for f in findings]


def library_vulnerabilities(findings: Sequence[Finding]) -> list[dict[str, Any]]:
    """`vulnerabilities`, every finding written by cyclonedx-python-lib (the reference for the test)."""
    return [_library_json(vulnerability_model(f)) for f in findings]


def _is_uri(text: str) -> bool:
    return text.startswith(("https://", "http://"))


def snapshot_properties(snapshot: Snapshot) -> list[dict[str, str]]:
    """`metadata.properties` naming the snapshot an audit used (id, newest record, each source)."""
    props = [
        {"name": f"{PROPERTY}:vulndb-snapshot", "value": snapshot.id},
        {"name": f"{PROPERTY}:vulndb-newest-modified", "value": snapshot.newest or ""},
        {"name": f"{PROPERTY}:vulndb-records", "value": str(snapshot.records)},
    ]
    props += [
        {"name": f"{PROPERTY}:vulndb-source", "value": f"{s.name} sha256:{s.sha256} records={s.records}"}
        for s in snapshot.sources
    ]
    return props


def add_to_sbom(doc: dict[str, Any], snapshot: Snapshot, findings: Sequence[Finding]) -> dict[str, Any]:
    """The SBOM document with the findings as `vulnerabilities[]` and the snapshot in its metadata."""
    metadata = doc.setdefault("metadata", {})
    ours = {p["name"] for p in snapshot_properties(snapshot)}
    kept = [p for p in metadata.get("properties", []) if p.get("name") not in ours]
    metadata["properties"] = sorted(
        [*kept, *snapshot_properties(snapshot)], key=lambda p: (p["name"], p["value"])
    )
    doc["vulnerabilities"] = vulnerabilities(findings)
    return doc
