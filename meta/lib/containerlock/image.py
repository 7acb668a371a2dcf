"""Resolve a pinned image in the blob store to its platform manifest, without network."""

from __future__ import annotations

import json
from dataclasses import dataclass

from . import manifest as mf
from .platform import Platform, PlatformError, config_matches, select_descriptor
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
    """Read (and verify) the manifests and config for `digest` from the store.

    FileNotFoundError if a manifest or the config is missing or corrupt;
    PlatformError if the image is not built for `platform`, whichever way it
    came into the store (an index entry or a single-platform manifest).
    """
    top = store.read(digest)
    mdigest = platform_manifest_digest(top, digest, platform)
    raw = top if mdigest == digest else store.read(mdigest)
    parsed = mf.image_manifest(mf.load(raw))
    image = ResolvedImage(digest, platform, mdigest, parsed.media_type, len(raw), parsed)
    _check_config_platform(store, image)
    return image


def stored_image(store: BlobStore, digest: str, platform: Platform) -> ResolvedImage | None:
    """The image if the store holds all of it intact (every blob verified), else None.

    PlatformError if it is there but built for another platform: the check holds
    however the image came into the store (another recipe, a mirror tarball, a lock).
    """
    try:
        image = resolve(store, digest, platform)
    except (FileNotFoundError, mf.ManifestError):
        return None
    # A list, not a generator: every blob is checked, so corrupt ones are all removed.
    return image if all([store.is_valid(b.digest, b.size) for b in image.manifest.blobs]) else None


def _check_config_platform(store: BlobStore, image: ResolvedImage) -> None:
    """The image's config must say it is built for the platform the recipe needs."""
    try:
        config = json.loads(store.read(image.manifest.config.digest))
    except ValueError as err:
        raise mf.ManifestError(f"config {image.manifest.config.digest} is not JSON: {err}") from None
    if not isinstance(config, dict) or not config_matches(config, image.platform):
        config = config if isinstance(config, dict) else {}
        built = Platform(str(config.get("os")), str(config.get("architecture")), config.get("variant"))
        raise PlatformError(
            f"image {image.digest} is built for {built}, but this recipe needs {image.platform}; "
            "pin the multi-arch index digest instead, or set CONTAINER_PLATFORM"
        )
