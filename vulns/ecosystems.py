"""Which OSV ecosystem and package name a package inside an image is listed under, and how its
versions are ordered.

- dpkg: `Debian:<major>` (os-release VERSION_ID, or the purl's `distro=debian-12`), by source package;
- apk: `Alpine:v<major>.<minor>`, by origin;
- rpm: `AlmaLinux:<major>`, `Rocky Linux:<major>`, `Red Hat:<major>` (Red Hat's
  `Red Hat:enterprise_linux:9::appstream` and the like are indexed under their major release),
  by binary and by source package name;
- Python: `PyPI`, by the normalised name (PEP 503).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# OSV ecosystem (before the first ':') → the version order of its packages.
KIND_OF_ECOSYSTEM = {
    "Debian": "deb",
    "Alpine": "apk",
    "PyPI": "pypi",
    "AlmaLinux": "rpm",
    "Rocky Linux": "rpm",
    "Red Hat": "rpm",
}
# os-release ID of an rpm distribution → its OSV ecosystem.
RPM_DISTRIBUTIONS = {"almalinux": "AlmaLinux", "rocky": "Rocky Linux", "rhel": "Red Hat"}
_BINNMU = re.compile(r"\+b[0-9]+$")


def normalise_pypi(name: str) -> str:
    """PEP 503's normalised project name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _major(version: str) -> str:
    return version.split(".", 1)[0]


def record_key(ecosystem: str) -> str | None:
    """The index key of an OSV `affected[].package.ecosystem`, None for ecosystems no image package has."""
    base, _, rest = ecosystem.partition(":")
    if base not in KIND_OF_ECOSYSTEM:
        return None
    if base == "PyPI":
        return "PyPI"
    if base == "Red Hat":
        release = re.search(r"[0-9]+", rest)
        return f"Red Hat:{release.group()}" if release else None
    if base in ("AlmaLinux", "Rocky Linux"):
        return f"{base}:{_major(rest)}" if rest else None
    return ecosystem if rest else None  # Debian:12, Alpine:v3.19 (a record without release: no key)


def record_name(ecosystem: str, name: str) -> str:
    """The index name of an OSV package name (PyPI names normalised)."""
    return normalise_pypi(name) if ecosystem.startswith("PyPI") else name


@dataclass(frozen=True)
class Lookup:
    """Where a package's records are: index key, names to look up, its version and the order of versions."""

    ecosystem: str
    names: tuple[str, ...]
    version: str
    kind: str


def lookup(
    purl_type: str,
    name: str,
    version: str,
    source: str | None,
    distro: str | None,
    epoch: str | None = None,
    source_version: str | None = None,
) -> Lookup | None:
    """The lookup of a package (`distro`: the purl's `distro` qualifier, `<ID>-<VERSION_ID>`); None when
    no ecosystem of the index lists its kind or distribution."""
    if purl_type == "pypi":
        return Lookup("PyPI", (normalise_pypi(name),), version, "pypi")
    distro_id, _, release = (distro or "").partition("-")
    if not release:
        return None
    if purl_type == "deb" and distro_id == "debian":
        # Records name source packages and their versions: dpkg's `Source: name (version)` where the
        # binary's differs, else the binary's (a binNMU's +bN taken off).
        own = source_version or _BINNMU.sub("", version)
        return Lookup(f"Debian:{_major(release)}", (source or name,), own, "deb")
    if purl_type == "apk" and distro_id == "alpine":
        parts = release.split(".")
        if len(parts) < 2:
            return None
        return Lookup(f"Alpine:v{parts[0]}.{parts[1]}", (source or name,), version, "apk")
    if purl_type == "rpm" and distro_id in RPM_DISTRIBUTIONS:
        names = tuple(sorted({name, source or name}))
        full = f"{epoch}:{version}" if epoch and epoch != "0" else version
        return Lookup(f"{RPM_DISTRIBUTIONS[distro_id]}:{_major(release)}", names, full, "rpm")
    return None
