"""Map build architectures to OCI platforms and pick a platform's manifest from an index."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any


class PlatformError(ValueError):
    """The platform cannot be determined or the image does not provide it."""


@dataclass(frozen=True, order=True)
class Platform:
    """An OCI platform: `os/architecture[/variant]`."""

    os: str
    architecture: str
    variant: str | None = None

    def __str__(self) -> str:
        return "/".join(filter(None, (self.os, self.architecture, self.variant)))

    @property
    def fs_name(self) -> str:
        """The platform as a file-name part, e.g. `linux-arm-v7`."""
        return str(self).replace("/", "-")

    @classmethod
    def parse(cls, text: str) -> Platform:
        """Parse `os/arch[/variant]`, e.g. `linux/arm/v7`."""
        parts = text.strip().split("/")
        if len(parts) not in (2, 3) or not all(parts):
            raise PlatformError(f"platform '{text}' is not of the form os/architecture[/variant]")
        return cls(parts[0], parts[1], parts[2] if len(parts) == 3 else None)

    def matches(self, entry: Mapping[str, Any]) -> bool:
        """Does the `platform` object of an index entry describe this platform?"""
        if entry.get("os") != self.os or entry.get("architecture") != self.architecture:
            return False
        variant = entry.get("variant") or None
        if self.variant == variant:
            return True
        # arm64 images are labelled with or without the (only) variant v8.
        return self.architecture == "arm64" and {self.variant, variant} <= {None, "v8"}


# Debian architecture names (Isar's PACKAGE_ARCH / DISTRO_ARCH) → OCI platform.
DEBIAN_ARCHES: Mapping[str, Platform] = {
    "amd64": Platform("linux", "amd64"),
    "arm64": Platform("linux", "arm64"),
    "armhf": Platform("linux", "arm", "v7"),
    "armel": Platform("linux", "arm", "v6"),
    "i386": Platform("linux", "386"),
    "mipsel": Platform("linux", "mipsle"),
    "mips64el": Platform("linux", "mips64le"),
    "ppc64el": Platform("linux", "ppc64le"),
    "riscv64": Platform("linux", "riscv64"),
    "s390x": Platform("linux", "s390x"),
    "loong64": Platform("linux", "loong64"),
}

# OpenEmbedded TARGET_ARCH names → OCI platform (32-bit arm needs CONTAINER_PLATFORM).
OE_TARGET_ARCHES: Mapping[str, Platform] = {
    "x86_64": Platform("linux", "amd64"),
    "aarch64": Platform("linux", "arm64"),
    "i586": Platform("linux", "386"),
    "i686": Platform("linux", "386"),
    "riscv64": Platform("linux", "riscv64"),
    "powerpc64le": Platform("linux", "ppc64le"),
    "mipsel": Platform("linux", "mipsle"),
}


@dataclass(frozen=True)
class BuildArches:
    """The variables of a recipe that say which architecture it builds for."""

    package_arch: str | None = None
    distro_arch: str | None = None  # Isar only
    target_arch: str | None = None  # OpenEmbedded
    pn: str = ""
    override: str | None = None  # CONTAINER_PLATFORM

    @classmethod
    def of_recipe(cls, getvar: Callable[[str], str | None]) -> BuildArches:
        """Read from a recipe's datastore (`d.getVar`)."""
        return cls(
            getvar("PACKAGE_ARCH"),
            getvar("DISTRO_ARCH"),
            getvar("TARGET_ARCH"),
            getvar("PN") or "",
            getvar("CONTAINER_PLATFORM"),
        )


@dataclass(frozen=True)
class PlatformChoice:
    """The platform to pull, and why (for the fetch log)."""

    platform: Platform
    reason: str


# Isar gives these variants PACKAGE_ARCH deliberately (COMPAT_DISTRO_ARCH, the build host).
_ISAR_ARCH_VARIANTS = ("-compat", "-native")


def choose_platform(arches: BuildArches) -> PlatformChoice:
    """The platform to pull for a recipe, with the reason.

    CONTAINER_PLATFORM wins. In Isar (DISTRO_ARCH set) the device's DISTRO_ARCH
    decides: Isar sets PACKAGE_ARCH to the build host's architecture for
    `DPKG_ARCH = "all"` recipes in cross builds, so PACKAGE_ARCH counts only for
    `-compat`/`-native` variants. Elsewhere a Debian PACKAGE_ARCH, then OE's
    TARGET_ARCH. `all` and unknown names are an error: silently pulling amd64
    for another target would be wrong.
    """
    if arches.override:
        return PlatformChoice(Platform.parse(arches.override), f"CONTAINER_PLATFORM = {arches.override}")
    package, distro = arches.package_arch, arches.distro_arch
    if distro:
        if arches.pn.endswith(_ISAR_ARCH_VARIANTS) and package in DEBIAN_ARCHES:
            return PlatformChoice(DEBIAN_ARCHES[package], f"PACKAGE_ARCH = {package} of {arches.pn}")
        if distro in DEBIAN_ARCHES:
            why = f"DISTRO_ARCH = {distro}"
            if package and package != distro:
                why += f"; PACKAGE_ARCH = {package} is not the device's (Isar's arch-all/multiarch rewrite)"
            return PlatformChoice(DEBIAN_ARCHES[distro], why)
    elif package in DEBIAN_ARCHES:
        return PlatformChoice(DEBIAN_ARCHES[package], f"PACKAGE_ARCH = {package}")
    if arches.target_arch in OE_TARGET_ARCHES:
        return PlatformChoice(OE_TARGET_ARCHES[arches.target_arch], f"TARGET_ARCH = {arches.target_arch}")
    raise PlatformError(
        f"cannot map DISTRO_ARCH '{distro}' / PACKAGE_ARCH '{package}' / TARGET_ARCH "
        f"'{arches.target_arch}' to a container platform; known: {', '.join(sorted(DEBIAN_ARCHES))} "
        f"(Debian), {', '.join(sorted(OE_TARGET_ARCHES))} (OE). Set CONTAINER_PLATFORM "
        '(e.g. "linux/arm/v7") in the recipe'
    )


def config_matches(config: Mapping[str, Any], platform: Platform) -> bool:
    """Is an image config (its `os`, `architecture`, `variant`) built for `platform`?

    A config without a variant matches any variant of its architecture: many
    images leave it out.
    """
    if not config.get("variant"):
        return config.get("os") == platform.os and config.get("architecture") == platform.architecture
    return platform.matches(config)


def select_descriptor(manifests: Sequence[Mapping[str, Any]], platform: Platform) -> Mapping[str, Any]:
    """Pick the entry for `platform` from an index's `manifests` list."""
    for entry in manifests:
        if platform.matches(entry.get("platform") or {}):
            return entry
    offered = sorted(
        {
            str(Platform(p.get("os", "?"), p.get("architecture", "?"), p.get("variant") or None))
            for p in (e.get("platform") or {} for e in manifests)
            if p.get("os") != "unknown"
        }
    )
    raise PlatformError(
        f"the image index has no {platform} image; it offers: {', '.join(offered) or 'none'}. "
        "Pick another image, or set CONTAINER_PLATFORM to one of those"
    )
