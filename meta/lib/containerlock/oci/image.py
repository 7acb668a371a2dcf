"""An image from the first source that holds all of it: resolved (one routine, given a reader), checked.

A download reads as resolve → complete (pull the missing blobs) → check the config's platform,
for each source in turn until one holds the whole image: DL_DIR's store (`StoreReader`), a
mirror tarball's blobs imported into it (the same reader), the registry (`fetch.pull.Puller`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import ClassVar, Protocol

from . import manifest as mf
from .platform import Platform, PlatformError, config_matches, select_descriptor
from .store import BlobStore

# The bytes of the manifest with a digest, verified: a `Reader`'s `read`.
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

    `read` is a `Reader`'s (the store's, or the registry's, which keeps what it reads); the
    config is not read here (`check_config`). ManifestError if the bytes are not an index or
    manifest; PlatformError if an index has no entry for `platform`; what `read` raises if one
    is missing.
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


class Reader(Protocol):
    """A source of one image's bytes: DL_DIR's store (`StoreReader`) or a registry (`fetch.pull.Puller`)."""

    # Raised when the source does not hold all of the image: the next source is asked.
    absent: ClassVar[tuple[type[Exception], ...]]

    def read(self, digest: str) -> bytes:
        """The manifest with `digest`, verified."""
        ...

    def complete(self, image: ResolvedImage) -> None:
        """Every blob of `image` valid in the store afterwards (pulled if missing), or `absent` raised."""
        ...


@dataclass(frozen=True)
class StoreReader:
    """The store as a source: what it holds, verified; nothing is fetched."""

    store: BlobStore
    absent: ClassVar[tuple[type[Exception], ...]] = (FileNotFoundError, mf.ManifestError)

    def read(self, digest: str) -> bytes:
        return self.store.read(digest)

    def complete(self, image: ResolvedImage) -> None:
        """The config's platform first (a stored image built for another platform is refused even if a
        layer is missing, without asking the registry), then every blob verified (corrupt ones removed)."""
        check_config(self.store, image)
        # A list, not a generator: every blob is checked, so corrupt ones are all removed.
        if not all([self.store.is_valid(b.digest, b.size) for b in image.manifest.blobs]):
            raise FileNotFoundError(f"image {image.digest}: blobs missing or corrupt in {self.store.root}")


def first_complete(
    sources: Iterable[tuple[str, Reader]], store: BlobStore, platform: Platform
) -> ResolvedImage | None:
    """The image from the first source that holds all of it, or None if none does.

    `sources` are (digest, reader) pairs, asked in turn (a generator makes each only when the one
    before lacked something): the digest is resolved with the reader (`resolve`), the reader
    completes the image in `store` (`Reader.complete`), the config's platform is checked
    (`check_config`). What a reader raises other than its `absent` errors ends the search:
    PlatformError if the image is built for another platform, ManifestError, the registry's errors.
    """
    for digest, reader in sources:
        try:
            image = resolve(reader.read, digest, platform)
            reader.complete(image)
        except reader.absent:
            continue
        return check_config(store, image)
    return None


def stored_image(store: BlobStore, digest: str, platform: Platform) -> ResolvedImage | None:
    """The image if the store holds all of it intact (every blob verified), else None.

    PlatformError if it is there but built for another platform: the check holds
    however the image came into the store (another recipe, a mirror tarball, a lock).
    """
    return first_complete([(digest, StoreReader(store))], store, platform)


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
