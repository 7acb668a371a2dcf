"""What is inside an image: its OS and the packages of its package databases, each with its layer.

The layers are stacked in order (see layer_stack.py); after each layer the package
databases it changed are read again, so every package is attributed to the
layer that brought its current version (an upgrade in a later layer is that
layer's; a package removed by a whiteout is gone). Standard library only.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from . import layer_stack, package_db
from .layer_stack import FileEntry, LayerError
from .package_db import Package, PackageDbError

INVENTORY_VERSION = 1
OS_RELEASE = ("etc/os-release", "usr/lib/os-release")
RPM_SQLITE = ("var/lib/rpm/rpmdb.sqlite", "usr/lib/sysimage/rpm/rpmdb.sqlite")
RPM_BDB = ("var/lib/rpm/Packages", "usr/lib/sysimage/rpm/Packages")
DPKG_STATUS_D = "var/lib/dpkg/status.d/"
Reader = Callable[[bytes, str], list[Package]]


class InventoryError(ValueError):
    """An image's layers or package databases cannot be read; the text names image, layer and file."""


def reader_for(path: str) -> Reader | None:
    """The reader of the package database at `path` (a path below the image root), if it is one."""
    if path == "var/lib/dpkg/status":
        return package_db.dpkg
    name = path[len(DPKG_STATUS_D) :] if path.startswith(DPKG_STATUS_D) else ""
    if name and "/" not in name and not name.endswith(".md5sums"):
        return package_db.dpkg  # distroless: a status file per package
    if path == "lib/apk/db/installed":
        return package_db.apk
    if path in RPM_SQLITE:
        return package_db.rpm_sqlite
    if path.endswith((".dist-info/METADATA", ".egg-info/PKG-INFO")):
        return package_db.python_metadata
    return None


def wanted(path: str) -> bool:
    return reader_for(path) is not None or path in OS_RELEASE or path in RPM_BDB


@dataclass(frozen=True)
class Found:
    """A package, the database that lists it, and the layer that brought its version."""

    package: Package
    database: str
    layer: str

    def to_json(self) -> dict[str, Any]:
        doc = {k: v for k, v in asdict(self.package).items() if v is not None}
        return {**doc, "database": self.database, "layer": self.layer}

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Found:
        fields = {k: doc.get(k) for k in Package.__dataclass_fields__}
        return cls(Package(**fields), str(doc["database"]), str(doc["layer"]))


@dataclass(frozen=True)
class Inventory:
    """An image's OS (os-release values) and packages; `notes` say what could not be read."""

    os: dict[str, str]
    packages: tuple[Found, ...]
    notes: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "version": INVENTORY_VERSION,
            "os": self.os,
            "packages": [p.to_json() for p in self.packages],
            "notes": list(self.notes),
        }

    @classmethod
    def from_json(cls, doc: Any, where: str) -> Inventory:
        if not isinstance(doc, dict) or doc.get("version") != INVENTORY_VERSION:
            raise InventoryError(f"{where}: not an inventory of version {INVENTORY_VERSION}")
        try:
            packages = tuple(Found.from_json(p) for p in doc["packages"])
            return cls(dict(doc.get("os") or {}), packages, tuple(doc.get("notes") or ()))
        except (KeyError, TypeError) as err:
            raise InventoryError(f"{where}: malformed inventory ({err})") from None


def _key(found: Found) -> tuple[str, ...]:
    p = found.package
    return (p.type, p.name, p.arch or "", found.database if p.type == "pypi" else "")


class _Databases:
    """Parses each database file once per version of it (a layer that rewrites it makes a new one)."""

    def __init__(self, image: str) -> None:
        self.image = image
        self._parsed: dict[tuple[str, str], list[Package]] = {}

    def packages(self, files: dict[str, FileEntry]) -> dict[tuple[str, ...], Found]:
        current: dict[tuple[str, ...], Found] = {}
        for path in sorted(files):
            read = reader_for(path)
            entry = files[path]
            if read is None:
                continue
            where = f"{self.image}: layer {entry.layer}: {path}"
            if (path, entry.layer) not in self._parsed:
                target = layer_stack.resolve(files, path, where)
                data = target.data if target and target.data is not None else b""
                try:
                    self._parsed[(path, entry.layer)] = read(data, where)
                except PackageDbError as err:
                    raise InventoryError(str(err)) from None
            for package in self._parsed[(path, entry.layer)]:
                found = Found(package, path, entry.layer)
                current[_key(found)] = found
        return current


def of_layers(
    blobs: Sequence[tuple[str, Path]], image: str, progress: Callable[[int, int], None] | None = None
) -> Inventory:
    """The inventory of an image whose layers (digest, blob file) are given bottom first.

    `progress(done, total)` reports bytes of the layer blobs read out of their total size
    on disk: first (0, total), then as the layers are read; the last call is (total, total).
    """
    databases = _Databases(image)
    introduced: dict[tuple[str, ...], Found] = {}
    files: dict[str, FileEntry] = {}
    try:
        for digest, files in layer_stack.stack(blobs, wanted, image, progress):
            current = databases.packages(files)
            for key, found in current.items():
                before = introduced.get(key)
                if before is None or before.package != found.package:
                    introduced[key] = Found(found.package, found.database, digest)
            introduced = {k: v for k, v in introduced.items() if k in current}
        os = _os_release(files, image)
    except LayerError as err:
        raise InventoryError(str(err)) from None
    notes = tuple(
        f"{path}: an old BerkeleyDB rpm database, which container-lock cannot read: "
        "its packages are not listed"
        for path in RPM_BDB
        if path in files and not any(p in files for p in RPM_SQLITE)
    )
    packages = sorted(introduced.values(), key=lambda f: (f.package.type, f.package.name, _key(f)))
    return Inventory(os, tuple(packages), notes)


def _os_release(files: dict[str, FileEntry], image: str) -> dict[str, str]:
    for path in OS_RELEASE:
        link = files.get(path)
        entry = layer_stack.resolve(files, path, f"{image}: layer {link.layer}: {path}") if link else None
        if entry is not None and entry.data is not None:
            values = package_db.os_release(entry.data, f"{image}: layer {entry.layer}: {path}")
            return {
                k: values[k] for k in ("ID", "VERSION_ID", "VERSION_CODENAME", "PRETTY_NAME") if k in values
            }
    return {}


def layout_layers(layout: Path) -> tuple[str, list[tuple[str, Path]]]:
    """(image name, layers bottom first) of a one-image OCI layout (index.json naming one manifest)."""
    try:
        index = json.loads((layout / "index.json").read_text())
        top = index["manifests"][0]
        manifest = json.loads((layout / "blobs" / "sha256" / top["digest"].split(":", 1)[1]).read_text())
        name = top.get("annotations", {}).get("org.opencontainers.image.ref.name") or top["digest"]
        digests = [layer["digest"] for layer in manifest["layers"]]
    except (OSError, ValueError, KeyError, IndexError, TypeError) as err:
        raise InventoryError(f"{layout}: not a one-image OCI layout ({err})") from None
    return name, [(d, layout / "blobs" / "sha256" / d.split(":", 1)[1]) for d in digests]
