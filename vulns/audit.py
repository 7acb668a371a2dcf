"""One audit: the index, the packages of SBOMs or build manifests, the team's triage, the gate."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sbom.memory import no_cycle_collection

from . import findings as finding_module
from . import report, targets, vex
from .db import Index, Snapshot
from .findings import Finding
from .gate import Gate
from .vex import Triage


class SbomOutputError(ValueError):
    """The SBOM with the findings could not be made or would not be valid; nothing was written."""


@dataclass
class Result:
    """What an audit found and how it ends."""

    snapshot: Snapshot
    findings: list[Finding]
    failing: list[Finding]
    stale: list[Triage]
    notes: list[str]
    document: dict[str, Any] | None  # the one SBOM given, when exactly one was
    packages: int = 0  # the packages inside images that were audited (0: nothing was)

    def to_json(self) -> dict[str, Any]:
        return report.as_json(self.snapshot, self.findings, self.failing, self.stale, self.notes)


def run(
    db_path: Path,
    inputs: Sequence[Path] = (),
    vex_paths: Sequence[Path] = (),
    gate: Gate | None = None,
    document: dict[str, Any] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Result:
    """Audit the packages of `inputs` (SBOMs, build manifests) or of `document` against the index.

    Raises DbError, TargetError, VexError for inputs that cannot be used.
    """
    triage = [entry for path in vex_paths for entry in vex.load(path)]
    index = Index(db_path)
    try:
        if document is not None:
            found_targets, sbom = targets.of_sbom(document), document
        else:
            found_targets, sbom = targets.load(inputs)
        found, notes = finding_module.audit(index, found_targets, progress)
    finally:
        index.close()
    found, stale = vex.apply(found, triage)
    failing = (gate or Gate()).failing(found)
    return Result(index.snapshot, found, failing, stale, notes, sbom, len(found_targets))


def sbom_text(result: Result, doc: dict[str, Any], validated: bool = False) -> str:
    """`doc` (a CycloneDX 1.6 JSON SBOM of the images) with the findings, validated, as text.

    `validated`: `doc` was valid before (`container-lock sbom` made it): only what is added
    (metadata, vulnerabilities) is checked again; the schema checks top-level fields apart.
    """
    from sbom import schema
    from sbom.output import dumps

    with no_cycle_collection():
        report.add_to_sbom(doc, result.snapshot, result.findings)
        if validated:
            fields = ("bomFormat", "specVersion", "metadata", "vulnerabilities")
            error = schema.validate({k: doc[k] for k in fields if k in doc})
        else:
            error = schema.validate(doc)
    if error is not None:
        raise SbomOutputError(
            f"the document does not validate against CycloneDX 1.6: {error}; nothing written"
        )
    with no_cycle_collection():
        return dumps(doc) + "\n"


def with_findings(text: str, db_path: Path, vex_paths: Sequence[Path] = ()) -> str:
    """The SBOM text of `container-lock sbom` with the findings of the index at `db_path` added."""
    with no_cycle_collection():
        doc = json.loads(text)
        result = run(db_path, vex_paths=vex_paths, document=doc)
        return sbom_text(result, doc, validated=True)
