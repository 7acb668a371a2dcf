"""Read an image's layers in order, as the engine would stack them, keeping only the files asked for.

Layers are gzip, zstd or uncompressed tars (told apart by their first bytes), read
as streams: nothing is extracted to disk. OCI whiteouts apply to the layers below:
`.wh.<name>` removes `<name>`, `.wh..wh..opq` empties its directory. Member names
that are absolute or climb with `..` are refused, naming the image, layer and file.
Standard library and the `zstd` host tool only.
"""

from __future__ import annotations

import contextlib
import subprocess
import tarfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"
_GZIP, _ZSTD = b"\x1f\x8b", b"\x28\xb5\x2f\xfd"
MAX_FILE = 256 << 20  # a package database larger than this is not read into memory


class LayerError(ValueError):
    """A layer cannot be read, or holds a member that is not a safe path; the text names it."""


@dataclass(frozen=True)
class FileEntry:
    """A wanted file as the stacked layers leave it: its bytes, or the target of its symlink."""

    layer: str  # digest of the layer that wrote it
    data: bytes | None
    link: str | None = None


@dataclass
class LayerChanges:
    """What one layer does to the files below: removals first, then its own files."""

    removed: set[str]
    opaque: set[str]
    written: dict[str, FileEntry]


def normalise(name: str, where: str) -> str:
    """A tar member name as a path below the image root (`./a/b` → `a/b`); LayerError if unsafe."""
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts:
        raise LayerError(f"{where}: member '{name}' is absolute or climbs out with '..'; refusing the layer")
    return "/".join(p for p in path.parts if p not in ("", "."))


@contextlib.contextmanager
def open_layer(blob: Path) -> Iterator[tarfile.TarFile]:
    """The layer as a streaming tar, whatever its compression."""
    with blob.open("rb") as raw:
        magic = raw.read(4)
    if magic.startswith(_ZSTD):
        proc = subprocess.Popen(["zstd", "-dcq", "--", str(blob)], stdout=subprocess.PIPE)
        try:
            with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
                yield tar
        finally:
            if proc.stdout:
                proc.stdout.close()
            proc.kill()
            proc.wait()
        return
    with (
        blob.open("rb") as raw,
        tarfile.open(fileobj=raw, mode="r|gz" if magic.startswith(_GZIP) else "r|") as tar,
    ):
        yield tar


def read_changes(blob: Path, digest: str, wanted: Callable[[str], bool], where: str) -> LayerChanges:
    """One layer's whiteouts and wanted files (regular files' bytes, symlinks' targets)."""
    changes = LayerChanges(set(), set(), {})
    try:
        with open_layer(blob) as tar:
            for member in tar:
                path = normalise(member.name, where)
                parent, _, base = path.rpartition("/")
                if base == OPAQUE:
                    changes.opaque.add(parent)
                elif base.startswith(WHITEOUT):
                    changes.removed.add(f"{parent}/{base[len(WHITEOUT) :]}".lstrip("/"))
                elif wanted(path) and (member.isfile() or member.issym()):
                    changes.written[path] = _entry(tar, member, digest, f"{where}: {path}")
    except (tarfile.TarError, EOFError, OSError, ValueError) as err:
        if isinstance(err, LayerError):
            raise
        raise LayerError(f"{where}: not a readable tar layer ({err})") from None
    return changes


def _entry(tar: tarfile.TarFile, member: tarfile.TarInfo, digest: str, where: str) -> FileEntry:
    if member.issym():
        return FileEntry(digest, None, member.linkname)
    if member.size > MAX_FILE:
        raise LayerError(f"{where}: {member.size} bytes, more than a package database may hold")
    stream: IO[bytes] | None = tar.extractfile(member)
    return FileEntry(digest, stream.read() if stream else b"")


def apply(files: dict[str, FileEntry], changes: LayerChanges) -> None:
    """Stack one layer's changes on `files` (in place)."""
    for directory in changes.opaque:
        prefix = f"{directory}/" if directory else ""
        for path in [p for p in files if p.startswith(prefix)]:
            del files[path]
    for gone in changes.removed:
        for path in [p for p in files if p == gone or p.startswith(f"{gone}/")]:
            del files[path]
    files.update(changes.written)


def resolve(files: dict[str, FileEntry], path: str, where: str, hops: int = 16) -> FileEntry | None:
    """The file at `path`, following symlinks inside the image root; LayerError if a link climbs out."""
    for _ in range(hops):
        entry = files.get(path)
        if entry is None or entry.link is None:
            return entry
        base = PurePosixPath("/") if entry.link.startswith("/") else PurePosixPath("/", path).parent
        parts: list[str] = []
        for part in (base / entry.link).parts[1:]:
            if part == "..":
                if not parts:
                    raise LayerError(f"{where}: symlink {path} -> {entry.link} points outside the image")
                parts.pop()
            elif part != ".":
                parts.append(part)
        path = "/".join(parts)
    raise LayerError(f"{where}: symlink loop at {path}")


def stack(
    blobs: Sequence[tuple[str, Path]], wanted: Callable[[str], bool], image: str
) -> Iterator[tuple[str, dict[str, FileEntry]]]:
    """After each layer (digest, blob path): its digest and the stacked wanted files."""
    files: dict[str, FileEntry] = {}
    for digest, blob in blobs:
        changes = read_changes(blob, digest, wanted, f"{image}: layer {digest}")
        apply(files, changes)
        yield digest, files
