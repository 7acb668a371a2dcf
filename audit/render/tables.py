"""Tables that never cut a reference or a digest: long cells fold onto the next line."""

from __future__ import annotations

from rich.table import Table


def table(*columns: str, title: str | None = None) -> Table:
    """A table whose columns fold long values instead of ending them with an ellipsis."""
    grid = Table(title=title)
    for name in columns:
        grid.add_column(name, overflow="fold")
    return grid


def styled(text: str, style: str) -> str:
    """`text` in rich markup with `style` (none if empty)."""
    return f"[{style}]{text}[/]" if style else text


def digest(value: str | None) -> str:
    """A digest as shown in tables: whole, or '-'."""
    return value or "-"
