"""Turn unpacked OCI layouts into the loader package payload: engine archives, image.list, manifest.

Standard library and host tools only (skopeo, zstd, xz, gzip): runs inside BitBake tasks.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import tarfile
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..fetch import skopeo
from ..files import atomic_output, atomic_write, canonical_json, file_digest
from ..oci import layout
from ..oci.record import ImageRecord, RecordError

COMPRESSIONS = ("zst", "xz", "gz", "none")
# layers: a docker-archive of the registry's layer blobs as fetched (no decompression, no
# recompression); recompress: a docker-archive of uncompressed layers, compressed as a whole.
PAYLOADS = ("layers", "recompress")
# Layer media types a docker-archive may hold as they are (docker 20.10 and podman 4.3 load them).
_LOADABLE_LAYERS = ("tar+gzip", ".tar", ".tar.gzip")
# Debian packages that provide the decompressor the loader calls on the target.
DECOMPRESSOR_PACKAGES = {"zst": "zstd", "xz": "xz-utils", "gz": "gzip", "none": ""}
MANIFEST_VERSION = 2  # 2: each image entry is a versioned image record plus the packaged file


class PackagingError(RuntimeError):
    """A payload could not be made; the text names the image and the cause."""


@dataclass(frozen=True)
class Compression:
    """How archives are compressed; `threads` never changes the bytes."""

    kind: str
    level: int
    threads: int

    @property
    def suffix(self) -> str:
        return "" if self.kind == "none" else f".{self.kind}"

    def command(self) -> list[str]:
        """A filter command (stdin → stdout) producing identical bytes for any thread count."""
        if self.kind == "zst":
            # -T1, -T2, … give the same frames; only --single-thread would differ.
            return ["zstd", "-q", f"-{self.level}", f"-T{self.threads}", "-c"]
        if self.kind == "xz":
            # xz's single-threaded encoder writes different bytes: always use the threaded one.
            return ["xz", "-q", f"-{self.level}", f"-T{max(2, self.threads)}", "-c"]
        if self.kind == "gz":
            return ["gzip", "-n", f"-{self.level}", "-c"]
        return ["cat"]


def parse_compression(kind: str, level: str, threads: str) -> Compression:
    """Validate CONTAINER_COMPRESSION and its level (Isar writes levels as `-3`, OE as `3`)."""
    kind = (kind or "zst").strip()
    if kind not in COMPRESSIONS:
        raise PackagingError(f"CONTAINER_COMPRESSION = '{kind}' is not one of {', '.join(COMPRESSIONS)}")
    level_text = "0" if kind == "none" else (level or "").strip().lstrip("-")
    limits = {"zst": (1, 19), "xz": (0, 9), "gz": (1, 9), "none": (0, 0)}[kind]
    if not level_text.isdigit() or not limits[0] <= int(level_text) <= limits[1]:
        raise PackagingError(
            f"compression level '{level}' for {kind} is not a number from {limits[0]} to {limits[1]}"
        )
    try:
        nthreads = max(1, int(threads or "1"))
    except ValueError:
        nthreads = 1
    return Compression(kind, int(level_text), nthreads)


@dataclass(frozen=True)
class Payload:
    """What the packaged archives are: `layers` as fetched, or `recompress`ed with `compression`."""

    kind: str
    compression: Compression

    @property
    def suffix(self) -> str:
        return ".tar" + ("" if self.kind == "layers" else self.compression.suffix)

    @property
    def spec(self) -> str:
        """The signature input: only what changes the bytes (`layers`, or `recompress zst 3`)."""
        if self.kind == "layers":
            return "layers"
        return f"recompress {self.compression.kind} {self.compression.level}"


def parse_payload(kind: str, compression: str, level: str, threads: str) -> Payload:
    """CONTAINER_PAYLOAD with CONTAINER_COMPRESSION and its level (used by `recompress` only)."""
    kind = (kind or "layers").strip()
    if kind not in PAYLOADS:
        raise PackagingError(f"CONTAINER_PAYLOAD = '{kind}' is not one of {', '.join(PAYLOADS)}")
    if kind == "layers":
        return Payload(kind, Compression("none", 0, 1))
    return Payload(kind, parse_compression(compression, level, threads))


def payload_from_spec(spec: str, threads: str) -> Payload:
    """The Payload a `Payload.spec` string names (what the install task reads)."""
    kind, _, rest = (spec or "layers").partition(" ")
    compression, _, level = rest.partition(" ")
    return parse_payload(kind, compression, level, threads)


@dataclass(frozen=True)
class UnpackedImage:
    """An image do_unpack placed in WORKDIR, with the facts it recorded."""

    layout: Path
    facts: ImageRecord

    @property
    def tagged(self) -> str:
        return self.facts.tagged


def load_unpacked(path: Path) -> UnpackedImage:
    """Read the facts next to an OCI layout written by the fetcher's unpack."""
    try:
        return UnpackedImage(path, layout.read_facts(path))
    except FileNotFoundError:
        raise PackagingError(f"{path} has no {layout.FACTS}: was do_unpack run?") from None
    except RecordError as err:
        raise PackagingError(f"{err}; run do_unpack again") from None


def export_layers(image: UnpackedImage, dest: Path) -> None:
    """A docker-archive whose layers are the registry's blobs as fetched, written atomically to `dest`.

    `manifest.json` names each compressed blob as a layer tar: docker (20.10) and
    podman (4.3) load it, and the image ID is the config digest. No decompression,
    no recompression: one pass over the compressed bytes, reproducible (fixed order,
    mtime 0, root-owned).
    """
    facts = image.facts
    if facts.config is None or facts.layers is None:
        raise PackagingError(f"{image.tagged}: {image.layout} lacks config/layer facts; run do_unpack again")
    odd = [d.media_type for d in facts.layers if not d.media_type.endswith(_LOADABLE_LAYERS)]
    if odd:
        raise PackagingError(
            f"{image.tagged}: layers of type {', '.join(sorted(set(odd)))} cannot go into a docker-archive "
            "(docker 20.10 loads gzip and plain tar layers only): pin an image with gzip layers"
        )
    blobs = image.layout / "blobs" / "sha256"
    config = facts.config.split(":", 1)[1]
    layers = [d.digest.split(":", 1)[1] for d in facts.layers]
    manifest = [
        {"Config": f"{config}.json", "RepoTags": [image.tagged], "Layers": [f"{h}.tar" for h in layers]}
    ]
    with atomic_output(dest) as out, tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        _add_file(tar, f"{config}.json", blobs / config)
        for hexdigest in dict.fromkeys(layers):  # a layer used twice is stored once
            _add_file(tar, f"{hexdigest}.tar", blobs / hexdigest)
        _add_bytes(tar, "manifest.json", (json.dumps(manifest, sort_keys=True) + "\n").encode())


def _tar_info(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode, info.uid, info.gid = size, 0, 0o644, 0, 0
    return info


def _add_file(tar: tarfile.TarFile, name: str, path: Path) -> None:
    with path.open("rb") as f:
        tar.addfile(_tar_info(name, path.stat().st_size), f)


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    tar.addfile(_tar_info(name, len(data)), io.BytesIO(data))


def export_compressed(image: UnpackedImage, dest: Path, compression: Compression, scratch: Path) -> None:
    """`docker-archive` of the image, compressed, written atomically to `dest`, in one pass.

    The archive is Docker schema 2 with uncompressed layers: docker and podman
    both load it, and skopeo writes it byte-reproducibly (mtime 0), named with
    the full reference (no `docker.io/` or `localhost/` added on load). skopeo
    writes into a FIFO that the compressor reads, so the uncompressed tar never
    touches the disk.
    """
    fifo = scratch / "archive.fifo"
    os.mkfifo(fifo)
    # A local copy (oci: → docker-archive:): nothing transient to retry.
    client = skopeo.Skopeo(skopeo.run_subprocess, image.tagged, "", retries=0)
    try:
        with atomic_output(dest) as out:
            compressor = subprocess.Popen(
                ["sh", "-c", 'exec "$@" < "$0"', str(fifo), *compression.command()],
                stdout=out,
                stderr=subprocess.PIPE,
            )
            try:
                client.call(
                    [
                        "--insecure-policy",
                        "copy",
                        "-q",
                        f"oci:{image.layout}",
                        f"docker-archive:{fifo}:{image.tagged}",
                    ],
                    "docker-archive export",
                )
            except skopeo.RegistryError as err:
                compressor.kill()
                compressor.wait()
                raise PackagingError(f"skopeo could not write the docker-archive: {err}") from None
            _, errors = compressor.communicate()
            if compressor.returncode:
                raise PackagingError(
                    f"{image.tagged}: {' '.join(compression.command())} failed: {errors.decode().strip()}"
                )
    finally:
        fifo.unlink(missing_ok=True)


@dataclass(frozen=True)
class PayloadSettings:
    """What the install task needs from the recipe."""

    package: str
    bpn: str
    engine: str
    payload: Payload
    version: str = ""
    arch: str = ""
    source_date_epoch: int = 0


def install_payload(
    images: Sequence[UnpackedImage],
    dest_root: Path,
    scratch: Path,
    settings: PayloadSettings,
    inventories: Mapping[str, dict] | None = None,
) -> dict:
    """Write `usr/share/<bpn>/images/*`, `image.list`; return the build manifest (facts per image).

    `inventories` (by layout directory name) go into the image entries as they are.
    """
    share = dest_root / "usr" / "share" / settings.bpn
    images_dir = share / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    scratch.mkdir(parents=True, exist_ok=True)
    lines, entries = [], []
    for image in images:
        name = f"{image.layout.name}{settings.payload.suffix}"
        target = images_dir / name
        if settings.payload.kind == "layers":
            export_layers(image, target)
        else:
            with tempfile.TemporaryDirectory(dir=scratch) as tmp:
                export_compressed(image, target, settings.payload.compression, Path(tmp))
        config = image.facts.config
        lines.append(f"{name} {image.tagged} {config}\n")
        entries.append(
            {
                **image.facts.to_json(),  # the image record, with its own version
                "file": f"/usr/share/{settings.bpn}/images/{name}",
                "file_sha256": file_digest(target),
                "file_size": target.stat().st_size,
                "format": "docker-archive",
                "payload": settings.payload.kind,
                "compression": settings.payload.compression.kind,
                "compression_level": settings.payload.compression.level,
                **(
                    {"inventory": inventories[image.layout.name]}
                    if image.layout.name in (inventories or {})
                    else {}
                ),
            }
        )
    atomic_write(share / "image.list", "".join(lines).encode())
    return {
        "version": MANIFEST_VERSION,
        "package": {"name": settings.package, "version": settings.version, "arch": settings.arch},
        "engine": settings.engine,
        "source_date_epoch": settings.source_date_epoch,
        "images": entries,
    }


def read_inventories(path: Path) -> dict[str, dict]:
    """The inventories do_container_inventory wrote (by layout name); none if it did not run."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except ValueError as err:
        raise PackagingError(f"{path}: {err}; run do_container_inventory again") from None


def write_manifest(manifest: dict, path: Path) -> None:
    """The build manifest, deterministic JSON."""
    atomic_write(path, canonical_json(manifest))
