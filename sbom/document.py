"""Build the CycloneDX 1.6 document of the embedded images with cyclonedx-python-lib."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import asdict
from datetime import UTC, datetime

from cyclonedx.factory.license import LicenseFactory
from cyclonedx.model import HashAlgorithm, HashType, Property
from cyclonedx.model.bom import Bom, BomMetaData
from cyclonedx.model.component import Component, ComponentType
from cyclonedx.model.tool import ToolRepository
from packageurl import PackageURL

from containerlock.lockfile import Lock
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


def _sha(digest: str) -> list[HashType]:
    return [HashType(alg=HashAlgorithm.SHA_256, content=digest.split(":", 1)[1])]


def _props(**values: object) -> list[Property]:
    return [
        Property(name=f"{PROPERTY}:{k.replace('_', '-')}", value=str(v))
        for k, v in sorted(values.items())
        if v is not None
    ]


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
                bom_ref=f"{image_ref}#pkg:{purl.to_string()}",
                purl=purl,
                licenses=[LicenseFactory().make_from_string(package.license)] if package.license else None,
                properties=_props(layer=item.layer, database=item.database, source_package=package.source),
            )
        )
    return found


def image_component(image: ImageFacts, package: PackageManifest, lock: Lock | None) -> Component:
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
    if lock is not None and (entry := lock.get(f"{image.reference}:{image.tag}")):
        extra["locked_digest"] = entry.digest
    if image.inventory is not None:
        extra["os"] = image.inventory.os.get("PRETTY_NAME") or image.inventory.os.get("ID")
        extra["inventory_notes"] = "; ".join(image.inventory.notes) or None
    return _container(
        image,
        purl,
        image.manifest,
        [*layers, *inventory_components(image, purl.to_string())],
        _props(
            **{name: getattr(image, field) for name, field in IMAGE_PROPERTIES.items()},
            loader_engine=package.engine,
            **extra,
        ),
    )


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


def serial_number(manifests: Sequence[PackageManifest], lock: Lock | None) -> uuid.UUID:
    """A serial number derived from the content: the same inputs give the same document."""
    content = json.dumps([asdict(m) for m in manifests], sort_keys=True)
    content += lock.dumps().decode() if lock else ""
    return uuid.uuid5(SERIAL_NAMESPACE, hashlib.sha256(content.encode()).hexdigest())


def timestamp(manifests: Sequence[PackageManifest], source_date_epoch: int | None) -> datetime:
    """SOURCE_DATE_EPOCH (given, else the newest of the manifests'), as UTC."""
    epoch = (
        source_date_epoch if source_date_epoch is not None else max(m.source_date_epoch for m in manifests)
    )
    return datetime.fromtimestamp(epoch, tz=UTC)


def build(
    manifests: Sequence[PackageManifest], lock: Lock | None = None, source_date_epoch: int | None = None
) -> tuple[Bom, list[tuple[Component, list[Component]]]]:
    """The document, and (package component, its image components) for merging."""
    manifests = sorted(manifests, key=lambda m: (m.name, m.arch, m.version))
    images: dict[str, Component] = {}
    index_variants: dict[str, dict[str, Component]] = {}
    index_facts: dict[str, ImageFacts] = {}
    edges: list[tuple[Component, list[Component]]] = []
    for package in manifests:
        carried = []
        for image in package.images:
            component = image_component(image, package, lock)
            component = images.setdefault(str(component.bom_ref), component)
            carried.append(component)
            if image.from_index:
                key = oci_purl(image.reference, image.digest, image.tag).to_string()
                index_variants.setdefault(key, {})[str(component.bom_ref)] = component
                index_facts[key] = image
        edges.append((package_component(package), carried))
    nested = {ref for variants in index_variants.values() for ref in variants}
    top = [c for ref, c in images.items() if ref not in nested]
    top += [index_component(index_facts[k], list(v.values())) for k, v in index_variants.items()]
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
        components=[*top, *(package for package, _ in edges)],
    )
    for package, carried in edges:
        bom.register_dependency(package, carried)
    register_inventories(bom, images.values())
    return bom, edges


def register_inventories(bom: Bom, images: Iterable[Component]) -> None:
    """Dependencies from each image component to the packages nested inside it."""
    for image in images:
        inside = [c for c in image.components if c.type is ComponentType.LIBRARY]
        if inside:
            bom.register_dependency(image, inside)


def image_components(components: Iterable[Component]) -> list[Component]:
    """Every image component (platform images, also those nested in an index component)."""
    found = []
    for component in components:
        if component.type is ComponentType.CONTAINER:
            found.append(component)
            found += image_components(component.components)
    return found
