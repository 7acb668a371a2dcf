"""Serialise, validate against the CycloneDX 1.6 schema, write atomically; merge into an image SBOM."""

from __future__ import annotations

import json
import sys
from pathlib import Path

# jsonschema checks the `iri`/`iri-reference` formats with rfc3987-syntax when it is
# installed, which compiles a grammar on import: 1-3 s of every `container-lock sbom`,
# for formats this tool's documents do not use. Without it those two format checks
# are skipped; the schema (structure, enums, patterns, uri formats) is still enforced.
sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[assignment]

from cyclonedx.model.bom import Bom  # noqa: E402
from cyclonedx.model.component import Component  # noqa: E402
from cyclonedx.output.json import JsonV1Dot6  # noqa: E402
from cyclonedx.output.xml import XmlV1Dot6  # noqa: E402
from cyclonedx.schema import SchemaVersion  # noqa: E402
from cyclonedx.validation.json import JsonStrictValidator  # noqa: E402
from cyclonedx.validation.xml import XmlValidator  # noqa: E402

from containerlock.files import atomic_write  # noqa: E402

from .document import image_components, register_inventories  # noqa: E402


class SbomError(ValueError):
    """The SBOM could not be made or would not be valid; nothing was written."""


def render(bom: Bom, fmt: str = "json") -> str:
    """The document as text, validated; SbomError (with the schema's reason) if invalid."""
    if fmt == "json":
        text = JsonV1Dot6(bom).output_as_string(indent=2) + "\n"
        error = JsonStrictValidator(SchemaVersion.V1_6).validate_str(text)
    elif fmt == "xml":
        text = XmlV1Dot6(bom).output_as_string(indent=2) + "\n"
        error = XmlValidator(SchemaVersion.V1_6).validate_str(text)
    else:
        raise SbomError(f"format '{fmt}' is not json or xml")
    if error is not None:
        raise SbomError(f"the document does not validate against CycloneDX 1.6: {error}; nothing written")
    return text


def write(text: str, path: Path) -> None:
    """Write atomically (a reader sees the old file or the new one)."""
    atomic_write(path, text.encode())


def _find_package(bom: Bom, name: str) -> Component | None:
    for component in bom.components:
        purl = component.purl
        if (purl is not None and purl.type == "deb" and purl.name == name) or (
            purl is None and component.name == name
        ):
            return component
    return None


def merge(image_sbom: Path, ours: Bom, edges: list[tuple[Component, list[Component]]]) -> Bom:
    """Add our image components and package → image dependencies into an existing image SBOM.

    A loader package already listed there (e.g. by Isar's debsbom) gets the
    dependencies; a missing one is added.
    """
    try:
        doc = json.loads(image_sbom.read_text())
        target = Bom.from_json(doc)  # type: ignore[attr-defined]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise SbomError(f"{image_sbom}: not a CycloneDX JSON document this tool can read ({err})") from None
    known = {str(c.bom_ref) for c in target.components}
    for component in ours.components:
        if component.purl is not None and component.purl.type == "deb":
            continue
        if str(component.bom_ref) not in known:
            target.components.add(component)
    for package, carried in edges:
        existing = _find_package(target, package.name)
        if existing is None:
            target.components.add(package)
            existing = package
        target.register_dependency(existing, carried)
    register_inventories(target, image_components(ours.components))
    return target
