"""The toolkit's version, from the installed distribution's metadata."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

DISTRIBUTION = "container-lock"


def tool_version() -> str:
    """`container-lock`'s version; `0+unknown` when only the layer is present (not installed)."""
    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:
        return "0+unknown"
