"""`update --diff`: the releases before and after an update, for the images whose pin moved."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from changes.read import image_of_inventory
from changes.release import Image, Release
from containerlock.lock import lockfile
from containerlock.lock.lockfile import LockEntry

from .contents import of_digest
from .update import UpdatePlan


def _platforms(entry: LockEntry) -> dict[str, str]:
    """platform → manifest digest (one entry "" → the digest when the lock names no platform)."""
    return dict(entry.platforms) or {"": entry.digest}


def releases(
    plan: UpdatePlan,
    blobs: Path,
    timeout: float,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[Release, Release]:
    """(before, after) of the references the update re-pins or adds, every platform of each read
    from the registry (what `blobs` holds already is not downloaded).
    RegistryError, InventoryError, ManifestError."""
    moved = [c for c in plan.changes if c.new is not None and c.status in ("updated", "added")]
    work = [
        (c.key, side, entry, platform, digest)
        for c in moved
        for side, entry in (("old", c.old), ("new", c.new))
        if entry is not None
        for platform, digest in sorted(_platforms(entry).items())
    ]
    sides: dict[str, list[Image]] = {"old": [], "new": []}
    for n, (key, side, entry, platform, digest) in enumerate(work, 1):
        ref = lockfile.key_reference(key)
        layers, inventory = of_digest(ref, digest, blobs, timeout)
        sides[side].append(
            image_of_inventory(ref.name, ref.tag, platform, digest, entry.digest, layers, inventory)
        )
        if progress is not None:
            progress(n, len(work))
    return (
        Release("lockfile before the update", "update", sides["old"]),
        Release("the registries now", "update", sides["new"]),
    )
