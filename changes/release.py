"""One side of a diff: the images a release embeds, the packages inside them, their findings."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

# purl types whose versions the ecosystem's own rules order (vulns.versions kinds).
VERSION_KINDS = {"deb": "deb", "apk": "apk", "rpm": "rpm", "pypi": "pypi"}
SUPPRESSING_STATES = frozenset({"not_affected", "false_positive", "resolved"})


class PackageKey(NamedTuple):
    """What stays the same when a package is upgraded: ecosystem (purl type/namespace), name, arch
    (a tuple: hashed and ordered in C, tens of thousands per SBOM)."""

    ecosystem: str
    name: str
    arch: str = ""

    @property
    def kind(self) -> str | None:
        """The version order that applies (`deb`, `apk`, `rpm`, `pypi`), None when unknown."""
        return VERSION_KINDS.get(self.ecosystem.split("/", 1)[0])

    def label(self) -> str:
        return f"{self.name}:{self.arch}" if self.arch else self.name


@dataclass(frozen=True)
class Layer:
    """A layer blob as the registry serves it (compressed size)."""

    digest: str
    size: int | None


@dataclass(frozen=True)
class Finding:
    """A vulnerability of one package inside one image (`package` is None if the SBOM names no
    package of this image)."""

    id: str
    package: PackageKey
    version: str
    severity: str  # none, low, medium, high, critical or unknown
    fixed: str | None = None
    analysis: str | None = None  # the team's VEX state
    aliases: tuple[str, ...] = ()  # the other ids of the same flaw (DSA, DEBIAN-CVE, GHSA, …)

    @property
    def suppressed(self) -> bool:
        return self.analysis in SUPPRESSING_STATES

    @property
    def ids(self) -> frozenset[str]:
        """Every id this finding is known by: two releases may show one flaw by different ids."""
        return frozenset((self.id, *self.aliases))


@dataclass
class Image:
    """One embedded image for one platform."""

    reference: str  # host[:port]/path
    tag: str
    platform: str  # os/arch[/variant]; "" when a lockfile entry names none
    digest: str  # the platform's manifest digest
    pinned: str  # what the lock pins: an index or the manifest
    layers: tuple[Layer, ...] | None = None  # None: not known (a lockfile)
    packages: dict[PackageKey, tuple[str, ...]] | None = None  # versions; None: not listed
    findings: list[Finding] = field(default_factory=list)
    bom_ref: str = ""

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.reference, self.tag, self.platform)

    def label(self) -> str:
        return f"{self.reference}:{self.tag}" + (f" ({self.platform})" if self.platform else "")


@dataclass
class Release:
    """The images of one release and what is known of them."""

    source: str  # the path given
    kind: str  # "sbom", "build-manifests" or "lockfile"
    images: list[Image]
    audited: bool = False  # findings are known (an audited SBOM, or --db)
    snapshot: str | None = None  # the vulnerability snapshot the findings come from
    spec: str | None = None  # CycloneDX specVersion of an SBOM

    @property
    def has_contents(self) -> bool:
        return self.kind != "lockfile"
