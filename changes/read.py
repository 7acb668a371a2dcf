"""Read one side of a diff: a CycloneDX SBOM (`container-lock sbom`, audited or not), build
manifests or a deploy directory (turned into that SBOM first), or a lockfile (images only)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from sbom import kind
from sbom.memory import no_cycle_collection

from .release import Finding, Image, Layer, PackageKey, Release

PROPERTY = "container-lock"
SNAPSHOT_PROPERTY = f"{PROPERTY}:vulndb-snapshot"
LEVELS = ("none", "low", "medium", "high", "critical")
# A package component's bom-ref → its image, key and version.
Owners = dict[str, tuple[Image, PackageKey, str]]


class ReleaseInputError(ValueError):
    """OLD or NEW cannot be read as a release; the text names the file and says what to give."""


def load(path: Path) -> tuple[Release, dict[str, Any] | None]:
    """The release at `path` and, for SBOMs and build manifests, its CycloneDX document."""
    with no_cycle_collection():
        return _load(path)


def _load(path: Path) -> tuple[Release, dict[str, Any] | None]:
    if path.is_dir():
        return _from_manifests(path, deploy_dir=True)
    doc = _json(path)
    found = kind.kind(doc)
    if found == kind.CYCLONEDX:
        try:
            return of_sbom(doc, str(path)), doc
        except (AttributeError, TypeError, KeyError, ValueError) as err:
            if isinstance(err, ReleaseInputError):
                raise
            raise ReleaseInputError(
                f"{path}: a CycloneDX document container-lock cannot read ({type(err).__name__}: {err}); "
                "give the SBOM `container-lock sbom` wrote"
            ) from None
    if found == kind.LOCKFILE:
        return _of_lockfile(path), None
    if found == kind.BUILD_MANIFEST:
        return _from_manifests(path, deploy_dir=False)
    raise ReleaseInputError(
        f"{path}: {kind.describe(doc)}, not a CycloneDX SBOM made by `container-lock sbom`, a build manifest "
        "or a lockfile; give one of those (or a deploy directory)"
    )


def _json(path: Path) -> Any:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ReleaseInputError(f"{path}: no such file") from None
    except OSError as err:
        raise ReleaseInputError(f"{path}: cannot be read ({err.strerror or err})") from None
    if data.lstrip()[:1] == b"<":
        raise ReleaseInputError(
            f"{path}: an XML document; diff reads CycloneDX JSON: make it with "
            "`container-lock sbom … --format json`"
        )
    try:
        return json.loads(data)
    except UnicodeDecodeError:
        raise ReleaseInputError(
            f"{path}: not UTF-8 text, so not an SBOM, build manifest or lockfile"
        ) from None
    except json.JSONDecodeError as err:
        raise ReleaseInputError(f"{path}:{err.lineno}: not valid JSON ({err.msg})") from None


def _from_manifests(path: Path, deploy_dir: bool) -> tuple[Release, dict[str, Any]]:
    from sbom.generate import generate
    from sbom.manifests import BuildManifestError

    try:
        text = generate(deploy_dir=path) if deploy_dir else generate([path])
    except BuildManifestError as err:
        raise ReleaseInputError(str(err)) from None
    doc = json.loads(text)
    release = of_sbom(doc, str(path))
    release.kind = "build-manifests"
    return release, doc


def _of_lockfile(path: Path) -> Release:
    from containerlock.lock import lockfile

    try:
        lock = lockfile.load(path)
    except lockfile.LockfileError as err:
        raise ReleaseInputError(str(err)) from None
    images = []
    for key, entry in sorted(lock.entries.items()):
        reference, _, tag = key.rpartition(":")
        platforms = sorted(entry.platforms.items()) or [("", entry.digest)]
        images += [Image(reference, tag, platform, digest, entry.digest) for platform, digest in platforms]
    return Release(str(path), "lockfile", images)


def _walk(components: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for component in components:
        yield component
        yield from _walk(component.get("components") or ())


def _properties(component: dict[str, Any]) -> dict[str, str]:
    return {
        str(p.get("name")): str(p.get("value"))
        for p in component.get("properties") or ()
        if isinstance(p, dict)
    }


@lru_cache(maxsize=1 << 16)
def package_key(purl: str) -> tuple[PackageKey, str | None] | None:
    """`pkg:type/namespace/name@version?arch=…&epoch=…` → (its key, its epoch); None if not a purl."""
    scheme, _, rest = purl.partition(":")
    if scheme != "pkg":
        return None
    rest = rest.split("#", 1)[0]
    rest, _, query = rest.partition("?")
    path = rest.lstrip("/").rsplit("@", 1)[0]
    parts = [unquote(p) for p in path.split("/")]
    if len(parts) < 2 or not parts[0] or not parts[-1]:
        return None
    qualifiers = dict(q.split("=", 1) for q in query.split("&") if "=" in q) if query else {}
    ecosystem = "/".join([parts[0].lower(), *parts[1:-1]])
    epoch = qualifiers.get("epoch")
    return PackageKey(ecosystem, parts[-1], unquote(qualifiers.get("arch", ""))), epoch and unquote(epoch)


def _layer(component: dict[str, Any]) -> Layer:
    size = _properties(component).get(f"{PROPERTY}:size")
    return Layer(str(component.get("name")), int(size) if size and size.isdigit() else None)


def _image(component: dict[str, Any], props: dict[str, str], where: str, owners: Owners) -> Image:
    """The image component, its layers and packages; each package's bom-ref goes into `owners`."""
    hashes = component.get("hashes") or ()
    digest = next((f"sha256:{h['content']}" for h in hashes if h.get("alg") == "SHA-256"), "")
    image = Image(
        reference=str(component.get("name")),
        tag=str(component.get("version") or ""),
        platform=props[f"{PROPERTY}:platform"],
        digest=digest,
        pinned=props.get(f"{PROPERTY}:pinned-digest", digest),
        bom_ref=str(component.get("bom-ref")),
    )
    layers, packages = [], {}
    for child in component.get("components") or ():
        kind = child.get("type")
        if kind == "file":
            layers.append(_layer(child))
        elif kind == "library" and child.get("purl"):
            parsed = package_key(str(child["purl"]))
            if parsed is None:
                raise ReleaseInputError(
                    f"{where}: component {child.get('bom-ref')}: not a package URL: {child['purl']!r}"
                )
            key, epoch = parsed
            version = str(child.get("version") or "")
            owners[str(child.get("bom-ref"))] = (image, key, version)
            if epoch and not version.startswith(f"{epoch}:"):
                version = f"{epoch}:{version}"
            versions = packages.get(key)
            if versions is None:
                packages[key] = (version,)
            elif version not in versions:
                packages[key] = tuple(sorted((*versions, version)))
    image.layers = tuple(layers)
    image.packages = packages
    return image


def _severity(vulnerability: dict[str, Any]) -> str:
    found = [str(r.get("severity")) for r in vulnerability.get("ratings") or () if isinstance(r, dict)]
    known = [s for s in found if s in LEVELS]
    return max(known, key=LEVELS.index) if known else "unknown"


def of_sbom(doc: dict[str, Any], where: str) -> Release:
    """The images of a CycloneDX document made by `container-lock sbom` (merged into another or not)."""
    if not isinstance(doc.get("components", []), list):
        raise ReleaseInputError(f'{where}: "components" is not a list, so not a CycloneDX SBOM')
    images: dict[str, Image] = {}
    packages: Owners = {}
    for component in _walk(doc.get("components") or ()):
        if not isinstance(component, dict) or component.get("type") != "container":
            continue
        ref = str(component.get("bom-ref"))
        if ref in images:
            continue
        props = _properties(component)
        if f"{PROPERTY}:platform" not in props or props.get(f"{PROPERTY}:kind") == "image-index":
            continue
        images[ref] = _image(component, props, where, packages)
    if not images:
        raise ReleaseInputError(
            f"{where}: a CycloneDX document without container-lock image components; give the "
            "SBOM `container-lock sbom` wrote (or the build manifests)"
        )
    metadata = doc.get("metadata") or {}
    snapshot = next(
        (p.get("value") for p in metadata.get("properties") or () if p.get("name") == SNAPSHOT_PROPERTY),
        None,
    )
    release = Release(
        where,
        "sbom",
        sorted(images.values(), key=lambda i: i.key),
        audited=snapshot is not None or "vulnerabilities" in doc,
        snapshot=snapshot,
        spec=str(doc.get("specVersion")),
    )
    for vulnerability in doc.get("vulnerabilities") or ():
        _attach(vulnerability, packages, where)
    return release


def _reference_ids(vulnerability: dict[str, Any]) -> tuple[str, ...]:
    """The ids a CycloneDX vulnerability's `references` give (the aliases `audit` wrote)."""
    found = (r.get("id") for r in vulnerability.get("references") or () if isinstance(r, dict))
    return tuple(sorted({str(i) for i in found if i}))


def _attach(vulnerability: dict[str, Any], packages: Owners, where: str) -> None:
    """Add a CycloneDX vulnerability to the images whose packages it affects."""
    props = _properties(vulnerability)
    analysis = (vulnerability.get("analysis") or {}).get("state")
    for affected in vulnerability.get("affects") or ():
        owner = packages.get(str(affected.get("ref")))
        if owner is None:
            raise ReleaseInputError(
                f"{where}: vulnerability {vulnerability.get('id')} affects {affected.get('ref')!r}, "
                "which is no package inside an image of this SBOM"
            )
        image, key, version = owner
        image.findings.append(
            Finding(
                str(vulnerability.get("id")),
                key,
                version,
                _severity(vulnerability),
                props.get(f"{PROPERTY}:fixed-version"),
                analysis,
                _reference_ids(vulnerability),
            )
        )


def with_db_findings(release: Release, doc: dict[str, Any], db: Path, vex: Iterable[Path]) -> Release:
    """`release` with the findings of an audit against the index at `db` (the SBOM's own dropped)."""
    from vulns.audit import run

    result = run(db, vex_paths=list(vex), document=doc)
    by_ref = {image.bom_ref: image for image in release.images}
    for image in release.images:
        image.findings = []
    for found in result.findings:
        image = by_ref.get(found.target.image_ref)
        parsed = package_key(found.target.purl)
        if image is None or parsed is None:
            continue
        image.findings.append(
            Finding(
                found.id,
                parsed[0],
                found.target.version,
                found.severity,
                found.fixed,
                found.analysis.state if found.analysis else None,
                tuple(found.aliases),
            )
        )
    release.audited = True
    release.snapshot = result.snapshot.id
    return release


def image_of_inventory(
    reference: str,
    tag: str,
    platform: str,
    digest: str,
    pinned: str,
    layers: Iterable[Any],
    inventory: Any,
) -> Image:
    """An image read from a registry (`update --diff`): layer descriptors and its inventory,
    its packages keyed by the purls `container-lock sbom` gives them."""
    from sbom.purl import inventory_purl

    packages: dict[PackageKey, tuple[str, ...]] = {}
    for found in inventory.packages:
        parsed = package_key(inventory_purl(found.package, inventory.os).to_string())
        if parsed is None:
            continue
        key, epoch = parsed
        version = found.package.version
        if epoch and not version.startswith(f"{epoch}:"):
            version = f"{epoch}:{version}"
        packages[key] = tuple(sorted({*packages.get(key, ()), version}))
    return Image(
        reference,
        tag,
        platform,
        digest,
        pinned,
        tuple(Layer(layer.digest, layer.size) for layer in layers),
        packages,
    )
