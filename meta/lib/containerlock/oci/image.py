"""Resolve a pinned image to its platform manifest: one routine for every reader (store, registry)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

from . import manifest as mf
from .platform import Platform, PlatformError, config_matches, select_descriptor
from .store import BlobStore

# The bytes of the manifest with a digest, verified: `BlobStore.read` or `Puller.manifest`.
ManifestReader = Callable[[str], bytes]


@dataclass(frozen=True)
class ResolvedImage:
    """A pinned digest resolved to the manifest of one platform."""

    digest: str
    platform: Platform
    manifest_digest: str
    manifest_media_type: str
    manifest_size: int
    manifest: mf.ImageManifest


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


def resolve(read: ManifestReader, digest: str, platform: Platform) -> ResolvedImage:
    """`digest` resolved to `platform`'s manifest, each manifest read from `read` and parsed once.

    `read` is the store's (`BlobStore.read`) or the registry's (`Puller.manifest`); the config is
    not read here (`check_config`). ManifestError if the bytes are not an index or manifest;
    PlatformError if an index has no entry for `platform`; what `read` raises if one is missing.
    """
    top = read(digest)
    doc = mf.load(top)
    mdigest, raw = digest, top
    if mf.is_index(doc):
        manifests = doc.get("manifests")
        if not isinstance(manifests, list):
            raise mf.ManifestError("index has no manifest list")
        mdigest = str(select_descriptor(manifests, platform)["digest"])
        raw = read(mdigest)
        doc = mf.load(raw)
    parsed = mf.image_manifest(doc)
    return ResolvedImage(digest, platform, mdigest, parsed.media_type, len(raw), parsed)


def stored_image(store: BlobStore, digest: str, platform: Platform) -> ResolvedImage | None:
    """The image if the store holds all of it intact (every blob verified), else None.

    PlatformError if it is there but built for another platform: the check holds
    however the image came into the store (another recipe, a mirror tarball, a lock).
    """
    try:
        image = check_config(store, resolve(store.read, digest, platform))
    except (FileNotFoundError, mf.ManifestError):
        return None
    # A list, not a generator: every blob is checked, so corrupt ones are all removed.
    return image if all([store.is_valid(b.digest, b.size) for b in image.manifest.blobs]) else None


def check_config(store: BlobStore, image: ResolvedImage) -> ResolvedImage:
    """`image`, if its config (read from the store) says it is built for the platform the recipe needs.

    FileNotFoundError if the config is missing or corrupt, PlatformError if it names another platform.
    """
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
    return image
