"""The content-addressed blob store in DL_DIR: every byte verified against its digest."""

from __future__ import annotations

import fcntl
import hashlib
import io
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

_CHUNK = 1 << 20

# Files this process has hashed, keyed by identity and change time: a file that
# is modified or replaced gets a new key and is hashed again.
_verified: dict[tuple[int, int, int, int, int], str] = {}


def sha256_digest(data: bytes) -> str:
    """`sha256:<hex>` of `data`."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def file_digest(path: Path) -> str:
    """`sha256:<hex>` of a file's content (cached per process while the file is unchanged)."""
    st = path.stat()
    key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    if key not in _verified:
        h = hashlib.sha256()
        with path.open("rb") as f:
            while chunk := f.read(_CHUNK):
                h.update(chunk)
        _verified[key] = "sha256:" + h.hexdigest()
    return _verified[key]


def atomic_write(path: Path, data: bytes) -> None:
    """Write `data` to `path` via a temporary file and rename: readers see all or nothing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def canonical_json(obj: Any) -> bytes:
    """Deterministic JSON: same object, same bytes."""
    return (json.dumps(obj, sort_keys=True, indent=2) + "\n").encode()


class BlobStore:
    """Blobs under `<root>/sha256/<hex>`: the layout skopeo's `--dest-shared-blob-dir` writes."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, digest: str) -> Path:
        """Where the blob with `digest` lives (the digest is validated by the caller)."""
        algorithm, _, hexpart = digest.partition(":")
        return self.root / algorithm / hexpart

    def is_valid(self, digest: str, size: int | None = None) -> bool:
        """Is the blob present with exactly these bytes? A bad copy is removed."""
        path = self.path(digest)
        try:
            if size is not None and path.stat().st_size != size:
                raise ValueError("size")
            if file_digest(path) == digest:
                return True
        except FileNotFoundError:
            return False
        except ValueError:
            pass
        self.discard(digest)
        return False

    def discard(self, digest: str) -> None:
        """Remove a blob that failed verification (renamed first: never half-removed)."""
        path = self.path(digest)
        try:
            doomed = path.with_name(f".bad.{path.name}.{os.getpid()}")
            os.replace(path, doomed)
            doomed.unlink()
        except FileNotFoundError:
            pass

    def read(self, digest: str) -> bytes:
        """The blob's bytes, verified; FileNotFoundError if absent or corrupt."""
        path = self.path(digest)
        data = path.read_bytes()
        if sha256_digest(data) != digest:
            self.discard(digest)
            raise FileNotFoundError(f"blob {digest} in {self.root} was corrupt and is removed")
        return data

    def put_stream(self, digest: str, stream: BinaryIO) -> None:
        """Store a stream's bytes under `digest` if they hash to it (checked before the rename)."""
        if self.is_valid(digest):
            return
        path = self.path(digest)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        try:
            h = hashlib.sha256()
            with os.fdopen(fd, "wb") as out:
                while chunk := stream.read(_CHUNK):
                    h.update(chunk)
                    out.write(chunk)
            if "sha256:" + h.hexdigest() != digest:
                raise ValueError(f"content hashes to sha256:{h.hexdigest()}, not {digest}")
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @contextmanager
    def locked(self, digests: Iterable[str]) -> Iterator[None]:
        """Hold exclusive locks on these blobs (taken in sorted order: no deadlock).

        Fetches of different images that share a blob take turns, so the blob is
        downloaded once, by whoever comes first.
        """
        fds = []
        try:
            for digest in sorted(set(digests)):
                lock = self.root.parent / "locks" / digest.replace(":", "-")
                lock.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
                fds.append(fd)
                fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            for fd in fds:
                os.close(fd)

    def put(self, digest: str, data: bytes) -> None:
        """Store bytes that hash to `digest` (checked), atomically."""
        self.put_stream(digest, io.BytesIO(data))
