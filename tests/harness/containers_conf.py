"""containers-registries.conf(5) as a user writes it: `$HOME/.config/containers/registries.conf`.

skopeo reads this file in every environment BitBake's runfetchcmd builds,
because HOME is one of the variables it passes through.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path


def registries_conf_text(
    insecure: Iterable[str] = (), mirrors: Mapping[str, Iterable[str]] | None = None
) -> str:
    """TOML for loopback registries served over plain HTTP, and optional mirrors."""
    blocks = []
    mirrors = mirrors or {}
    for location in sorted(set(insecure) | set(mirrors)):
        lines = ["[[registry]]", f'location = "{location}"', "insecure = true"]
        for mirror in mirrors.get(location, ()):
            lines += ["[[registry.mirror]]", f'location = "{mirror}"', "insecure = true"]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"


def write_registries_conf(
    home: Path, insecure: Iterable[str] = (), mirrors: Mapping[str, Iterable[str]] | None = None
) -> Path:
    """Write the user's registries.conf under `home`; returns its path."""
    path = home / ".config" / "containers" / "registries.conf"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(registries_conf_text(insecure, mirrors))
    return path
