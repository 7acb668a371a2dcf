"""What containers/storage writes differently on every run, pinned, so that two builds of the same
pins give a byte-identical podman store (the file contents; file times are the build's, as for
every file of the root file system):

- the lock files (`storage.lock`, `<driver>-layers/layers.lock`, `<driver>-images/images.lock`)
  hold a random token of their last writer: emptied, as in a store no process has written yet;
- `<driver>-layers/layers.json` gives each layer its creation time: SOURCE_DATE_EPOCH;
- the overlay driver names each layer's short link (`overlay/l/<26 random characters>`, the
  layer's `link` file, the `lower` files of the layers above it) at random: named from the
  layer's ID instead, in the same alphabet and length.

docker's store likewise (`pin_docker`): random cache IDs, overlay2's short links, the time of
the tag.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from datetime import UTC, datetime
from pathlib import Path

from ..files import atomic_write

LOCKS = ("storage.lock", "{driver}-layers/layers.lock", "{driver}-images/images.lock")


def short_name(layer_id: str) -> str:
    """A layer's short link name, derived from its ID (containers/storage: 26 base32 characters)."""
    return base64.b32encode(hashlib.sha256(layer_id.encode()).digest()).decode()[:26]


def _links(overlay: Path) -> None:
    """Short links named from the layer directory's name (`l/`, `<layer>/link`, `*/lower`)."""
    if not (overlay / "l").is_dir():
        return
    renamed: dict[str, str] = {}
    for layer in sorted(p for p in overlay.iterdir() if (p / "link").is_file()):
        old, new = (layer / "link").read_text().strip(), short_name(layer.name)
        if old == new:
            continue
        renamed[old] = new
        (overlay / "l" / old).unlink(missing_ok=True)
        os.symlink(f"../{layer.name}/diff", overlay / "l" / new)
        (layer / "link").write_text(new)
    for lower in overlay.glob("*/lower"):
        parts = lower.read_text().strip().split(":")
        fixed = [f"l/{renamed.get(p.removeprefix('l/'), p.removeprefix('l/'))}" for p in parts]
        if fixed != parts:
            lower.write_text(":".join(fixed))


def pin_podman(graphroot: Path, driver: str, source_date_epoch: int) -> None:
    """Make the store's run-dependent bytes a function of its content (see the module's text)."""
    for lock in LOCKS:
        path = graphroot / lock.format(driver=driver)
        if path.is_file():
            path.write_bytes(b"")
    layers = graphroot / f"{driver}-layers" / "layers.json"
    if layers.is_file():
        when = _rfc3339(source_date_epoch)
        records = json.loads(layers.read_text())
        for record in records:
            if "created" in record:
                record["created"] = when
        atomic_write(layers, json.dumps(records, separators=(",", ":")).encode())
    if driver == "overlay":
        _links(graphroot / "overlay")


def _rfc3339(source_date_epoch: int) -> str:
    return datetime.fromtimestamp(source_date_epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def pin_docker(data_root: Path, driver: str, source_date_epoch: int) -> None:
    """dockerd's run-dependent bytes, pinned: each layer's cache ID (its directory under
    `<driver>/`, random) derived from the layer's chain ID; the overlay2 short links from the cache
    ID (as for podman); `imagedb/metadata/…/lastUpdated` (the time of the tag) SOURCE_DATE_EPOCH."""
    images = data_root / "image" / driver
    layers = data_root / driver
    renamed: dict[str, str] = {}
    for cache_file in sorted((images / "layerdb" / "sha256").glob("*/cache-id")):
        old = cache_file.read_text().strip()
        new = hashlib.sha256(f"container-lock preload {cache_file.parent.name}".encode()).hexdigest()
        if old != new and (layers / old).is_dir():
            (layers / old).rename(layers / new)
            cache_file.write_text(new)
            renamed[old] = new
    if driver == "overlay2" and (layers / "l").is_dir():
        _links(layers)
    for stamp in (images / "imagedb" / "metadata" / "sha256").glob("*/lastUpdated"):
        stamp.write_text(_rfc3339(source_date_epoch))
