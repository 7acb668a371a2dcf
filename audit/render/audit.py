"""`container-lock audit`'s output: a table of findings, the failing ones, stale triage, the snapshot."""

from __future__ import annotations

from vulns.audit import Result
from vulns.findings import Finding
from vulns.gate import Gate

from ..console import err, escape, out
from .tables import styled, table
from .vulndb import age

STYLES = {"critical": "bold red", "high": "red", "medium": "yellow", "low": "cyan", "unknown": "magenta"}


def _severity(finding: Finding) -> str:
    score = finding.score
    text = finding.severity + (f" {score}" if score is not None else "")
    return styled(escape(text), STYLES.get(finding.severity, ""))


def _state(finding: Finding, failed: bool) -> str:
    if finding.analysis is not None:
        justification = f" ({finding.analysis.justification})" if finding.analysis.justification else ""
        return escape(finding.analysis.state + justification)
    return styled("FAIL", "bold red") if failed else ""


def show(result: Result, gate: Gate) -> None:
    """The findings table (image, package, installed, fixed in, id + aliases, severity, triage)."""
    snap = result.snapshot
    failed = {id(f) for f in result.failing}
    grid = table(
        "image",
        "package",
        "installed",
        "fixed in",
        "id (aliases)",
        "severity",
        "triage",
        title="vulnerabilities",
    )
    for finding in result.findings:
        target = finding.target
        source = " ".join(p for p in (target.source, target.source_version) if p and p != target.name)
        package = target.name + (f" ({source})" if source else "")
        ids = finding.id + (f" ({', '.join(finding.aliases)})" if finding.aliases else "")
        grid.add_row(
            escape(target.image),
            escape(package),
            escape(f"{target.epoch}:{target.version}" if target.epoch else target.version),
            escape(finding.fixed or "no fix"),
            escape(ids),
            _severity(finding),
            _state(finding, id(finding) in failed),
        )
    if result.findings:
        out().print(grid)
    suppressed = sum(1 for f in result.findings if f.analysis is not None and f.analysis.suppresses)
    images = len({f.target.image_ref for f in result.findings})
    out().print(
        f"{len(result.findings)} findings in {images} images ({suppressed} triaged not affected); "
        f"snapshot {snap.id}, {snap.records} records, newest modified {snap.newest or '-'}"
    )
    for entry in result.stale:
        err().print(
            f"[yellow]stale triage:[/] {escape(entry.where)}: {escape(entry.vulnerability)} "
            f"({escape(', '.join(p.ref for p in entry.products) or 'any component')}) matches no finding"
        )
    if gate.fail_on is not None:
        if result.failing:
            err().print(
                f"[bold red]failed:[/] {len(result.failing)} findings at or above {gate.fail_on}"
                + (" or of unknown severity" if gate.fail_on_unknown else "")
                + (" (with a fix)" if gate.ignore_unfixed else "")
            )
        else:
            err().print(f"passed: no untriaged finding at or above {gate.fail_on}")


def notes(result: Result) -> None:
    """The snapshot's age and what could not be evaluated, on standard error."""
    err().print(f"vulnerability snapshot {escape(result.snapshot.id)}: {age(result.snapshot)}")
    for note in result.notes:
        err().print(f"[yellow]note:[/] {escape(note)}")
