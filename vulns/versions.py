"""Version order per ecosystem, from the libraries that implement each one (no comparison code here).

dpkg: python-debian (`debian.debian_support.Version`, Debian Policy 5.6.12); PEP 440: packaging;
apk and rpm: univers (`AlpineLinuxVersion`, `RpmVersion`: rpmvercmp with epochs); SEMVER
ranges: univers (`SemverVersion`, semver 2.0.0).
"""

from __future__ import annotations

from functools import lru_cache, total_ordering
from typing import Any

KINDS = ("deb", "apk", "rpm", "pypi", "semver")


class VersionError(ValueError):
    """A version the ecosystem's rules cannot read."""


@total_ordering
class Ordered:
    """A library's version object ordered by its `<` alone (univers's `>=` of apk versions
    compares the text: 1.2.4-r2 >= 1.2.4-r10)."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __lt__(self, other: Ordered) -> bool:
        return bool(self.value < other.value)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Ordered):
            return NotImplemented
        return not (self.value < other.value or other.value < self.value)

    def __hash__(self) -> int:
        return 0  # equal versions may be written differently (1.0 and 1.0.0)


@lru_cache(maxsize=1 << 18)
def key(kind: str, text: str) -> Ordered:
    """A value ordered as `kind` orders versions; VersionError if `text` is not one."""
    return Ordered(_parse(kind, text))


def _parse(kind: str, text: str) -> Any:
    try:
        if kind == "deb":
            from debian.debian_support import Version as DebianVersion

            return DebianVersion(text)
        if kind == "pypi":
            from packaging.version import Version as PypiVersion

            return PypiVersion(text)
        if kind == "apk":
            from univers.versions import AlpineLinuxVersion

            return AlpineLinuxVersion(text)
        if kind == "rpm":
            from univers.versions import RpmVersion

            return RpmVersion(text)
        if kind == "semver":
            from univers.versions import SemverVersion

            return SemverVersion(text.removeprefix("v"))
    except Exception as err:  # each library has its own error types
        raise VersionError(f"{text!r} is not a {kind} version ({err})") from None
    raise VersionError(f"no version order for {kind!r}")


def compare(kind: str, a: str, b: str) -> int:
    """-1, 0 or 1 as `a` is before, equal to or after `b` in `kind`'s order."""
    ka, kb = key(kind, a), key(kind, b)
    return -1 if ka < kb else (1 if ka > kb else 0)
