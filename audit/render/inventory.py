"""`container-lock inventory`'s packages: a table per image, or JSON."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from containerlock.contents.inventory import Inventory

from ..console import err, escape, out
from .tables import digest, table

Found = Sequence[tuple[str, Inventory | None]]


def as_json(found: Found) -> dict[str, Any]:
    """The stable JSON form: image name → inventory (or null when the build made none)."""
    return {name: inv.to_json() if inv else None for name, inv in found}


def show(found: Found) -> None:
    """A table of packages per image, then the inventory's notes."""
    for name, inv in found:
        if inv is None:
            out().print(f'{escape(name)}: no inventory in the build manifest (CONTAINER_INVENTORY = "0"?)')
            continue
        title = f"{name}: {inv.os.get('PRETTY_NAME', 'no os-release')}, {len(inv.packages)} packages"
        grid = table("type", "name", "version", "arch", "source", "license", "layer", title=escape(title))
        for item in inv.packages:
            p = item.package
            grid.add_row(
                p.type,
                escape(p.name),
                escape(p.version),
                p.arch or "",
                escape(p.source or ""),
                escape(p.license or ""),
                digest(item.layer),
            )
        out().print(grid)
        for note in inv.notes:
            err().print(f"[yellow]note:[/] {escape(note)}")
