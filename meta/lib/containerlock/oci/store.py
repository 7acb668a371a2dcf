"""The content-addressed blob store in DL_DIR: every byte verified against its digest."""

from __future__ import annotations

import fcntl
import hashlib
import io
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from ..files import CHUNK_SIZE, atomic_output, file_digest, sha256_digest


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
        with atomic_output(self.path(digest)) as out:
            h = hashlib.sha256()
            while chunk := stream.read(CHUNK_SIZE):
                h.update(chunk)
                out.write(chunk)
            if "sha256:" + h.hexdigest() != digest:
                raise ValueError(f"content hashes to sha256:{h.hexdigest()}, not {digest}")

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
