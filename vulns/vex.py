"""The team's triage: CycloneDX VEX (vulnerabilities[] with analysis and affects) and OpenVEX JSON
(statements[] with status, justification, products). A triage entry names a vulnerability (any of
a finding's ids) and what it is about: a package component (its bom-ref or purl) or an image
component (its bom-ref: every package in it; OpenVEX subcomponents narrow that down)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packageurl import PackageURL

from .findings import Analysis, Finding

# OpenVEX status / justification → CycloneDX analysis state / justification.
OPENVEX_STATES = {
    "not_affected": "not_affected",
    "fixed": "resolved",
    "affected": "exploitable",
    "under_investigation": "in_triage",
}
OPENVEX_JUSTIFICATIONS = {
    "component_not_present": "code_not_present",
    "vulnerable_code_not_present": "code_not_present",
    "vulnerable_code_not_in_execute_path": "code_not_reachable",
    "vulnerable_code_cannot_be_controlled_by_adversary": "requires_environment",
    "inline_mitigations_already_exist": "protected_by_mitigating_control",
}
CDX_STATES = {
    "resolved",
    "resolved_with_pedigree",
    "exploitable",
    "in_triage",
    "false_positive",
    "not_affected",
}
CDX_JUSTIFICATIONS = {
    "code_not_present",
    "code_not_reachable",
    "requires_configuration",
    "requires_dependency",
    "requires_environment",
    "protected_by_compiler",
    "protected_at_runtime",
    "protected_at_perimeter",
    "protected_by_mitigating_control",
}


class VexError(ValueError):
    """A VEX document that cannot be used; the text names the file and the entry."""


@dataclass(frozen=True)
class Product:
    """What a triage entry is about: a bom-ref or purl, and (OpenVEX) the subcomponents it narrows to."""

    ref: str
    subcomponents: tuple[str, ...] = ()


@dataclass(frozen=True)
class Triage:
    """One triage entry: the vulnerability, what it applies to (empty: everywhere), the analysis."""

    vulnerability: str
    products: tuple[Product, ...]
    analysis: Analysis
    where: str  # file and entry, for the stale list

    def to_json(self) -> dict[str, Any]:
        return {
            "products": sorted(p.ref for p in self.products),
            "source": self.where,
            "state": self.analysis.state,
            "vulnerability": self.vulnerability,
        }


def _bom_ref(ref: str) -> str:
    """A BOM-Link (`urn:cdx:<serial>/<version>#<bom-ref>`) as the bom-ref it names; a package's
    bom-ref in the form earlier releases wrote (`<image>#pkg:pkg:<type>/…`) as it is written now
    (`<image>#package:pkg:<type>/…`, `sbom.document.package_ref`)."""
    if ref.startswith("urn:cdx:") and "#" in ref:
        ref = ref.split("#", 1)[1]
    head, found, purl = ref.partition("#pkg:pkg:")
    return f"{head}#package:pkg:{purl}" if found else ref


def _purl_covers(product: str, purl: str) -> bool:
    """Does the purl `product` name the package `purl` (same type, namespace, name, version if given,
    and the product's qualifiers among the package's)?"""
    if product == purl:
        return True
    if not product.startswith("pkg:"):
        return False
    try:
        a, b = PackageURL.from_string(product), PackageURL.from_string(purl)
    except ValueError:
        return False
    qa = a.qualifiers if isinstance(a.qualifiers, dict) else {}
    qb = b.qualifiers if isinstance(b.qualifiers, dict) else {}
    return (
        (a.type, a.namespace, a.name) == (b.type, b.namespace, b.name)
        and (a.version is None or a.version == b.version)
        and all(qb.get(k) == v for k, v in qa.items())
    )


def _covers(product: Product, finding: Finding) -> bool:
    target = finding.target
    if product.ref in (target.bom_ref, target.image_ref) or _purl_covers(product.ref, target.purl):
        if product.ref == target.image_ref and product.subcomponents:
            return any(s == target.bom_ref or _purl_covers(s, target.purl) for s in product.subcomponents)
        return True
    return False


def applies(triage: Triage, finding: Finding) -> bool:
    """Is `triage` about `finding` (one of its ids, one of its products)?"""
    if triage.vulnerability not in finding.ids:
        return False
    return not triage.products or any(_covers(p, finding) for p in triage.products)


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise VexError(f"{where}: expected a non-empty string")
    return value


def _analysis(state: str, justification: str | None, detail: str | None, where: str) -> Analysis:
    if state not in CDX_STATES:
        raise VexError(f"{where}: state {state!r} is not one of {', '.join(sorted(CDX_STATES))}")
    if justification is not None and justification not in CDX_JUSTIFICATIONS:
        raise VexError(
            f"{where}: justification {justification!r} is not one of {', '.join(sorted(CDX_JUSTIFICATIONS))}"
        )
    if state == "not_affected" and not (justification or detail):
        raise VexError(f"{where}: not_affected needs a justification (or a detail saying why)")
    return Analysis(state, justification, detail, where.split(":", 1)[0])


def _cyclonedx(doc: dict[str, Any], name: str) -> list[Triage]:
    found = []
    vulnerabilities = doc.get("vulnerabilities") or []
    if not isinstance(vulnerabilities, list):
        raise VexError(f"{name}: vulnerabilities is not an array")
    for n, entry in enumerate(vulnerabilities):
        where = f"{name}: vulnerabilities[{n}]"
        if not isinstance(entry, dict):
            raise VexError(f"{where}: not an object")
        vulnerability = _text(entry.get("id"), f"{where}.id")
        analysis = entry.get("analysis")
        if not isinstance(analysis, dict):
            continue  # not a triage: a finding listed without analysis
        products = []
        for m, affect in enumerate(entry.get("affects") or []):
            ref = affect.get("ref") if isinstance(affect, dict) else None
            products.append(Product(_bom_ref(_text(ref, f"{where}.affects[{m}].ref"))))
        state = _text(analysis.get("state"), f"{where}.analysis.state")
        found.append(
            Triage(
                vulnerability,
                tuple(products),
                _analysis(
                    state, analysis.get("justification"), analysis.get("detail"), f"{where} ({vulnerability})"
                ),
                f"{name}: vulnerabilities[{n}]",
            )
        )
    return found


def _openvex_product(value: Any, where: str) -> Product:
    if isinstance(value, str):
        return Product(_bom_ref(value))
    if not isinstance(value, dict):
        raise VexError(f"{where}: a product is a string or an object with @id")
    ident = value.get("@id") or (value.get("identifiers") or {}).get("purl")
    subs = tuple(
        _bom_ref(
            _text(s.get("@id") or (s.get("identifiers") or {}).get("purl"), f"{where}.subcomponents")
            if isinstance(s, dict)
            else _text(s, f"{where}.subcomponents")
        )
        for s in value.get("subcomponents") or []
    )
    return Product(_bom_ref(_text(ident, f"{where}.@id")), subs)


def _openvex(doc: dict[str, Any], name: str) -> list[Triage]:
    found = []
    statements = doc.get("statements")
    if not isinstance(statements, list):
        raise VexError(f"{name}: an OpenVEX document without a statements array")
    for n, entry in enumerate(statements):
        where = f"{name}: statements[{n}]"
        if not isinstance(entry, dict):
            raise VexError(f"{where}: not an object")
        vuln = entry.get("vulnerability")
        vulnerability = _text(
            vuln.get("name") or vuln.get("@id") if isinstance(vuln, dict) else vuln, f"{where}.vulnerability"
        )
        status = _text(entry.get("status"), f"{where}.status")
        if status not in OPENVEX_STATES:
            raise VexError(f"{where}: status {status!r} is not one of {', '.join(OPENVEX_STATES)}")
        justification = entry.get("justification")
        if justification is not None and justification not in OPENVEX_JUSTIFICATIONS:
            raise VexError(f"{where}: justification {justification!r} is not OpenVEX's")
        products = tuple(
            _openvex_product(p, f"{where}.products[{m}]") for m, p in enumerate(entry.get("products") or [])
        )
        analysis = _analysis(
            OPENVEX_STATES[status],
            OPENVEX_JUSTIFICATIONS.get(justification) if justification else None,
            entry.get("impact_statement")
            or entry.get("status_notes")
            or (justification if justification else None),
            f"{where} ({vulnerability})",
        )
        found.append(Triage(vulnerability, products, analysis, where))
    return found


def load(path: Path) -> list[Triage]:
    """The triage entries of a CycloneDX VEX or OpenVEX JSON file; VexError naming the file if unusable."""
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise VexError(f"{path}: no such VEX file") from None
    except IsADirectoryError:
        raise VexError(f"{path}: is a directory; give a VEX file") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise VexError(f"{path}: not JSON ({err})") from None
    if not isinstance(doc, dict):
        raise VexError(f"{path}: neither CycloneDX VEX nor OpenVEX (the top level is not an object)")
    if doc.get("bomFormat") == "CycloneDX":
        return _cyclonedx(doc, path.name)
    if "statements" in doc or str(doc.get("@context", "")).startswith("https://openvex.dev"):
        return _openvex(doc, path.name)
    raise VexError(f"{path}: neither CycloneDX VEX (bomFormat) nor OpenVEX (@context, statements)")


def apply(findings: Sequence[Finding], triage: Iterable[Triage]) -> tuple[list[Finding], list[Triage]]:
    """The findings with their analysis (the first entry that applies, in file order) and the stale
    entries (applying to no finding)."""
    entries = list(triage)
    used: set[int] = set()
    result = []
    for finding in findings:
        for n, entry in enumerate(entries):
            if applies(entry, finding):
                used.add(n)
                if finding.analysis is None:
                    finding = finding.triaged(entry.analysis)
        result.append(finding)
    stale = [entry for n, entry in enumerate(entries) if n not in used]
    return result, stale
