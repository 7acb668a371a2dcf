"""Files written all-or-nothing, and sha256 digests of bytes and files (standard library only)."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

CHUNK_SIZE = 1 << 20

# Files this process has hashed, keyed by identity and change time: a file that
# is modified or replaced gets a new key and is hashed again.
_hashed: dict[tuple[int, int, int, int, int], str] = {}


def sha256_digest(data: bytes) -> str:
    """`sha256:<hex>` of `data`."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def file_digest(path: Path) -> str:
    """`sha256:<hex>` of a file's content (cached per process while the file is unchanged)."""
    st = path.stat()
    key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    if key not in _hashed:
        h = hashlib.sha256()
        with path.open("rb") as f:
            while chunk := f.read(CHUNK_SIZE):
                h.update(chunk)
        _hashed[key] = "sha256:" + h.hexdigest()
    return _hashed[key]


@contextmanager
def atomic_output(path: Path, sync: bool = False) -> Iterator[BinaryIO]:
    """A file to write `path`'s new content into: renamed over `path` only if the block succeeds.

    Readers see the old file or the whole new one, never a part; on an error
    (or a kill) only a hidden temporary file next to `path` can be left.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as out:
            yield out
            out.flush()
            if sync:
                os.fsync(out.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write(path: Path, data: bytes) -> None:
    """Write `data` to `path` all-or-nothing, synced to disk before the rename."""
    with atomic_output(path, sync=True) as out:
        out.write(data)


def canonical_json(obj: Any) -> bytes:
    """Deterministic JSON: same object, same bytes."""
    return (json.dumps(obj, sort_keys=True, indent=2) + "\n").encode()
