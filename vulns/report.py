"""What an audit reports: stable JSON (`--json`) and CycloneDX 1.6 `vulnerabilities[]`
(cyclonedx-python-lib's models, written as the library writes them), each affecting the package
component's bom-ref inside its image component."""

from __future__ import annotations

import json
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from .db import Snapshot
from .findings import Finding
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


def vulnerabilities(findings: Sequence[Finding]) -> list[dict[str, Any]]:
    """CycloneDX 1.6 `vulnerabilities[]`: one per finding (a vulnerability of one package in one image)."""
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
        VulnerabilityRating,
        VulnerabilityReference,
        VulnerabilityScoreSource,
        VulnerabilitySeverity,
        VulnerabilitySource,
    )
    from cyclonedx.schema.schema import SchemaVersion1Dot6

    out = []
    for finding in findings:
        name, url = _source(finding.id)
        osv = VulnerabilitySource(name="OSV", url=XsUri(OSV_URL + finding.records[0]))
        ratings = [
            VulnerabilityRating(
                source=osv,
                score=r.score,
                severity=VulnerabilitySeverity(r.severity),
                method=VulnerabilityScoreSource(r.method),
                vector=r.vector,
            )
            for r in finding.ratings
        ] or [VulnerabilityRating(source=osv, severity=VulnerabilitySeverity.UNKNOWN)]
        references = []
        for alias in finding.aliases:
            alias_name, alias_url = _source(alias)
            references.append(
                VulnerabilityReference(
                    id=alias, source=VulnerabilitySource(name=alias_name, url=XsUri(alias_url))
                )
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
        properties = [Property(name=f"{PROPERTY}:osv-record", value=r) for r in finding.records]
        properties.append(Property(name=f"{PROPERTY}:ecosystem", value=finding.ecosystem))
        if finding.fixed is not None:
            properties.append(Property(name=f"{PROPERTY}:fixed-version", value=finding.fixed))
        vulnerability = Vulnerability(
            bom_ref=f"vulnerability:{finding.id}@{finding.target.bom_ref}",
            id=finding.id,
            source=VulnerabilitySource(name=name, url=XsUri(url)),
            references=references,
            ratings=ratings,
            description=finding.summary or None,
            recommendation=f"upgrade {finding.target.name} to {finding.fixed} or later"
            if finding.fixed
            else None,
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
            properties=properties,
        )
        out.append(json.loads(vulnerability.as_json(view_=SchemaVersion1Dot6)))  # type: ignore[attr-defined]
    return out


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
