"""The `container-lock` command line: pin, check and audit container images in BitBake builds."""

from __future__ import annotations


def __getattr__(name: str) -> str:
    # Read on demand: importlib.metadata takes longer to import than the command's own modules.
    if name == "__version__":
        from containerlock.version import tool_version

        return tool_version()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
