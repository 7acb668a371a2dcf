"""Resolve a pinned image in the blob store to its platform manifest, without network."""

from __future__ import annotations

import json
from dataclasses import dataclass

from . import manifest as mf
from .platform import Platform, PlatformError, select_descriptor
from .store import BlobStore


@dataclass(frozen=True)
class ResolvedImage:
    """A pinned digest resolved to the manifest of one platform."""

    digest: str
    platform: Platform
    manifest_digest: str
    manifest_media_type: str
    manifest_size: int
    manifest: mf.ImageManifest


def platform_manifest_digest(raw: bytes, digest: str, platform: Platform) -> str:
    """The digest of `platform`'s manifest: from the index, or `digest` itself."""
    doc = mf.load(raw)
    if mf.is_index(doc):
        manifests = doc.get("manifests")
        if not isinstance(manifests, list):
            raise mf.ManifestError("index has no manifest list")
        return str(select_descriptor(manifests, platform)["digest"])
    return digest


def index_platforms(doc: dict) -> dict[str, str]:
    """`os/arch[/variant]` → manifest digest for an index's image entries (attestations skipped)."""
    found = {}
    for entry in doc.get("manifests") or []:
        plat = entry.get("platform") or {}
        if not plat.get("os") or plat.get("os") == "unknown" or not plat.get("architecture"):
            continue
        name = str(Platform(plat["os"], plat["architecture"], plat.get("variant") or None))
        found.setdefault(name, str(entry.get("digest")))
    return found


def resolve(store: BlobStore, digest: str, platform: Platform) -> ResolvedImage:
    """Read (and verify) the manifests for `digest` from the store.

    FileNotFoundError if a manifest is missing or corrupt.
    """
    top = store.read(digest)
    mdigest = platform_manifest_digest(top, digest, platform)
    raw = top if mdigest == digest else store.read(mdigest)
    parsed = mf.image_manifest(mf.load(raw))
    return ResolvedImage(digest, platform, mdigest, parsed.media_type, len(raw), parsed)


def blobs_valid(store: BlobStore, image: ResolvedImage) -> bool:
    """Are all of the image's blobs present and intact (corrupt ones are removed)?"""
    return all([store.is_valid(b.digest, b.size) for b in image.manifest.blobs])


def check_config_platform(store: BlobStore, image: ResolvedImage) -> None:
    """A single-platform image must be built for the platform the recipe needs."""
    config = json.loads(store.read(image.manifest.config.digest))
    wanted = image.platform
    if config.get("os") != wanted.os or config.get("architecture") != wanted.architecture:
        built = Platform(str(config.get("os")), str(config.get("architecture")), config.get("variant"))
        raise PlatformError(
            f"image {image.digest} is built for {built}, but this recipe needs {wanted}; "
            "pin the multi-arch index digest instead, or set CONTAINER_PLATFORM"
        )
