"""What kind of JSON document a file holds: one recogniser for every command that reads them.

Commands that take SBOMs, build manifests or lockfiles name the kind of a file they cannot
use ("this is a container-lock lockfile") instead of failing on one of its fields.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

CYCLONEDX = "cyclonedx"
SPDX = "spdx"
LOCKFILE = "lockfile"
BUILD_MANIFEST = "build-manifest"
OTHER = "other"

_NAMES = {
    CYCLONEDX: "a CycloneDX document",
    SPDX: "an SPDX document",
    LOCKFILE: "a container-lock lockfile",
    BUILD_MANIFEST: "a container-lock build manifest",
}


def kind(doc: Any) -> str:
    """The kind of a parsed JSON document: one of the constants above."""
    if not isinstance(doc, dict):
        return OTHER
    if doc.get("bomFormat") == "CycloneDX":
        return CYCLONEDX
    if "spdxVersion" in doc or "SPDXID" in doc:
        return SPDX
    if "package" in doc and not isinstance(doc.get("images"), dict):  # any version: it says which
        return BUILD_MANIFEST
    if isinstance(doc.get("images"), dict) and "package" not in doc:
        return LOCKFILE
    return OTHER


def describe(doc: Any) -> str:
    """`doc` in a few words, for a message: 'a container-lock lockfile', 'an empty JSON object'…"""
    found = kind(doc)
    if found != OTHER:
        return _NAMES[found]
    if isinstance(doc, dict):
        return "an empty JSON object" if not doc else "JSON of another kind"
    if isinstance(doc, list):
        return "a JSON array"
    return "a JSON value that is not an object"


def of_file(path: Path) -> str:
    """The kind of the document in the file at `path` (OTHER when it cannot be read or is not JSON)."""
    try:
        return kind(json.loads(path.read_bytes()))
    except (OSError, ValueError):
        return OTHER


def mistaken(path: Path, expected: str, wanted: str) -> str | None:
    """A message for a file given where a document of kind `expected` is read but holding one of another
    known kind ("x.json: this is a CycloneDX document, not a container-lock lockfile; give …"); None
    when it is of the `expected` kind or of no kind named here (its own error says more then)."""
    found = of_file(path)
    if found in (expected, OTHER):
        return None
    return f"{path}: this is {_NAMES[found]}, not {_NAMES[expected]}; give {wanted}"
