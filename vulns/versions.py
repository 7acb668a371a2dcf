"""Version order per ecosystem, from the libraries that implement each one.

dpkg: python-debian (`debian.debian_support.Version`, Debian Policy 5.6.12); PEP 440: packaging;
apk and rpm: univers (`AlpineLinuxVersion`, `RpmVersion`: rpmvercmp with epochs); SEMVER
ranges: univers (`SemverVersion`, semver 2.0.0).

One exception to "no comparison code here": python-debian's pure-Python comparison
(`NativeVersion._compare`, used when python-apt is absent) splits both versions again on
every comparison (~25 µs); `_debian_key` states the same order as a tuple made once per
version, from the parts the library parsed (tests compare the two on generated versions).
With python-apt installed the library compares (apt's C comparison).
"""

from __future__ import annotations

import re
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
    value = _parse(kind, text)
    if kind == "deb" and _native_debian():
        return Ordered(_debian_key(value))
    return Ordered(value)


@lru_cache(maxsize=1)
def _native_debian() -> bool:
    """Does python-debian compare in Python (`NativeVersion`, no python-apt)?"""
    from debian import debian_support

    return issubclass(debian_support.Version, debian_support.NativeVersion)


_DIGITS = re.compile(r"\d+|\D+")
_PAD = (1, 0)  # the segment "0" the comparison reads past the end of the shorter version


def _debian_key(version: Any) -> tuple[Any, ...]:
    """`NativeVersion._compare`'s order as a tuple: the epoch as a number, then the upstream
    version and the revision ("0" when absent) as `_part_key`s."""
    return (
        int(version.epoch or "0"),
        _part_key(version.upstream_version or "0"),
        _part_key(version.debian_revision or "0"),
    )


@lru_cache(maxsize=1 << 12)
def _segment_key(segment: str) -> tuple[Any, ...]:
    """`_version_cmp_part`'s order of one run of digits or of other characters: two runs of digits
    compare as numbers; otherwise character by character (`_order`: ~ -1, digits 1-10, letters
    their code, other characters their code + 256; the shorter run read on as 0), so a run
    starting with ~ is below every run of digits, which is below every other run."""
    if segment[0].isdecimal():  # `\d`, as the library splits
        return (1, int(segment))
    orders = tuple(
        -1 if c == "~" else ord(c) if c.isascii() and c.isalpha() else ord(c) + 256 for c in segment
    )
    return (0 if segment[0] == "~" else 2, (*orders, 0))  # no character orders as 0: the end


@lru_cache(maxsize=1 << 16)
def _part_key(part: str) -> tuple[Any, ...]:
    """`_version_cmp_part`'s order of a part as a tuple: the runs are compared in turn, the shorter
    part read on as runs "0" (`_PAD`). Runs equal to `_PAD` are folded into the run after them
    (how many came before it), so that a plain tuple comparison reads past an end the same way:
    a run above `_PAD` as (1, -gap, run), one below as (0, gap, run), the end as (1,)."""
    found: list[tuple[Any, ...]] = []
    gap = 0
    for segment in _DIGITS.findall(part):
        run = _segment_key(segment)
        if run == _PAD:
            gap += 1
        else:
            found.append((1, -gap, run) if run > _PAD else (0, gap, run))
            gap = 0
    return (*found, (1,))


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
