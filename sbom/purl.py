"""Package URLs (purl-spec) for OCI images, Debian packages and the packages inside images."""

from __future__ import annotations

import re
from collections.abc import Mapping

from packageurl import PackageURL

from containerlock.contents.package_db import Package


class OciPurl(PackageURL):
    """A PackageURL that writes the digest version as purl-spec's `oci` examples do: `sha256%3A…`.

    packageurl-python leaves `:` in versions as it is; the spec percent-encodes it.
    """

    def to_string(self, encode: bool | None = True) -> str:
        text = super().to_string()
        if self.version and ":" in self.version:
            text = text.replace(f"@{self.version}", "@" + self.version.replace(":", "%3A"), 1)
        return text

    def __str__(self) -> str:
        return self.to_string()


def oci_purl(reference: str, digest: str, tag: str | None = None, arch: str | None = None) -> PackageURL:
    """`pkg:oci/<name>@sha256%3A…?arch=…&repository_url=<host[:port]/path>&tag=…`.

    The name is the last path segment of the repository, lower-case; the
    version is the digest; the registry and path go in `repository_url`.
    """
    qualifiers = {"repository_url": reference}
    if tag:
        qualifiers["tag"] = tag
    if arch:
        qualifiers["arch"] = arch
    return OciPurl(
        type="oci", name=reference.rsplit("/", 1)[-1].lower(), version=digest, qualifiers=qualifiers
    )


def platform_arch(platform: str) -> str:
    """The purl `arch` of an OCI platform: its architecture (`linux/arm/v7` → `arm`).

    The variant is not part of the purl; the digest already tells the images apart.
    """
    return platform.split("/")[1]


def deb_purl(name: str, version: str, arch: str, distro: str = "debian") -> PackageURL:
    """`pkg:deb/debian/<name>@<version>?arch=<arch>`, as Debian SBOM tools write them."""
    return PackageURL(
        type="deb",
        namespace=distro,
        name=name,
        version=version or None,
        qualifiers={"arch": arch} if arch else None,
    )


# purl types of the packages an image's databases list, and the namespace when os-release says nothing.
_PURL_NAMESPACES = {"deb": "debian", "apk": "alpine", "rpm": None, "pypi": None}


def inventory_purl(package: Package, os: Mapping[str, str]) -> PackageURL:
    """`pkg:deb/debian/openssl@3.0.15-1~deb12u1?arch=arm64&distro=debian-12`, `pkg:apk/alpine/…`,
    `pkg:rpm/fedora/…?epoch=…`, `pkg:pypi/<normalised name>@…` for a package inside an image."""
    if package.type == "pypi":
        name = re.sub(r"[-_.]+", "-", package.name).lower()
        return PackageURL(type="pypi", name=name, version=package.version)
    distro_id = os.get("ID") or _PURL_NAMESPACES.get(package.type)
    qualifiers = {"arch": package.arch or "", "epoch": package.epoch or ""}
    if distro_id and os.get("VERSION_ID"):
        qualifiers["distro"] = f"{distro_id}-{os['VERSION_ID']}"
    return PackageURL(
        type=package.type,
        namespace=distro_id,
        name=package.name,
        version=package.version,
        qualifiers={k: v for k, v in qualifiers.items() if v} or None,
    )
