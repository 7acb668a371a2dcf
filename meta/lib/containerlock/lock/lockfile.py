"""The lockfile: tag → digest pins, one JSON file, shared by the layer and the CLI.

Deterministic (same content ⇒ same bytes), diff-friendly, versioned, standard
library only. Writers take an exclusive `flock` on `<lockfile>.lock`, re-read
the file, apply their change and rename a temporary file into place, so
parallel writers (BitBake tasks, the CLI) never lose an entry and readers
never see a half-written file.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..files import atomic_write
from ..oci.platform import Platform, PlatformError
from ..oci.reference import ImageReference, InvalidReference, parse_url, validate_digest

LOCK_VERSION = 1


class LockfileError(ValueError):
    """The lockfile cannot be used; the text names the file, where, and what to do."""


@dataclass(frozen=True)
class LockEntry:
    """What one `host[:port]/path:tag` was pinned to."""

    digest: str
    platforms: Mapping[str, str] = field(default_factory=dict)
    # Signatures checked by `container-lock verify --record`: digest signed, kind, signer, source.
    verified: tuple[Mapping[str, str], ...] = ()
    # SLSA provenance checked by `container-lock verify --provenance --record` (provenance.FACT_KEYS).
    provenance: tuple[Mapping[str, str], ...] = ()

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"digest": self.digest, "platforms": dict(sorted(self.platforms.items()))}
        for name, records in (("verified", self.verified), ("provenance", self.provenance)):
            if records:
                doc[name] = sorted(
                    (dict(sorted(v.items())) for v in records), key=lambda v: json.dumps(v, sort_keys=True)
                )
        return doc


@dataclass
class Lock:
    """The lockfile's content: entries keyed by normalised reference."""

    entries: dict[str, LockEntry] = field(default_factory=dict)

    def dumps(self) -> bytes:
        """Canonical bytes: sorted keys, two-space indent, final newline."""
        doc = {
            "version": LOCK_VERSION,
            "images": {key: self.entries[key].to_json() for key in sorted(self.entries)},
        }
        return (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode()

    def get(self, key: str) -> LockEntry | None:
        return self.entries.get(key)


def key_reference(key: str) -> ImageReference:
    """The image reference a lock key `host[:port]/path:tag` names (InvalidReference if malformed)."""
    name, sep, tag = key.rpartition(":")
    if not sep or "/" in tag:
        raise InvalidReference(f"lock key '{key}' is not host[:port]/path:tag")
    return parse_url(f"docker://{name};tag={tag}")


def normalise_key(text: str) -> str:
    """`docker://…` URL or `host/path:tag` → the lock key `host[:port]/path:tag`."""
    if text.startswith("docker://"):
        return parse_url(text).tagged
    name, tag = text, "latest"
    last = text.rsplit("/", 1)[-1]
    if ":" in last:
        name, tag = text.rsplit(":", 1)
    return parse_url(f"docker://{name};tag={tag}").tagged


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise LockfileError(f"key '{key}' appears twice")
        seen[key] = value
    return seen


def _entry(key: str, raw: Any, where: str) -> LockEntry:
    if not isinstance(raw, dict) or not isinstance(raw.get("digest"), str):
        raise LockfileError(f"{where}: entry '{key}' needs a \"digest\" string")
    digest = validate_digest(raw["digest"], f"{where}: entry '{key}'")
    platforms = raw.get("platforms", {})
    if not isinstance(platforms, dict):
        raise LockfileError(f"{where}: entry '{key}': \"platforms\" must be an object")
    for name, value in platforms.items():
        Platform.parse(name)
        if not isinstance(value, str):
            raise LockfileError(f"{where}: entry '{key}': platform '{name}' needs a digest string")
        validate_digest(value, f"{where}: entry '{key}' platform '{name}'")
    records = {}
    for name in ("verified", "provenance"):
        value = raw.get(name, [])
        if not isinstance(value, list) or not all(
            isinstance(v, dict) and all(isinstance(x, str) for x in v.values()) for v in value
        ):
            raise LockfileError(f"{where}: entry '{key}': \"{name}\" must be a list of objects of strings")
        records[name] = tuple(value)
    return LockEntry(digest, dict(platforms), records["verified"], records["provenance"])


def parse(text: str, where: str) -> Lock:
    """Parse lockfile text; `where` (the path) goes into every error."""
    try:
        doc = json.loads(text, object_pairs_hook=_no_duplicates)
    except json.JSONDecodeError as err:
        raise LockfileError(
            f"{where}:{err.lineno}:{err.colno}: not valid JSON ({err.msg}); fix it by hand, or "
            "delete it and run `container-lock update`"
        ) from None
    except LockfileError as err:
        raise LockfileError(f"{where}: {err}") from None
    if not isinstance(doc, dict):
        raise LockfileError(f"{where}: the top level must be a JSON object")
    if "images" not in doc:  # every lockfile has it (empty or not); an SBOM has "version": 1 too
        raise LockfileError(
            f'{where}: not a container-lock lockfile (no "images"); give the lockfile `container-lock '
            "update` wrote"
        )
    if doc.get("version") != LOCK_VERSION:
        raise LockfileError(
            f"{where}: lockfile version {doc.get('version')!r} is not {LOCK_VERSION}; "
            "use a container-lock release that writes this version, or regenerate the file"
        )
    images = doc.get("images", {})
    if not isinstance(images, dict):
        raise LockfileError(f'{where}: "images" must be an object')
    entries = {}
    for key, raw in images.items():
        try:
            normal = normalise_key(key)
        except InvalidReference as err:
            raise LockfileError(f"{where}: key '{key}': {err}") from None
        if normal != key:
            raise LockfileError(f"{where}: key '{key}' is not normalised; write '{normal}'")
        try:
            entries[key] = _entry(key, raw, where)
        except InvalidReference as err:  # validate_digest named the file and the entry
            raise LockfileError(str(err)) from None
        except PlatformError as err:
            raise LockfileError(f"{where}: entry '{key}': {err}") from None
    return Lock(entries)


def load(path: Path) -> Lock:
    """Read a lockfile; a missing file is an empty lock."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return Lock()
    except UnicodeDecodeError:
        raise LockfileError(f"{path}: not UTF-8 text") from None
    except IsADirectoryError:
        raise LockfileError(f"{path}: is a directory; give the lockfile's path") from None
    return parse(text, str(path))


@contextmanager
def _exclusive(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def update(path: Path, change: Callable[[Lock], None]) -> bool:
    """Apply `change` to the current lock under an exclusive lock; write if it changed.

    Returns whether the file was written (an unchanged lock is not rewritten).
    """
    with _exclusive(path):
        current = load(path)
        before = current.dumps() if path.exists() else b""
        change(current)
        after = current.dumps()
        if after == before:
            return False
        try:
            atomic_write(path, after)
        except OSError as err:  # name the lockfile, not the temporary file beside it
            raise OSError(err.errno, err.strerror or str(err), str(path)) from None
        return True


def record(path: Path, key: str, digest: str, platform: str | None, manifest: str | None) -> bool:
    """Record a resolved tag (from a build's MissingChecksumEvent). Returns whether it wrote."""

    def change(lock: Lock) -> None:
        old = lock.entries.get(key)
        same = old is not None and old.digest == digest
        platforms = dict(old.platforms) if same else {}
        if platform and manifest:
            platforms[platform] = manifest
        kept = (old.verified, old.provenance) if same and old is not None else ((), ())
        lock.entries[key] = LockEntry(digest, platforms, *kept)

    return update(path, change)
