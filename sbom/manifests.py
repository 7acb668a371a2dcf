"""Read the build manifests that do_install_fetched_containers writes (standard JSON)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from containerlock.contents.inventory import Inventory, InventoryError
from containerlock.oci.manifest import Descriptor
from containerlock.oci.record import ImageRecord, RecordError
from containerlock.payload.archive import MANIFEST_VERSION

from . import kind


class BuildManifestError(ValueError):
    """A build manifest cannot be used; the text names the file."""


@dataclass(frozen=True)
class ImageFacts:
    """One embedded image, as the build packaged it."""

    reference: str  # host[:port]/path
    tag: str
    digest: str  # what was pinned: an index or a manifest
    platform: str
    manifest: str  # the platform's manifest digest
    config: str  # image ID
    layers: tuple[Descriptor, ...]
    file: str  # path in the package
    file_sha256: str
    file_size: int
    compression: str
    archive_format: str
    inventory: Inventory | None = None  # the packages inside, when the build listed them

    @property
    def from_index(self) -> bool:
        return self.digest != self.manifest


@dataclass(frozen=True)
class PackageManifest:
    """The facts of one loader package."""

    name: str
    version: str
    arch: str
    engine: str
    source_date_epoch: int
    images: tuple[ImageFacts, ...]


def _image(raw: dict[str, Any], where: str) -> ImageFacts:
    """An image entry: the fetcher's image record (its version checked) plus the packaged file."""
    record = ImageRecord.from_json(raw, where)
    if record.manifest is None or record.config is None or record.layers is None:
        raise BuildManifestError(
            f"{where}: the image record of {record.tagged} has no manifest/config/layers"
        )
    return ImageFacts(
        reference=record.reference,
        tag=record.tag,
        digest=record.digest,
        platform=record.platform,
        manifest=record.manifest,
        config=record.config,
        layers=record.layers,
        file=raw["file"],
        file_sha256=raw["file_sha256"],
        file_size=int(raw["file_size"]),
        compression=raw["compression"],
        archive_format=raw.get("format", "docker-archive"),
        inventory=Inventory.from_json(raw["inventory"], where) if "inventory" in raw else None,
    )


TAKES = "the build manifests a build wrote (DEPLOY_DIR/container-lock/*.json)"


def load(path: Path, takes: str = TAKES) -> PackageManifest:
    """Parse one manifest file; `takes` ends the message for a file of another kind (what the
    command reads instead)."""
    try:
        doc = json.loads(path.read_text())
        if not isinstance(doc, dict):
            raise BuildManifestError(
                f"{path}: not a container-lock build manifest (the top level is not a JSON object)"
            )
        if kind.kind(doc) != kind.BUILD_MANIFEST:
            raise BuildManifestError(
                f"{path}: this is {kind.describe(doc)}, not a container-lock build manifest; give {takes}"
            )
        if doc.get("version") != MANIFEST_VERSION:
            raise BuildManifestError(
                f"{path}: manifest version {doc.get('version')!r} is not {MANIFEST_VERSION} "
                "(written by another container-lock): rebuild the loader package"
            )
        package = doc["package"]
        return PackageManifest(
            name=package["name"],
            version=package["version"],
            arch=package["arch"],
            engine=doc["engine"],
            source_date_epoch=int(doc.get("source_date_epoch") or 0),
            images=tuple(_image(i, f"{path}: image {n}") for n, i in enumerate(doc["images"])),
        )
    except FileNotFoundError:
        raise BuildManifestError(f"{path}: no such manifest") from None
    except IsADirectoryError:
        raise BuildManifestError(
            f"{path}: is a directory; give a build manifest file or --deploy-dir"
        ) from None
    except UnicodeDecodeError:
        raise BuildManifestError(f"{path}: not UTF-8 text, so not a build manifest") from None
    except OSError as err:
        raise BuildManifestError(f"{path}: cannot be read ({err.strerror or err})") from None
    except json.JSONDecodeError as err:
        raise BuildManifestError(f"{path}:{err.lineno}: not valid JSON ({err.msg})") from None
    except (RecordError, InventoryError) as err:
        raise BuildManifestError(str(err)) from None
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        if isinstance(err, BuildManifestError):
            raise
        what = f"key {err} missing" if isinstance(err, KeyError) else str(err)
        raise BuildManifestError(f"{path}: not a container-lock build manifest ({what})") from None


def paths_in(deploy_dir: Path) -> list[Path]:
    """The manifest files in `<deploy>/container-lock/` (or `deploy_dir` itself), in name order."""
    if not deploy_dir.is_dir():
        raise BuildManifestError(f"{deploy_dir}: no such directory; give the build's DEPLOY_DIR")
    directory = deploy_dir / "container-lock" if (deploy_dir / "container-lock").is_dir() else deploy_dir
    try:
        names = [entry.name for entry in os.scandir(directory)]
    except OSError as err:
        raise BuildManifestError(f"{directory}: cannot be read ({err.strerror or err})") from None
    paths = sorted(directory / n for n in names if n.endswith(".json") and not n.endswith(".cdx.json"))
    if not paths:
        raise BuildManifestError(f"{directory}: no build manifests (*.json); build a loader recipe first")
    return paths


def from_deploy_dir(deploy_dir: Path) -> list[PackageManifest]:
    """Every manifest in `<deploy>/container-lock/` (or `deploy_dir` itself), in name order."""
    return [load(p) for p in paths_in(deploy_dir)]
