"""The OCI image layout that do_unpack places in WORKDIR: one platform, blobs linked from the store."""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from pathlib import Path

from ..files import atomic_write, canonical_json
from . import record
from .image import ResolvedImage
from .record import ImageRecord
from .reference import ImageReference
from .store import BlobStore

UNPACK_DIR = "container-images"  # under the unpack root (WORKDIR, or UNPACKDIR on current OE)
FACTS = "container-lock.json"


def dirname(image: ImageReference) -> str:
    """The layout's directory name under `${WORKDIR}/container-images`."""
    return f"{image.fs_name}@{image.tag}"


def write(dest: Path, ref: ImageReference, image: ResolvedImage, store: BlobStore) -> None:
    """Replace `dest` with the image's layout, all at once (built aside, then renamed)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}."))
    try:
        _fill(staging, ref, image, store)
        if dest.exists():
            shutil.rmtree(dest)
        os.rename(staging, dest)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def read_facts(layout: Path) -> ImageRecord:
    """The facts next to a layout written by `write` (FileNotFoundError, record.RecordError)."""
    return record.read(layout / FACTS)


def _fill(root: Path, ref: ImageReference, image: ResolvedImage, store: BlobStore) -> None:
    blobs = root / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    for digest in (image.manifest_digest, *(b.digest for b in image.manifest.blobs)):
        _link_or_copy(store.path(digest), blobs / digest.split(":", 1)[1])
    descriptor = {
        "mediaType": image.manifest_media_type,
        "digest": image.manifest_digest,
        "size": image.manifest_size,
        "annotations": {"org.opencontainers.image.ref.name": ref.tag},
    }
    atomic_write(root / "oci-layout", canonical_json({"imageLayoutVersion": "1.0.0"}))
    atomic_write(root / "index.json", canonical_json({"schemaVersion": 2, "manifests": [descriptor]}))
    record.write(root / FACTS, ImageRecord.of(ref, image, contents=True))


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError as err:
        if err.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK):
            raise
        shutil.copy2(src, dst)
