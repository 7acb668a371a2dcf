"""The cyclic garbage collector off while large acyclic structures are built (SBOMs, audits)."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def no_cycle_collection() -> Iterator[None]:
    """Reference counting frees everything; the collector's full passes would walk the document,
    the findings and the records again and again (1 000 images took 1.7× the time per image of
    100; a third of an audit's time)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
