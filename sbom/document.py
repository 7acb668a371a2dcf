"""Build the CycloneDX 1.6 document of the embedded images with cyclonedx-python-lib."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from functools import cache
from typing import Any

from cyclonedx.model import ExternalReference, ExternalReferenceType, HashAlgorithm, HashType, Property, XsUri
from cyclonedx.model.bom import Bom, BomMetaData
from cyclonedx.model.component import Component, ComponentType
from cyclonedx.model.dependency import Dependency
from cyclonedx.model.tool import ToolRepository
from cyclonedx.schema.schema import SchemaVersion1Dot6
from packageurl import PackageURL

try:  # cyclonedx-python-lib moved it; the old location warns
    from cyclonedx.contrib.license.factories import LicenseFactory
except ImportError:  # pragma: no cover - releases before the move
    from cyclonedx.factory.license import LicenseFactory

from containerlock.contents.package_db import Package
from containerlock.lock.lockfile import Lock
from containerlock.lock.provenance import Facts
from containerlock.version import tool_version

from .manifests import ImageFacts, PackageManifest
from .purl import deb_purl, inventory_purl, oci_purl, platform_arch

PROPERTY = "container-lock"
# Image component properties (`container-lock:<name with dashes>`) ← ImageFacts fields.
IMAGE_PROPERTIES = {
    "platform": "platform",
    "image_id": "config",
    "pinned_digest": "digest",
    "package_file": "file",
    "archive_sha256": "file_sha256",
    "archive_size": "file_size",
    "archive_format": "archive_format",
    "compression": "compression",
}
SERIAL_NAMESPACE = uuid.UUID("6b0b6a43-8d1f-4d2a-9a54-3c1b2f4f6d10")
Progress = Callable[[int, int], None]
Edges = list[tuple[Component, list[Component]]]


@dataclass
class Document:
    """The document: the cyclonedx-python-lib model of images, layers and loader packages, and the
    packages inside each image (by image bom-ref), which `output` writes as JSON directly."""

    bom: Bom
    edges: Edges  # (loader package component, the image components it carries)
    inventories: dict[str, ImageFacts] = field(default_factory=dict)
    merged: bool = False  # into a foreign document (output then uses the library's normalisation)


def _sha(digest: str) -> list[HashType]:
    return [HashType(alg=HashAlgorithm.SHA_256, content=digest.split(":", 1)[1])]


def _props(**values: object) -> list[Property]:
    return [
        Property(name=f"{PROPERTY}:{k.replace('_', '-')}", value=str(v))
        for k, v in sorted(values.items())
        if v is not None
    ]


PACKAGE_REF = "#package:"  # between an image's bom-ref and a package's purl (layers: `#layer-<n>`)


def package_ref(image_ref: str, purl: str) -> str:
    """The bom-ref of a package inside an image: the image's bom-ref, `#package:`, the package's purl
    (earlier releases wrote `#pkg:` and the purl, `…#pkg:pkg:deb/…`; VEX naming those still applies)."""
    return f"{image_ref}{PACKAGE_REF}{purl}"


def inventory_components(image: ImageFacts, image_ref: str) -> list[Component]:
    """The packages inside an image (its build-time inventory), each with the layer that brought it."""
    if image.inventory is None:
        return []
    found = []
    for item in image.inventory.packages:
        package = item.package
        purl = inventory_purl(package, image.inventory.os)
        found.append(
            Component(
                type=ComponentType.LIBRARY,
                name=package.name,
                version=package.version,
                bom_ref=package_ref(image_ref, purl.to_string()),
                purl=purl,
                licenses=[LicenseFactory().make_from_string(package.license)] if package.license else None,
                properties=_props(
                    layer=item.layer,
                    database=item.database,
                    source_package=package.source,
                    source_version=package.source_version,
                ),
            )
        )
    return found


@cache
def _purl_text(package: Package, distro_id: str | None, version_id: str | None) -> str:
    """The purl of a package inside an image (images sharing a base share most of them)."""
    os = {k: v for k, v in (("ID", distro_id), ("VERSION_ID", version_id)) if v is not None}
    return inventory_purl(package, os).to_string()


@cache
def _license_json(text: str) -> list[dict[str, Any]]:
    """The `licenses` JSON cyclonedx-python-lib writes for a declared licence (id, expression or name)."""
    component = Component(
        type=ComponentType.LIBRARY, name="-", licenses=[LicenseFactory().make_from_string(text)]
    )
    return json.loads(component.as_json(view_=SchemaVersion1Dot6))["licenses"]  # type: ignore[attr-defined]


def inventory_json(image: ImageFacts, image_ref: str) -> list[dict[str, Any]]:
    """The packages inside an image as CycloneDX JSON components, exactly as cyclonedx-python-lib
    writes `inventory_components` (keys sorted, components in its order), built without its model.

    Two entries with the same bom-ref: an identical one is dropped (the model's set did the same),
    a different one gets a numbered bom-ref (`…#2`), so every bom-ref stays unique and stable.
    """
    if image.inventory is None:
        return []
    os = image.inventory.os
    distro_id, version_id = os.get("ID"), os.get("VERSION_ID")
    found = []
    for item in image.inventory.packages:
        package = item.package
        purl = _purl_text(package, distro_id, version_id)
        doc: dict[str, Any] = {"bom-ref": package_ref(image_ref, purl)}
        if package.license:
            doc["licenses"] = _license_json(package.license)
        doc["name"] = package.name
        props = [
            {"name": f"{PROPERTY}:{name}", "value": str(value)}
            for name, value in (
                ("database", item.database),
                ("layer", item.layer),
                ("source-package", package.source),
                ("source-version", package.source_version),
            )
            if value is not None
        ]
        if props:
            doc["properties"] = props
        doc["purl"] = purl
        doc["type"] = "library"
        doc["version"] = package.version
        found.append(doc)
    found.sort(key=lambda d: (d["name"], d["version"], d["bom-ref"]))
    unique: list[dict[str, Any]] = []
    seen: dict[str, list[dict[str, Any]]] = {}
    for doc in found:
        same = seen.setdefault(doc["bom-ref"], [])
        if doc in same:
            continue
        same.append(doc)
        if len(same) > 1:
            doc["bom-ref"] = f"{doc['bom-ref']}#{len(same)}"
        unique.append(doc)
    return unique


def image_component(
    image: ImageFacts, package: PackageManifest, lock: Lock | None, with_inventory: bool = True
) -> Component:
    """One embedded image for one platform, with its layers as nested file components."""
    purl = oci_purl(image.reference, image.manifest, image.tag, platform_arch(image.platform))
    layers = [
        Component(
            type=ComponentType.FILE,
            name=layer.digest,
            bom_ref=f"{purl.to_string()}#layer-{n}",
            hashes=_sha(layer.digest),
            properties=_props(size=layer.size, media_type=layer.media_type),
        )
        for n, layer in enumerate(image.layers)
    ]
    extra = {}
    attestations: list[ExternalReference] = []
    if lock is not None and (entry := lock.get(f"{image.reference}:{image.tag}")):
        extra["locked_digest"] = entry.digest
        if entry.digest == image.digest:
            facts = provenance_of(entry.provenance, image)
            if facts is not None:
                extra.update(
                    provenance_builder=facts.builder_id,
                    provenance_build_type=facts.build_type or None,
                    provenance_source=facts.source_uri or None,
                    provenance_source_digest=facts.source_digest or None,
                    provenance_predicate_type=facts.predicate_type,
                    provenance_subject=facts.digest,
                )
                attestations.append(
                    ExternalReference(
                        type=ExternalReferenceType.ATTESTATION,
                        url=XsUri(f"oci://{image.reference}@{facts.attestation}"),
                        comment=f"SLSA provenance ({facts.predicate_type}) verified by container-lock verify",
                        hashes=_sha(facts.attestation),
                    )
                )
    if image.inventory is not None:
        extra["os"] = image.inventory.os.get("PRETTY_NAME") or image.inventory.os.get("ID")
        extra["inventory_notes"] = "; ".join(image.inventory.notes) or None
    component = _container(
        image,
        purl,
        image.manifest,
        [*layers, *(inventory_components(image, purl.to_string()) if with_inventory else [])],
        _props(
            **{name: getattr(image, field) for name, field in IMAGE_PROPERTIES.items()},
            loader_engine=package.engine,
            **extra,
        ),
    )
    component.external_references.update(attestations)
    return component


def provenance_of(recorded: Iterable[Mapping[str, str]], image: ImageFacts) -> Facts | None:
    """The recorded provenance about this platform image (its manifest), else about the pin."""
    facts = [Facts.from_json(raw) for raw in recorded]
    for digest in (image.manifest, image.digest):
        found = sorted((f for f in facts if f.digest == digest), key=lambda f: f.attestation)
        if found:
            return found[0]
    return None


def index_component(image: ImageFacts, variants: Sequence[Component]) -> Component:
    """The multi-arch index an image was pinned by, with the embedded platform images nested in it."""
    purl = oci_purl(image.reference, image.digest, image.tag)
    return _container(image, purl, image.digest, variants, _props(kind="image-index"))


def _container(
    image: ImageFacts, purl: PackageURL, digest: str, children: Sequence[Component], props: list[Property]
) -> Component:
    """A `container` component named by the image reference and tag, identified by `digest`."""
    return Component(
        type=ComponentType.CONTAINER,
        name=image.reference,
        version=image.tag,
        bom_ref=purl.to_string(),
        purl=purl,
        hashes=_sha(digest),
        components=children,
        properties=props,
    )


def package_component(package: PackageManifest) -> Component:
    """The loader .deb that carries the images."""
    purl = deb_purl(package.name, package.version, package.arch)
    return Component(
        type=ComponentType.APPLICATION,
        name=package.name,
        version=package.version or None,
        bom_ref=purl.to_string(),
        purl=purl,
        properties=_props(loader_engine=package.engine),
    )


@cache
def _field_names(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in fields(cls))


def _plain(value: Any) -> Any:
    """`dataclasses.asdict` for the manifests (the same JSON), without its deep copies."""
    if hasattr(type(value), "__dataclass_fields__"):
        return {name: _plain(getattr(value, name)) for name in _field_names(type(value))}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def serial_number(manifests: Sequence[PackageManifest], lock: Lock | None) -> uuid.UUID:
    """A serial number derived from the content: the same inputs give the same document."""
    # sha256 of `json.dumps([_plain(m) for m in manifests], sort_keys=True)` + the lock's text,
    # fed a manifest at a time (the whole text and its copy as dicts were ~0.5 GB at 1 000 images).
    content = hashlib.sha256(b"[")
    for n, manifest in enumerate(manifests):
        content.update((", " if n else "").encode() + json.dumps(_plain(manifest), sort_keys=True).encode())
    content.update(b"]")
    if lock:
        content.update(lock.dumps())
    return uuid.uuid5(SERIAL_NAMESPACE, content.hexdigest())


def timestamp(manifests: Sequence[PackageManifest], source_date_epoch: int | None) -> datetime:
    """SOURCE_DATE_EPOCH (given, else the newest of the manifests'), as UTC."""
    epoch = (
        source_date_epoch if source_date_epoch is not None else max(m.source_date_epoch for m in manifests)
    )
    return datetime.fromtimestamp(epoch, tz=UTC)


def build(
    manifests: Sequence[PackageManifest],
    lock: Lock | None = None,
    source_date_epoch: int | None = None,
    inventory_model: bool = False,
    progress: Callable[[int], None] | None = None,
) -> Document:
    """The document. The packages inside the images go into the model only with `inventory_model`
    (for XML); otherwise `output` writes them as JSON (the model is not linear in their number).

    `progress(n)` is called after each image with the number of images done.
    """
    manifests = sorted(manifests, key=lambda m: (m.name, m.arch, m.version))
    images: dict[str, Component] = {}
    facts: dict[str, ImageFacts] = {}
    index_variants: dict[str, dict[str, Component]] = {}
    index_facts: dict[str, ImageFacts] = {}
    edges: Edges = []
    done = 0
    for package in manifests:
        carried = []
        for image in package.images:
            component = image_component(image, package, lock, with_inventory=inventory_model)
            ref = str(component.bom_ref)
            component = images.setdefault(ref, component)
            facts.setdefault(ref, image)
            carried.append(component)
            if image.from_index:
                key = oci_purl(image.reference, image.digest, image.tag).to_string()
                index_variants.setdefault(key, {})[ref] = component
                index_facts[key] = image
            done += 1
            if progress is not None:
                progress(done)
        edges.append((package_component(package), carried))
    nested = {ref for variants in index_variants.values() for ref in variants}
    top = [c for ref, c in images.items() if ref not in nested]
    top += [index_component(index_facts[k], list(v.values())) for k, v in index_variants.items()]
    packages = [package for package, _ in edges]
    bom = Bom(
        serial_number=serial_number(manifests, lock),
        metadata=BomMetaData(
            timestamp=timestamp(manifests, source_date_epoch),
            tools=ToolRepository(
                components=[
                    Component(type=ComponentType.APPLICATION, name="container-lock", version=tool_version())
                ]
            ),
        ),
        components=[*top, *packages],
    )
    graph = Graph()
    for component in [*top, *packages]:
        graph.add(component)  # every top-level component has an entry, as Bom.validate() would add
    for package, carried in edges:
        graph.add(package, carried)
    if inventory_model:
        for image in images.values():
            graph.add(image, [c for c in image.components if c.type is ComponentType.LIBRARY])
    bom.dependencies = graph.dependencies()
    inventories = {} if inventory_model else {r: f for r, f in facts.items() if f.inventory is not None}
    return Document(bom, edges, inventories)


class Graph:
    """The dependency graph by bom-ref value (the model's `register_dependency` searches a list per call)."""

    def __init__(self, existing: Iterable[Dependency] = ()) -> None:
        self._entries: dict[str, tuple[Any, dict[str, Any]]] = {}
        for dependency in existing:
            entry = self._entry(dependency.ref)
            for inner in dependency.dependencies:
                entry[1].setdefault(str(inner.ref), inner.ref)

    def _entry(self, ref: Any) -> tuple[Any, dict[str, Any]]:
        return self._entries.setdefault(str(ref), (ref, {}))

    def add(self, target: Component, depends_on: Iterable[Component] = ()) -> None:
        """`target` depends on `depends_on`; each of those gets an entry of its own too."""
        entry = self._entry(target.bom_ref)
        for other in depends_on:
            entry[1].setdefault(str(other.bom_ref), other.bom_ref)
            self._entry(other.bom_ref)

    def dependencies(self) -> list[Dependency]:
        return [
            Dependency(ref=ref, dependencies=[Dependency(ref=r) for r in inner.values()])
            for ref, inner in self._entries.values()
        ]


def model_json(bom: Bom) -> dict[str, Any]:
    """The model as cyclonedx-python-lib's JsonV1Dot6 writes it, without its normalisation passes.

    Those passes (Bom.validate, BomRefDiscriminator) compare every bom-ref with every other;
    `build` already gives every top-level component a dependency entry, every bom-ref is
    unique (checked in `output`) and the graph is flat.
    """
    doc = json.loads(bom.as_json(view_=SchemaVersion1Dot6))  # type: ignore[attr-defined]
    doc.update(
        {
            "$schema": "http://cyclonedx.org/schema/bom-1.6.schema.json",
            "bomFormat": "CycloneDX",
            "specVersion": "1.6",
        }
    )
    return doc


def image_components(components: Iterable[Component]) -> list[Component]:
    """Every image component (platform images, also those nested in an index component)."""
    found = []
    for component in components:
        if component.type is ComponentType.CONTAINER:
            found.append(component)
            found += image_components(component.components)
    return found
