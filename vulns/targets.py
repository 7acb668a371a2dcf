"""The packages inside the images, as the audit sees them: from a CycloneDX SBOM made by
`container-lock sbom`, or from build manifests (the same bom-refs the SBOM would give them)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote

PROPERTY = "container-lock"


class TargetError(ValueError):
    """An input that is neither a CycloneDX SBOM nor a build manifest; the text names the file."""


@dataclass(frozen=True)
class Target:
    """One package component inside one image component."""

    image_ref: str  # the image component's bom-ref
    image: str  # reference:tag (platform)
    bom_ref: str  # the package component's bom-ref
    purl: str
    type: str
    name: str
    version: str
    source: str | None
    source_version: str | None  # deb: the source's version where the binary's differs
    distro: str | None
    epoch: str | None


def _walk(components: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for component in components:
        yield component
        yield from _walk(component.get("components") or ())


def _property(component: dict[str, Any], name: str) -> str | None:
    for prop in component.get("properties") or ():
        if prop.get("name") == f"{PROPERTY}:{name}":
            return prop.get("value")
    return None


def _purl_parts(purl: str, where: str, component: dict[str, Any]) -> tuple[str, dict[str, str]]:
    """A purl's type and qualifiers (purl-spec: `pkg:type/…@version?key=value&…#subpath`)."""
    scheme, _, rest = purl.partition(":")
    purl_type = rest.lstrip("/").split("/", 1)[0].lower()
    if scheme != "pkg" or not purl_type or "/" not in rest.lstrip("/"):
        raise TargetError(f"{where}: component {component.get('bom-ref')}: not a package URL: {purl!r}")
    query = rest.split("#", 1)[0].partition("?")[2]
    return purl_type, {k.lower(): unquote(v) for k, v in parse_qsl(query, keep_blank_values=True)}


def of_sbom(doc: dict[str, Any], where: str = "SBOM") -> list[Target]:
    """The package components nested in the image (`container`) components of a CycloneDX document."""
    found = []
    for image in _walk(doc.get("components") or ()):
        if image.get("type") != "container":
            continue
        platform = _property(image, "platform")
        label = f"{image.get('name')}:{image.get('version')}" + (f" ({platform})" if platform else "")
        for component in image.get("components") or ():
            if component.get("type") != "library" or not component.get("purl"):
                continue
            purl_type, qualifiers = _purl_parts(component["purl"], where, component)
            found.append(
                Target(
                    image_ref=str(image.get("bom-ref")),
                    image=label,
                    bom_ref=str(component.get("bom-ref")),
                    purl=component["purl"],
                    type=purl_type,
                    name=str(component.get("name") or ""),
                    version=str(component.get("version") or ""),
                    source=_property(component, "source-package"),
                    source_version=_property(component, "source-version"),
                    distro=qualifiers.get("distro"),
                    epoch=qualifiers.get("epoch"),
                )
            )
    return found


def of_manifests(paths: Iterable[Path]) -> list[Target]:
    """The packages the build manifests' inventories list, with the bom-refs `container-lock sbom` gives."""
    from sbom import manifests
    from sbom.document import inventory_json
    from sbom.purl import oci_purl, platform_arch

    found = []
    seen: set[str] = set()
    for path in paths:
        try:
            manifest = manifests.load(path, "an SBOM `container-lock sbom` wrote or a build manifest")
        except manifests.BuildManifestError as err:
            raise TargetError(str(err)) from None
        for image in manifest.images:
            ref = oci_purl(
                image.reference, image.manifest, image.tag, platform_arch(image.platform)
            ).to_string()
            if ref in seen:
                continue
            seen.add(ref)
            container = {
                "type": "container",
                "bom-ref": ref,
                "name": image.reference,
                "version": image.tag,
                "properties": [{"name": f"{PROPERTY}:platform", "value": image.platform}],
                "components": inventory_json(image, ref),
            }
            found += of_sbom({"components": [container]}, str(path))
    return found


def load(paths: Iterable[Path]) -> tuple[list[Target], dict[str, Any] | None]:
    """The targets of SBOMs and build manifests, and the SBOM document when exactly one SBOM was given."""
    targets: list[Target] = []
    manifest_paths: list[Path] = []
    sboms: list[dict[str, Any]] = []
    for path in paths:
        if path.is_dir():
            raise TargetError(f"{path}: is a directory; give an SBOM or build manifest file")
        try:
            doc = json.loads(path.read_text())
        except FileNotFoundError:
            raise TargetError(f"{path}: no such file") from None
        except UnicodeDecodeError:
            raise TargetError(f"{path}: not UTF-8 text, so not an SBOM or build manifest") from None
        except json.JSONDecodeError as err:
            raise TargetError(f"{path}:{err.lineno}: not valid JSON ({err.msg})") from None
        except OSError as err:
            raise TargetError(f"{path}: cannot be read ({err.strerror or err})") from None
        if isinstance(doc, dict) and doc.get("bomFormat") == "CycloneDX":
            targets += of_sbom(doc, str(path))
            sboms.append(doc)
        else:
            manifest_paths.append(path)
    targets += of_manifests(manifest_paths)
    unique = {(t.image_ref, t.bom_ref): t for t in targets}
    return [unique[k] for k in sorted(unique)], sboms[0] if len(sboms) == 1 and not manifest_paths else None
