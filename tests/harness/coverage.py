"""What the real-build tiers covered in this session, printed in pytest's summary (tests/conftest.py).

`OE_RELEASES`, `OE_DIR`, `ISAR_DIR` and `CONTAINER_LOCK_LAYER` narrow or swap what the Isar and
OE tiers test. The harnesses record what each bitbake command really ran with (Isar ref and its
bitbake, OE release, MACHINE, the layer), so a narrowed run says so instead of passing silently.
"""

from __future__ import annotations

import os

# Variables that change what the real tiers test (.ci/run unsets them).
OVERRIDES = ("ISAR_DIR", "OE_DIR", "OE_RELEASES", "CONTAINER_LOCK_LAYER")

_COVERED: dict[str, dict[str, set[str]]] = {}


def record(tier: str, **facts: str) -> None:
    """Note that `tier` ran bitbake with these facts (e.g. `ref="master (bitbake 2.8.0)"`)."""
    kinds = _COVERED.setdefault(tier, {})
    for kind, value in facts.items():
        kinds.setdefault(kind, set()).add(value)


def covered(tier: str, kind: str) -> set[str]:
    """The values of `kind` recorded for `tier` so far."""
    return set(_COVERED.get(tier, {}).get(kind, set()))


def summary_lines() -> list[str]:
    """One line per tier and kind of fact, then the overriding variables that are set ([] when
    no real build ran and none is set)."""
    lines = [
        f"{tier} {kind}: {', '.join(sorted(values))}"
        for tier, kinds in sorted(_COVERED.items())
        for kind, values in kinds.items()
    ]
    set_vars = [f"{name}={os.environ[name]}" for name in OVERRIDES if os.environ.get(name)]
    if not lines and not set_vars:
        return []  # the fast tier alone: nothing to say
    if not lines:
        lines.append("no real Isar or OE build ran")
    if set_vars:
        lines.append(f"set: {', '.join(set_vars)} (they narrow or swap what the real tiers test)")
    else:
        lines.append(f"none of {', '.join(OVERRIDES)} set: the default sources and this checkout's layer")
    return lines
