"""Package databases as distributions write them, generated for test images.

dpkg status paragraphs, apk's installed database, rpm's sqlite database (headers in
rpm's binary header format: an index of (tag, type, offset, count) entries and a
data store, as rpm's lib/header.c writes them) and Python METADATA files.
"""

from __future__ import annotations

import sqlite3
import struct
import tempfile
from pathlib import Path

RPM_STRING, RPM_INT32 = 6, 4
RPM_TAGS = {"name": 1000, "version": 1001, "release": 1002, "epoch": 1003, "license": 1014, "arch": 1022}
RPM_SOURCERPM = 1044


def dpkg_status(*packages: dict[str, str]) -> bytes:
    """A `var/lib/dpkg/status` of installed packages (Package, Version, Architecture, Source…)."""
    paragraphs = []
    for fields in packages:
        lines = {"Status": "install ok installed", **fields}
        paragraphs.append("".join(f"{k}: {v}\n" for k, v in lines.items()))
    return "\n".join(paragraphs).encode()


def apk_installed(*packages: dict[str, str]) -> bytes:
    """`lib/apk/db/installed`: one block per package of single-letter fields."""
    return "".join("".join(f"{k}:{v}\n" for k, v in p.items()) + "\n" for p in packages).encode()


def rpm_header(fields: dict[str, str | int]) -> bytes:
    """One rpm header blob (what rpmdb.sqlite's Packages table stores)."""
    entries, store = [], b""
    for name, value in fields.items():
        tag = RPM_TAGS.get(name) or (RPM_SOURCERPM if name == "sourcerpm" else None)
        if tag is None:
            raise ValueError(name)
        if isinstance(value, int):
            store += b"\0" * (-len(store) % 4)  # int32 values are 4-aligned
            entries.append(struct.pack(">iIiI", tag, RPM_INT32, len(store), 1))
            store += struct.pack(">i", value)
        else:
            entries.append(struct.pack(">iIiI", tag, RPM_STRING, len(store), 1))
            store += value.encode() + b"\0"
    return struct.pack(">II", len(entries), len(store)) + b"".join(entries) + store


def rpmdb_sqlite(*packages: dict[str, str | int]) -> bytes:
    """An rpm sqlite database (`rpmdb.sqlite`) holding these package headers."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "rpmdb.sqlite"
        db = sqlite3.connect(path)
        db.execute("CREATE TABLE Packages (hnum INTEGER PRIMARY KEY AUTOINCREMENT, blob BLOB NOT NULL)")
        db.executemany("INSERT INTO Packages (blob) VALUES (?)", [(rpm_header(p),) for p in packages])
        db.commit()
        db.close()
        return path.read_bytes()


def python_metadata(name: str, version: str, license_: str | None = None) -> bytes:
    """A wheel's `*.dist-info/METADATA`."""
    text = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    return (text + (f"License: {license_}\n" if license_ else "") + "\nA description.\n").encode()


def os_release(pretty: str, os_id: str, version_id: str) -> bytes:
    return f'PRETTY_NAME="{pretty}"\nID={os_id}\nVERSION_ID="{version_id}"\n'.encode()
