"""The preload step of an image build: every installed loader package's images into its engine's
store in the root file system, the loaders' record, and what was preloaded (for the SBOM)."""

from __future__ import annotations

import shutil
import subprocess
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path

from . import PreloadError, debs, docker, installed, pin, podman, record

MANIFEST_KIND = "container-lock-preload"
MANIFEST_VERSION = 1
DECOMPRESS = {".zst": ["zstd", "-dcq"], ".xz": ["xz", "-dc"], ".gz": ["gzip", "-dc"]}


@dataclass(frozen=True)
class Preloaded:
    """One reference written into a store."""

    engine: str
    store: str  # graph root / data root on the device
    driver: str
    package: str
    version: str
    arch: str
    reference: str
    image_id: str


def plain_tar(archive: Path, work: Path) -> Path:
    """The archive as an uncompressed docker-archive (decompressed into `work` when compressed)."""
    tool = DECOMPRESS.get(archive.suffix)
    if tool is None:
        return archive
    out = work / archive.name.removesuffix(archive.suffix)
    with out.open("wb") as dest:
        result = subprocess.run([*tool, str(archive)], stdout=dest, stderr=subprocess.PIPE, check=False)
    if result.returncode != 0:
        raise PreloadError(f"{archive}: {tool[0]} cannot decompress it: {result.stderr.decode().strip()}")
    return out


def _archives(rootfs: Path, loader: installed.Loader, pool: Path | None, work: Path) -> Path:
    """The directory of the package's archives: unpacked from its built .deb (the archives are kept
    out of the root file system), else the installed ones."""
    if pool is None:
        return rootfs / loader.share / "images"
    deb = debs.find(pool, loader.package, loader.version, loader.arch)
    return debs.extract_images(deb, loader.share, work / "payload" / loader.package)


def _images(
    rootfs: Path, loaders: list[installed.Loader], pool: Path | None, work: Path
) -> dict[str, tuple[Path, list[str]]]:
    """Image ID → (its archive, every reference it gets), over the packages of one engine."""
    found: dict[str, tuple[Path, list[str]]] = {}
    for loader in loaders:
        where = _archives(rootfs, loader, pool, work)
        for image in loader.images:
            archive = where / image.file
            if not archive.is_file():
                raise PreloadError(
                    f"{loader.package}: /{loader.share}/images/{image.file} is not in the package"
                )
            entry = found.setdefault(image.image_id, (archive, []))
            if image.reference not in entry[1]:
                entry[1].append(image.reference)
    return found


def preload(rootfs: Path, pool: Path | None, work: Path, source_date_epoch: int = 0) -> list[Preloaded]:
    """Write the stores; `pool`: the directory of the built .debs (None: the archives installed in
    the root file system); podman's store is pinned to `source_date_epoch` (`pin`)."""
    by_engine: dict[str, list[installed.Loader]] = defaultdict(list)
    for loader in installed.loaders(rootfs):
        by_engine[loader.engine].append(loader)
    done: list[Preloaded] = []
    for engine, loaders in sorted(by_engine.items()):
        scratch = work / engine
        scratch.mkdir(parents=True, exist_ok=True)
        images = _images(rootfs, loaders, pool, scratch)
        if engine == "podman":
            pstore = podman.store_of(rootfs)
            where, driver = pstore.graphroot, pstore.driver
            for image_id, (archive, refs) in sorted(images.items()):
                tar = plain_tar(archive, scratch)
                for ref in refs:
                    podman.write(rootfs, pstore, tar, ref, image_id, scratch)
            pin.pin_podman(rootfs / pstore.graphroot.lstrip("/"), pstore.driver, source_date_epoch)
        else:
            dstore = docker.store_of(rootfs)
            where, driver = dstore.data_root, dstore.driver
            with docker.PrivateDockerd(rootfs, dstore) as daemon:
                for image_id, (archive, refs) in sorted(images.items()):
                    daemon.load(plain_tar(archive, scratch), refs, image_id)
            pin.pin_docker(rootfs / dstore.data_root.lstrip("/"), dstore.driver, source_date_epoch)
        for loader in loaders:
            entries = {(i.image_id, i.reference) for i in loader.images}
            record.write(rootfs, loader.state_dir, engine, entries)
            done += [
                Preloaded(engine, where, driver, loader.package, loader.version, loader.arch, ref, image_id)
                for image_id, ref in sorted(entries, key=lambda e: (e[1], e[0]))
            ]
        shutil.rmtree(scratch, ignore_errors=True)
    return done


def manifest(image: str, preloaded: list[Preloaded]) -> dict[str, object]:
    """What was preloaded into which store, for the SBOM (`CONTAINER_LOCK_DEPLOY_DIR/preload/`)."""
    return {
        "kind": MANIFEST_KIND,
        "version": MANIFEST_VERSION,
        "image": image,
        "preloaded": [asdict(p) for p in preloaded],
    }
