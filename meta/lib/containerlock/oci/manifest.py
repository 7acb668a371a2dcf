"""Read OCI / Docker schema 2 manifests and indexes (the raw registry bytes)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_LIST})
MANIFEST_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})


class ManifestError(ValueError):
    """The bytes are not a manifest this tool understands."""


@dataclass(frozen=True)
class Descriptor:
    """A content descriptor: what a manifest points to."""

    media_type: str
    digest: str
    size: int

    @classmethod
    def from_json(cls, obj: Any) -> Descriptor:
        """A descriptor object (`mediaType`, `digest`, `size`); ManifestError if malformed."""
        try:
            return cls(str(obj["mediaType"]), str(obj["digest"]), int(obj["size"]))
        except (KeyError, TypeError, ValueError) as err:
            raise ManifestError(f"malformed descriptor {obj!r}") from err

    def to_json(self) -> dict[str, Any]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size}


@dataclass(frozen=True)
class ImageManifest:
    """A single-platform image manifest."""

    media_type: str
    config: Descriptor
    layers: tuple[Descriptor, ...]

    @property
    def blobs(self) -> tuple[Descriptor, ...]:
        """The config followed by the layers."""
        return (self.config, *self.layers)


def load(raw: bytes) -> dict[str, Any]:
    """Decode manifest JSON, rejecting what is not a JSON object."""
    try:
        doc = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ManifestError(f"not JSON: {err}") from err
    if not isinstance(doc, dict):
        raise ManifestError("not a JSON object")
    return doc


def media_type(doc: dict[str, Any]) -> str:
    """The document's media type (OCI allows it to be implied by the fields)."""
    declared = doc.get("mediaType")
    if declared:
        return str(declared)
    if "manifests" in doc:
        return OCI_INDEX
    if "layers" in doc:
        return OCI_MANIFEST
    if doc.get("schemaVersion") == 1:
        raise ManifestError("Docker schema 1 manifests are not supported; re-push the image")
    raise ManifestError("unknown manifest type")


def is_index(doc: dict[str, Any]) -> bool:
    """Is this an image index / manifest list?"""
    return media_type(doc) in INDEX_TYPES


def image_manifest(doc: dict[str, Any]) -> ImageManifest:
    """Parse a single-platform manifest."""
    kind = media_type(doc)
    if kind not in MANIFEST_TYPES:
        raise ManifestError(f"media type {kind} is not an image manifest")
    layers = doc.get("layers")
    if not isinstance(layers, list):
        raise ManifestError("manifest has no layer list")
    return ImageManifest(
        kind, Descriptor.from_json(doc.get("config")), tuple(map(Descriptor.from_json, layers))
    )
