"""Package databases of Linux images, read from their bytes: dpkg, apk, rpm (sqlite), Python, os-release.

Each reader takes a database file's bytes and the place it came from (for
errors) and returns `Package`s; a malformed database is a PackageDbError naming
it. Standard library only (the rpm database is opened with sqlite3 from a
temporary copy).
"""

from __future__ import annotations

import contextlib
import re
import sqlite3
import struct
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from email.parser import BytesHeaderParser
from pathlib import Path


class PackageDbError(ValueError):
    """A package database is malformed or of an unreadable kind; the text names the file."""


@dataclass(frozen=True)
class Package:
    """One installed package, as its database states it."""

    type: str  # deb | apk | rpm | pypi
    name: str
    version: str
    arch: str | None = None
    source: str | None = None  # source package (deb, rpm), origin (apk)
    license: str | None = None  # as declared by the database, where it has one
    epoch: str | None = None  # rpm
    source_version: str | None = None  # deb: the source package's version where it differs


def _stanzas(text: str, where: str) -> Iterator[dict[str, str]]:
    """RFC 822-style paragraphs (dpkg `Field: value` with continuation lines)."""
    fields: dict[str, str] = {}
    last = None
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            if fields:
                yield fields
            fields, last = {}, None
        elif line[0] in " \t":
            if last is None:
                raise PackageDbError(f"{where}:{number}: continuation line before any field")
            fields[last] += "\n" + line.strip()
        else:
            name, sep, value = line.partition(":")
            if not sep or not name or " " in name:
                raise PackageDbError(f"{where}:{number}: not a 'Field: value' line: {line[:60]!r}")
            fields[name], last = value.strip(), name
    if fields:
        yield fields


def _text(data: bytes, where: str) -> str:
    try:
        return data.decode()
    except UnicodeDecodeError as err:
        raise PackageDbError(f"{where}: not UTF-8 text ({err.reason} at byte {err.start})") from None


def dpkg(data: bytes, where: str) -> list[Package]:
    """`var/lib/dpkg/status` or a distroless `status.d/*` file: packages whose status is installed."""
    found = []
    for fields in _stanzas(_text(data, where), where):
        if "Package" not in fields or "Version" not in fields:
            raise PackageDbError(f"{where}: a paragraph without Package/Version: {sorted(fields)}")
        if fields.get("Status", "install ok installed").split()[-1] != "installed":
            continue
        # `Source: name` or, when the binary's version differs (binNMU, own epoch), `Source: name (version)`
        source_name, _, source_version = fields.get("Source", "").partition(" ")
        found.append(
            Package(
                "deb",
                fields["Package"],
                fields["Version"],
                fields.get("Architecture"),
                source_name or None,
                source_version=source_version.strip().strip("()").strip() or None,
            )
        )
    return found


def apk(data: bytes, where: str) -> list[Package]:
    """Alpine's `lib/apk/db/installed` (`P:` name, `V:` version, `A:` arch, `L:` license, `o:` origin)."""
    found = []
    for number, block in enumerate(_text(data, where).split("\n\n"), 1):
        fields: dict[str, str] = {}
        for line in block.splitlines():
            key, sep, value = line.partition(":")
            if not sep or len(key) != 1:
                raise PackageDbError(f"{where}: package {number}: not a 'X:value' line: {line[:60]!r}")
            fields.setdefault(key, value)
        if not fields:
            continue
        if "P" not in fields or "V" not in fields:
            raise PackageDbError(f"{where}: package {number} has no P: or V: line")
        found.append(
            Package("apk", fields["P"], fields["V"], fields.get("A"), fields.get("o"), fields.get("L"))
        )
    return found


# rpm header tags and types (rpm's lib/rpmtag.h): a header is an index of (tag, type, offset,
# count) entries followed by a data store.
_RPM_TAGS = {1000: "name", 1001: "version", 1002: "release", 1003: "epoch", 1014: "license", 1022: "arch"}
_RPM_SOURCERPM = 1044
_RPM_INT32, _RPM_STRING, _RPM_I18NSTRING = 4, 6, 9


def rpm_header(blob: bytes, where: str) -> dict[str, str]:
    """The fields of one rpm header blob (as stored in rpmdb.sqlite's Packages table)."""
    try:
        count, size = struct.unpack_from(">II", blob, 0)
        store = 8 + 16 * count
        if store + size > len(blob):
            raise ValueError("header shorter than its index says")
        fields = {}
        for n in range(count):
            tag, kind, offset, _ = struct.unpack_from(">iIiI", blob, 8 + 16 * n)
            name = _RPM_TAGS.get(tag) or ("sourcerpm" if tag == _RPM_SOURCERPM else None)
            if name is None:
                continue
            if kind == _RPM_INT32:
                fields[name] = str(struct.unpack_from(">i", blob, store + offset)[0])
            elif kind in (_RPM_STRING, _RPM_I18NSTRING):
                end = blob.index(b"\0", store + offset)
                fields[name] = blob[store + offset : end].decode()
    except (struct.error, ValueError, UnicodeDecodeError) as err:
        raise PackageDbError(f"{where}: malformed rpm header ({err})") from None
    return fields


def rpm_sqlite(data: bytes, where: str) -> list[Package]:
    """rpm's sqlite database (`rpmdb.sqlite`), read from a temporary copy."""
    with tempfile.TemporaryDirectory(prefix="container-lock-rpmdb.") as tmp:
        path = Path(tmp) / "rpmdb.sqlite"
        path.write_bytes(data)
        try:
            with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True)) as db:
                rows = db.execute("SELECT hnum, blob FROM Packages ORDER BY hnum").fetchall()
        except sqlite3.Error as err:
            raise PackageDbError(f"{where}: not an rpm sqlite database ({err})") from None
    found = []
    for hnum, blob in rows:
        fields = rpm_header(bytes(blob), f"{where}: package {hnum}")
        if "name" not in fields or "version" not in fields:
            raise PackageDbError(f"{where}: package {hnum} has no name or version")
        if fields["name"] == "gpg-pubkey":
            continue  # imported signing keys, not packages
        version = f"{fields['version']}-{fields['release']}" if fields.get("release") else fields["version"]
        source = re.sub(r"-[^-]+-[^-]+\.src\.rpm$", "", fields.get("sourcerpm", "")) or None
        found.append(
            Package(
                "rpm",
                fields["name"],
                version,
                fields.get("arch"),
                source,
                fields.get("license"),
                fields.get("epoch"),
            )
        )
    return found


def python_metadata(data: bytes, where: str) -> list[Package]:
    """A `*.dist-info/METADATA` or `*.egg-info/PKG-INFO` file: one Python distribution."""
    headers = BytesHeaderParser().parsebytes(data)
    name, version = headers.get("Name"), headers.get("Version")
    if not name or not version:
        raise PackageDbError(f"{where}: no Name/Version header")
    license_ = headers.get("License-Expression") or headers.get("License") or None
    if license_ and ("\n" in license_ or len(license_) > 200):
        license_ = None  # the whole licence text, not a declaration
    return [Package("pypi", str(name), str(version), license=str(license_) if license_ else None)]


def os_release(data: bytes, where: str) -> dict[str, str]:
    """`KEY=value` pairs of os-release(5) (quotes removed)."""
    values = {}
    for line in _text(data, where).splitlines():
        key, sep, value = line.strip().partition("=")
        if sep and key and not key.startswith("#"):
            values[key] = value.strip().strip("\"'")
    return values
