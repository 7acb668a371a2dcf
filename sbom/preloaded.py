"""Which images an image build preloaded into which engine store (CONTAINER_PRELOAD): the preload
manifests `<deploy>/container-lock/preload/*.json`, shown as the image components' property
`container-lock:preloaded` (e.g. `podman:/var/lib/containers/storage (overlay)`)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from cyclonedx.model import Property

from .document import PROPERTY, Document
from .manifests import BuildManifestError

KIND = "container-lock-preload"
NAME = f"{PROPERTY}:preloaded"


class PreloadManifestError(BuildManifestError):
    """A preload manifest cannot be read; the text names the file."""


def stores(directories: Iterable[Path]) -> dict[tuple[str, str], set[str]]:
    """(reference with tag, image ID hex) → the stores it was preloaded into, over the preload
    manifests in `<directory>/preload/`."""
    found: dict[tuple[str, str], set[str]] = {}
    for directory in sorted(set(directories)):
        for path in sorted((directory / "preload").glob("*.json")):
            try:
                doc = json.loads(path.read_text())
                if doc.get("kind") != KIND:
                    continue
                for entry in doc["preloaded"]:
                    where = f"{entry['engine']}:{entry['store']} ({entry['driver']})"
                    found.setdefault((entry["reference"], entry["image_id"]), set()).add(where)
            except (
                OSError,
                UnicodeDecodeError,
                json.JSONDecodeError,
                KeyError,
                TypeError,
                AttributeError,
            ) as err:
                raise PreloadManifestError(f"{path}: not a readable preload manifest ({err})") from None
    return found


def annotate(doc: Document, found: dict[tuple[str, str], set[str]]) -> None:
    """Give each image component that was preloaded the property naming its stores."""
    if not found:
        return
    for _, images in doc.edges:
        for component in images:
            image_id = next((p.value for p in component.properties if p.name == f"{PROPERTY}:image-id"), "")
            where = found.get((f"{component.name}:{component.version}", image_id.removeprefix("sha256:")))
            if where and not any(p.name == NAME for p in component.properties):
                component.properties.add(Property(name=NAME, value="; ".join(sorted(where))))
