"""Serialise, validate against the CycloneDX 1.6 schema, write atomically; merge into an image SBOM.

JSON: cyclonedx-python-lib writes the images, layers and loader packages; the packages
inside the images (the bulk: ~200 per image) are added as JSON in the same form
(`document.inventory_json`), and the document is validated by the compiled schema
(`schema`), so the time grows linearly with the number of packages. XML goes through
the model and its validator as a whole.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

# jsonschema checks the `iri`/`iri-reference` formats with rfc3987-syntax when it is
# installed, which compiles a grammar on import: 1-3 s of every `container-lock sbom`,
# for formats this tool's documents do not use. Without it those two format checks
# are skipped; the schema (structure, enums, patterns, uri formats) is still enforced.
sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[assignment]

from json.encoder import encode_basestring_ascii as _string  # noqa: E402  (C: what json.dumps uses)

from cyclonedx.model.bom import Bom  # noqa: E402
from cyclonedx.model.component import ComponentType  # noqa: E402
from cyclonedx.output.json import JsonV1Dot6  # noqa: E402
from cyclonedx.output.xml import XmlV1Dot6  # noqa: E402
from cyclonedx.schema import SchemaVersion  # noqa: E402
from cyclonedx.validation.xml import XmlValidator  # noqa: E402

from containerlock.files import atomic_write  # noqa: E402

from . import kind, schema  # noqa: E402
from .document import Document, Graph, image_components, inventory_json, model_json  # noqa: E402

Tick = Callable[[], None]


class SbomError(ValueError):
    """The SBOM could not be made or would not be valid; nothing was written."""


def render(document: Document, fmt: str = "json", tick: Tick | None = None) -> str:
    """The document as text, validated; SbomError (with the schema's reason) if invalid.

    `tick` is called after each image's packages are added and after each top-level
    component is validated (JSON).
    """
    if fmt == "json":
        doc = json_document(document, tick)
        error = schema.validate(doc, tick)
        text = None if error is not None else _dumps_consuming(doc)
    elif fmt == "xml":
        text = XmlV1Dot6(document.bom).output_as_string(indent=2) + "\n"
        error = XmlValidator(SchemaVersion.V1_6).validate_str(text)
    else:
        raise SbomError(f"format '{fmt}' is not json or xml")
    if error is not None or text is None:
        raise SbomError(f"the document does not validate against CycloneDX 1.6: {error}; nothing written")
    return text


def _dumps_consuming(doc: dict[str, Any]) -> str:
    """`dumps(doc) + "\\n"` for the document, freeing it as it goes: each element of its top-level arrays
    is turned into one string and dropped from `doc`, so the document and its text are not
    both held in full (nor the millions of small pieces `_dump` makes for the whole)."""
    pieces: list[str] = []
    separator = "{\n  "
    for key, value in doc.items():
        pieces.append(separator + _string(key) + ": ")
        separator = ",\n  "
        if isinstance(value, list) and value:
            item_separator = "[\n    "
            for n, item in enumerate(value):
                out = [item_separator]
                item_separator = ",\n    "
                _dump(item, "\n    ", out)
                value[n] = None
                pieces.append("".join(out))
            pieces.append("\n  ]")
        else:
            out = []
            _dump(value, "\n  ", out)
            pieces.append("".join(out))
    pieces.append("\n}\n" if doc else "{}\n")
    doc.clear()
    return "".join(pieces)


def dumps(value: Any) -> str:
    """`json.dumps(value, indent=2)`, the same text, faster (the standard library's C encoder
    does not indent; its Python one spends most of the SBOM's time in generators)."""
    out: list[str] = []
    _dump(value, "\n", out)
    return "".join(out)


def _dump(value: Any, newline: str, out: list[str]) -> None:
    if isinstance(value, str):
        out.append(_string(value))
    elif isinstance(value, dict):
        if not value:
            out.append("{}")
            return
        inner = newline + "  "
        separator = "{" + inner
        for key, item in value.items():
            out.append(separator + _string(key) + ": ")
            separator = "," + inner
            _dump(item, inner, out)
        out.append(newline + "}")
    elif isinstance(value, list):
        if not value:
            out.append("[]")
            return
        inner = newline + "  "
        separator = "[" + inner
        for item in value:
            out.append(separator)
            separator = "," + inner
            _dump(item, inner, out)
        out.append(newline + "]")
    else:
        out.append(json.dumps(value))  # numbers, true, false, null


def json_document(document: Document, tick: Tick | None = None) -> dict[str, Any]:
    """The JSON document: the model's, with each image's packages nested in it and depended on."""
    if document.merged:  # a foreign document: the library's normalisation (bom-refs, nested graphs)
        doc = json.loads(JsonV1Dot6(document.bom).output_as_string())
    else:
        doc = model_json(document.bom)
    containers = {c["bom-ref"]: c for c in _walk(doc.get("components", [])) if c.get("type") == "container"}
    dependencies = {d["ref"]: d for d in doc.get("dependencies", [])}
    for ref, image in document.inventories.items():
        inside = inventory_json(image, ref)
        if inside and ref in containers:
            container = containers[ref]
            container["components"] = [*container.get("components", []), *inside]  # "file" < "library"
            depends = set(dependencies.get(ref, {}).get("dependsOn", ())) | {c["bom-ref"] for c in inside}
            dependencies[ref] = {"dependsOn": sorted(depends), "ref": ref}
            for component in inside:
                dependencies.setdefault(component["bom-ref"], {"ref": component["bom-ref"]})
        if tick is not None:
            tick()
    doc["dependencies"] = [dependencies[ref] for ref in sorted(dependencies)]
    if not document.merged:
        _check_refs(doc)
    return doc


def _walk(components: list[dict[str, Any]]) -> Any:
    for component in components:
        yield component
        yield from _walk(component.get("components", []))


def _check_refs(doc: dict[str, Any]) -> None:
    """Every bom-ref once, every dependency naming a component (the checks the model's output makes)."""
    refs: set[str] = set()
    for component in _walk(doc.get("components", [])):
        ref = component.get("bom-ref")
        if ref in refs:
            raise SbomError(f"two components have the bom-ref {ref}; nothing written")
        refs.add(ref)
    for dependency in doc["dependencies"]:
        unknown = {dependency["ref"], *dependency.get("dependsOn", ())} - refs
        if unknown:
            raise SbomError(f"dependencies name components not in the document: {sorted(unknown)}")


def write(text: str, path: Path) -> None:
    """Write atomically (a reader sees the old file or the new one)."""
    atomic_write(path, text.encode())


def _find_package(bom: Bom, name: str) -> Any:
    for component in bom.components:
        purl = component.purl
        if (purl is not None and purl.type == "deb" and purl.name == name) or (
            purl is None and component.name == name
        ):
            return component
    return None


def merge(image_sbom: Path, ours: Document) -> Document:
    """Add our image components and package → image dependencies into an existing image SBOM.

    A loader package already listed there (e.g. by Isar's debsbom) gets the
    dependencies; a missing one is added.
    """
    try:
        doc = json.loads(image_sbom.read_text())
    except (OSError, ValueError) as err:
        raise SbomError(f"{image_sbom}: not a CycloneDX JSON document this tool can read ({err})") from None
    if kind.kind(doc) != kind.CYCLONEDX:  # the library would drop it silently (or fail on an array)
        raise SbomError(
            f"{image_sbom}: this is {kind.describe(doc)}, not a CycloneDX JSON document; --merge adds the "
            "images to a CycloneDX SBOM (e.g. Isar's debsbom output)"
        )
    try:
        target = Bom.from_json(doc)  # type: ignore[attr-defined]
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise SbomError(f"{image_sbom}: not a CycloneDX JSON document this tool can read ({err})") from None
    known = {str(c.bom_ref) for c in target.components}
    for component in ours.bom.components:
        if component.purl is not None and component.purl.type == "deb":
            continue
        if str(component.bom_ref) not in known:
            target.components.add(component)
    graph = Graph(target.dependencies)
    for package, carried in ours.edges:
        existing = _find_package(target, package.name)
        if existing is None:
            target.components.add(package)
            existing = package
        graph.add(existing, carried)
    for image in image_components(ours.bom.components):
        inside = [c for c in image.components if c.type is ComponentType.LIBRARY]
        if inside:
            graph.add(image, inside)
    target.dependencies = graph.dependencies()
    return Document(target, ours.edges, ours.inventories, merged=True)
