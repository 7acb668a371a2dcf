"""The loaders' record (`<state dir>/<engine>/loaded`), written as the loader writes it."""

from __future__ import annotations

from pathlib import Path

from ..files import atomic_write


def write(rootfs: Path, state_dir: str, engine: str, entries: set[tuple[str, str]]) -> Path:
    """Add `<image ID> <reference>` lines to the record in the root file system (sorted, unique, as
    the loader's pruning rewrites it); the record's path."""
    path = rootfs / state_dir.lstrip("/") / engine / "loaded"
    lines = set(path.read_text().splitlines()) if path.is_file() else set()
    lines |= {f"{image_id} {reference}" for image_id, reference in entries}
    atomic_write(path, "".join(f"{line}\n" for line in sorted(lines) if line.strip()).encode())
    return path
