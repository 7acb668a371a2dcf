"""The one typed record of a fetched image, in every place it is written and read.

The same facts go into the DL_DIR record of a URL, the `container-lock.json`
next to an unpacked OCI layout, a mirror tarball and (copied) the build
manifest. Every reader checks the version: a record of another version is not
guessed at, it is refused (the fetcher then fetches again).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..files import atomic_write, canonical_json
from .image import ResolvedImage
from .manifest import Descriptor
from .reference import ImageReference

RECORD_VERSION = 1


class RecordError(ValueError):
    """A record is unreadable, of another version, or lacks a fact."""


@dataclass(frozen=True)
class ImageRecord:
    """An image as fetched: `digest` is the pin (index or manifest), `manifest` the platform's.

    `config` and `layers` are known once the image's manifest has been read
    (unpacked layouts, build manifests); the DL_DIR record and mirror facts
    leave them out.
    """

    reference: str
    tag: str
    digest: str
    platform: str
    manifest: str | None = None
    config: str | None = None
    layers: tuple[Descriptor, ...] | None = None  # the platform manifest's layer descriptors

    @classmethod
    def of(cls, ref: ImageReference, image: ResolvedImage, contents: bool = False) -> ImageRecord:
        """The record of `ref` resolved to `image`; with `contents`, its config and layers too."""
        return cls(
            ref.name,
            ref.tag,
            image.digest,
            str(image.platform),
            image.manifest_digest,
            config=image.manifest.config.digest if contents else None,
            layers=image.manifest.layers if contents else None,
        )

    @property
    def tagged(self) -> str:
        return f"{self.reference}:{self.tag}"

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "version": RECORD_VERSION,
            "reference": self.reference,
            "tag": self.tag,
            "digest": self.digest,
            "platform": self.platform,
        }
        if self.manifest is not None:
            doc["manifest"] = self.manifest
        if self.config is not None:
            doc["config"] = self.config
        if self.layers is not None:
            doc["layers"] = [layer.to_json() for layer in self.layers]
        return doc

    def to_bytes(self) -> bytes:
        return canonical_json(self.to_json())

    @classmethod
    def from_json(cls, doc: Any, where: str) -> ImageRecord:
        """Check and read a record; RecordError names `where` and what is wrong."""
        if not isinstance(doc, dict):
            raise RecordError(f"{where}: not an image record (a JSON object)")
        if doc.get("version") != RECORD_VERSION:
            raise RecordError(
                f"{where}: image record version {doc.get('version')!r}, this container-lock reads "
                f"{RECORD_VERSION}; fetch again (or regenerate the mirror tarball)"
            )
        try:
            layers = doc.get("layers")
            return cls(
                reference=_text(doc, "reference"),
                tag=_text(doc, "tag"),
                digest=_text(doc, "digest"),
                platform=_text(doc, "platform"),
                manifest=doc.get("manifest"),
                config=doc.get("config"),
                layers=None if layers is None else tuple(Descriptor.from_json(x) for x in layers),
            )
        except (KeyError, TypeError, ValueError) as err:
            raise RecordError(f"{where}: malformed image record ({err})") from None

    @classmethod
    def from_bytes(cls, data: bytes, where: str) -> ImageRecord:
        try:
            return cls.from_json(json.loads(data), where)
        except json.JSONDecodeError as err:
            raise RecordError(f"{where}: not JSON ({err.msg})") from None


def _text(doc: dict[str, Any], key: str) -> str:
    value = doc.get(key)
    if not isinstance(value, str) or not value:
        raise RecordError(f"no '{key}'")
    return value


def read(path: Path) -> ImageRecord:
    """The record in `path`; FileNotFoundError if absent, RecordError if unusable."""
    return ImageRecord.from_bytes(path.read_bytes(), str(path))


def write(path: Path, record: ImageRecord) -> None:
    """Write the record all-or-nothing."""
    atomic_write(path, record.to_bytes())
