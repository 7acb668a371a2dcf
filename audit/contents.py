"""What is inside an image at a digest: its layers and packages, read from a blob store that
keeps what it downloads (BitBake's DL_DIR store or the user's cache), so a layer is fetched once."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from containerlock.contents.inventory import Inventory, of_layers
from containerlock.fetch.skopeo import Skopeo, run_subprocess
from containerlock.oci.manifest import Descriptor, image_manifest
from containerlock.oci.manifest import load as load_manifest
from containerlock.oci.reference import ImageReference
from containerlock.oci.store import BlobStore

# The fetcher's store in DL_DIR (containerlock.fetch.fetcher.STORE_DIR) and its blobs directory.
DL_DIR_BLOBS = ("containers", "blobs")


def blob_dir(dl_dir: Path | None) -> Path:
    """`<DL_DIR>/containers/blobs` (the build's store), else `$XDG_CACHE_HOME/container-lock/blobs`."""
    if dl_dir is not None:
        return dl_dir.joinpath(*DL_DIR_BLOBS)
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "container-lock" / "blobs"


def of_digest(
    ref: ImageReference, manifest_digest: str, blobs: Path, timeout: float
) -> tuple[tuple[Descriptor, ...], Inventory]:
    """The layers and the inventory of the single-platform image `ref@manifest_digest`.

    skopeo copies into `blobs` as a shared blob directory: a blob already there is not
    downloaded again (the fetcher's store has the same layout). RegistryError if skopeo fails.
    """
    blobs.mkdir(parents=True, exist_ok=True)
    client = Skopeo(run_subprocess, ref.tagged, ref.registry, timeout=timeout)
    with tempfile.TemporaryDirectory(prefix="container-lock-contents.") as tmp:
        client.copy(
            f"docker://{ref.by_digest(manifest_digest)}",
            f"oci:{Path(tmp) / 'layout'}:image",
            "--preserve-digests",
            "--dest-shared-blob-dir",
            str(blobs),
            what="image download",
        )
    store = BlobStore(blobs)
    manifest = image_manifest(load_manifest(store.read(manifest_digest)))
    layers = [(layer.digest, store.path(layer.digest)) for layer in manifest.layers]
    return manifest.layers, of_layers(layers, f"{ref.name}@{manifest_digest}")
