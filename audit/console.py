"""The command's consoles, made on first use: importing rich costs more than a lookup of 100 tags.

Output meant for people: on a terminal, styled and wrapped to its width; piped or with
`NO_COLOR` set, no escape sequences at all; piped, never cut at 80 columns (references and
digests are printed whole, a table as wide as its content).
"""

from __future__ import annotations

import os
import sys
from functools import cache
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from rich.console import Console

# A table piped into a file or a CI log is as wide as its widest row, up to this.
PIPED_WIDTH = 4096


def _console(stream: TextIO, stderr: bool) -> Console:
    from rich.console import Console

    terminal = stream.isatty()
    plain = not terminal or no_color()
    width = None if terminal else PIPED_WIDTH
    return Console(
        stderr=stderr,
        highlight=False,
        soft_wrap=True,
        width=width,
        color_system=None if plain else "auto",
        emoji=False,
    )


@cache
def out() -> Console:
    """Standard output (tables, summaries)."""
    return _console(sys.stdout, stderr=False)


@cache
def err() -> Console:
    """Standard error (errors, warnings, progress)."""
    return _console(sys.stderr, stderr=True)


def no_color() -> bool:
    """Is `NO_COLOR` set (to anything but the empty string): no escape sequence at all, not even
    cursor control (https://no-color.org)?"""
    return bool(os.environ.get("NO_COLOR"))


def interactive() -> bool:
    """Is standard error a terminal (where progress is shown)?"""
    return sys.stderr.isatty()


def escape(text: str) -> str:
    """`text` with rich markup characters escaped."""
    from rich.markup import escape as rich_escape

    return rich_escape(text)
