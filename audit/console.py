"""The command's consoles, made on first use: importing rich costs more than a lookup of 100 tags."""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console


@cache
def out() -> Console:
    """Standard output (tables, summaries)."""
    from rich.console import Console

    return Console(highlight=False, soft_wrap=True)


@cache
def err() -> Console:
    """Standard error (errors, warnings)."""
    from rich.console import Console

    return Console(stderr=True, highlight=False, soft_wrap=True)


def escape(text: str) -> str:
    """`text` with rich markup characters escaped."""
    from rich.markup import escape as rich_escape

    return rich_escape(text)
