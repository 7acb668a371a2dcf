"""The cyclic garbage collector off while large acyclic structures are built (as `sbom.generate` does)."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def no_cycle_collection() -> Iterator[None]:
    """Reference counting frees everything; the collector's full passes would walk the findings,
    the records and the SBOM again and again (a third of an audit's time)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
