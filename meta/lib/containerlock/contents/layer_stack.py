"""Read an image's layers in order, as the engine would stack them, keeping only the files asked for.

Layers are gzip, zstd or uncompressed tars (told apart by their first bytes), read
as streams: nothing is extracted to disk. OCI whiteouts apply to the layers below:
`.wh.<name>` removes `<name>`, `.wh..wh..opq` empties its directory. Member names
that are absolute or climb with `..` are refused, naming the image, layer and file.
Standard library and the `zstd` host tool only.
"""

from __future__ import annotations

import contextlib
import io
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
PROGRESS_STEP = 4 << 20  # bytes of a layer read between progress calls
Progress = Callable[[int, int], None]


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
    parts = name.split("/")
    if name.startswith("/") or ".." in parts:
        raise LayerError(f"{where}: member '{name}' is absolute or climbs out with '..'; refusing the layer")
    return "/".join(p for p in parts if p not in ("", "."))


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


def read_changes(
    blob: Path,
    digest: str,
    wanted: Callable[[str], bool],
    where: str,
    position: Callable[[int], None] | None = None,
) -> LayerChanges:
    """One layer's whiteouts and wanted files (regular files' bytes, symlinks' targets).

    `position(n)` is called now and then with the number of the blob's bytes read so far
    (gzip and uncompressed layers; a zstd layer is read by the `zstd` tool).
    """
    changes = LayerChanges(set(), set(), {})
    try:
        with open_layer(blob) as tar:
            raw = getattr(tar.fileobj, "fileobj", tar.fileobj) if position is not None else None
            tell = raw.tell if isinstance(raw, io.BufferedReader) and raw.seekable() else None
            shown = 0
            for member in tar:
                if position is not None and tell is not None and (at := tell()) - shown >= PROGRESS_STEP:
                    shown = at
                    position(at)
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
    """Stack one layer's changes on `files` (in place).

    One pass over the files, looking each one's directories up in the layer's whiteout
    sets: linear in files + whiteouts (not files × whiteouts).
    """
    if changes.opaque or changes.removed:
        for path in [p for p in files if _hidden(p, changes.removed, changes.opaque)]:
            del files[path]
    files.update(changes.written)


def _hidden(path: str, removed: set[str], opaque: set[str]) -> bool:
    """Whether `path` is removed (itself or a directory above it) or below an opaque directory."""
    if path in removed or "" in opaque:
        return True
    end = path.rfind("/")
    while end > 0:
        directory = path[:end]
        if directory in removed or directory in opaque:
            return True
        end = path.rfind("/", 0, end)
    return False


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
    blobs: Sequence[tuple[str, Path]],
    wanted: Callable[[str], bool],
    image: str,
    progress: Progress | None = None,
) -> Iterator[tuple[str, dict[str, FileEntry]]]:
    """After each layer (digest, blob path): its digest and the stacked wanted files.

    `progress(done, total)`: bytes of the layer blobs read, of their total size on disk
    (called before the first layer, during gzip and uncompressed layers, after each layer).
    """
    files: dict[str, FileEntry] = {}
    sizes = [_size(blob) for _, blob in blobs] if progress is not None else []
    total = sum(sizes)
    done = 0
    if progress is not None:
        progress(0, total)
    for n, (digest, blob) in enumerate(blobs):
        position = None
        if progress is not None:
            position = _within(progress, done, sizes[n], total)
        changes = read_changes(blob, digest, wanted, f"{image}: layer {digest}", position)
        apply(files, changes)
        if progress is not None:
            done += sizes[n]
            progress(done, total)
        yield digest, files


def _within(progress: Progress, base: int, size: int, total: int) -> Callable[[int], None]:
    """Progress inside one layer of `size` bytes that starts `base` bytes into the blobs."""
    return lambda at: progress(base + min(at, size), total)


def _size(blob: Path) -> int:
    try:
        return blob.stat().st_size
    except OSError:
        return 0  # read_changes names the missing layer
