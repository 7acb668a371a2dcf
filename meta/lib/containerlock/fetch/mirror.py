"""Mirror tarballs: one image, one platform, as a deterministic tar of registry blobs.

Layout: `container-lock-mirror.json` (reference, tag, digest, platform) and
`blobs/sha256/<hex>` for the pinned manifest/index, the platform manifest, the
config and the layers. Importing verifies every blob against its name and
accepts nothing else, so a mirror can never inject bytes or paths.
"""

from __future__ import annotations

import io
import re
import tarfile
from pathlib import Path

from ..files import atomic_output, sha256_digest
from ..oci.image import ResolvedImage
from ..oci.platform import Platform
from ..oci.record import ImageRecord, RecordError
from ..oci.reference import ImageReference
from ..oci.store import BlobStore

FACTS = "container-lock-mirror.json"
_BLOB = re.compile(r"^blobs/sha256/([0-9a-f]{64})$")
_UNSAFE = re.compile(r"[^A-Za-z0-9.-]+")


class MirrorError(ValueError):
    """A mirror tarball is malformed or does not hold what its name says."""


def tarball_name(ref: ImageReference, platform: Platform) -> str:
    """A file name (no `:`, `/`, `@`, `+`) distinct per digest (or tag) and platform."""
    readable = _UNSAFE.sub("_", ref.name).strip("_")
    if ref.digest:
        what = ref.digest.replace(":", "-")
    else:
        what = f"{sha256_digest(ref.name.encode())[7:15]}_tag-{ref.tag}"
    return f"docker_{readable}_{what}_{platform.fs_name}.tar"


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), 0, 0o644
    tar.addfile(info, io.BytesIO(data))


def write(path: Path, ref: ImageReference, image: ResolvedImage, store: BlobStore) -> None:
    """Write the tarball atomically; the same image gives the same bytes."""
    digests = sorted({image.digest, image.manifest_digest, *(b.digest for b in image.manifest.blobs)})
    facts = ImageRecord(ref.name, ref.tag, image.digest, str(image.platform))
    with (
        atomic_output(path) as out,
        tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        _add(tar, FACTS, facts.to_bytes())
        for digest in digests:
            info = tarfile.TarInfo("blobs/sha256/" + digest.split(":", 1)[1])
            blob = store.path(digest)
            info.size, info.mtime, info.mode = blob.stat().st_size, 0, 0o644
            with blob.open("rb") as f:
                tar.addfile(info, f)


def import_into(path: Path, store: BlobStore) -> ImageRecord:
    """Verify and add the tarball's blobs to the store; returns its facts."""
    facts: bytes | None = None
    try:
        with tarfile.open(path, mode="r:") as tar:
            for member in tar:
                if member.name == FACTS and member.isfile():
                    facts = tar.extractfile(member).read()  # type: ignore[union-attr]
                    continue
                m = _BLOB.match(member.name)
                if not m or not member.isfile():
                    if member.isdir():
                        continue
                    raise MirrorError(f"{path}: unexpected member '{member.name}'")
                digest = f"sha256:{m.group(1)}"
                try:
                    store.put_stream(digest, tar.extractfile(member))  # type: ignore[arg-type]
                except ValueError:
                    raise MirrorError(f"{path}: blob {digest} does not match its digest") from None
    except (tarfile.TarError, OSError) as err:
        raise MirrorError(f"{path}: not a readable mirror tarball ({err})") from None
    if facts is None:
        raise MirrorError(f"{path}: no {FACTS}")
    try:
        return ImageRecord.from_bytes(facts, f"{path}:{FACTS}")
    except RecordError as err:
        raise MirrorError(str(err)) from None
