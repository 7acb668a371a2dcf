"""The registry as a source of images (an `image.Reader`): tags resolved once, manifests by digest
(verified, kept in the store), missing blobs pulled under per-blob locks.

No BitBake here: the fetcher supplies the skopeo client and the progress factory, asks
`image.first_complete` for the image and turns these errors into FetchErrors naming the URL.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from ..files import sha256_digest
from ..oci import manifest as mf
from ..oci.image import ResolvedImage
from ..oci.reference import ImageReference
from ..oci.store import BlobStore
from .skopeo import Skopeo

# Makes the log object skopeo's output goes to, given the number of blobs to copy (task progress).
ProgressFactory = Callable[[int], Any]


class PullError(RuntimeError):
    """The registry's bytes are not what was asked for; nothing of them is kept."""


@dataclass(frozen=True)
class Puller:
    """Reads one reference's content from the registry into `store`; `scratch` holds temporary files."""

    skopeo: Skopeo
    store: BlobStore
    scratch: Path
    ref: ImageReference
    progress: ProgressFactory | None = None
    # The registry is the last source: what it lacks is an error, not a reason to ask another.
    absent: ClassVar[tuple[type[Exception], ...]] = ()

    def resolve_tag(self) -> str:
        """The digest the tag names now; its manifest bytes are kept, so the digest cannot race."""
        raw = self.skopeo.inspect_raw(self.ref.tagged, self.scratch)
        digest = sha256_digest(raw)
        self.store.put(digest, raw)
        return digest

    def tag_moved_from(self, pinned: str) -> str | None:
        """The tag's digest if it no longer names `pinned` (nor an index holding it), else None."""
        raw = self.skopeo.inspect_raw(self.ref.tagged, self.scratch)
        digest = sha256_digest(raw)
        if digest == pinned:
            self.store.put(digest, raw)  # spares fetching the same bytes by digest
            return None
        doc = mf.load(raw)
        if mf.is_index(doc) and any(m.get("digest") == pinned for m in doc.get("manifests", [])):
            return None  # the pin is one platform of the index the tag names
        return digest

    def read(self, digest: str) -> bytes:
        """The manifest with `digest`: from the store, else from the registry (verified, then kept)."""
        try:
            return self.store.read(digest)
        except FileNotFoundError:
            pass
        raw = self.skopeo.inspect_raw(self.ref.by_digest(digest), self.scratch)
        if sha256_digest(raw) != digest:
            raise PullError(
                f"the registry returned a manifest that hashes to {sha256_digest(raw)}, not {digest}; "
                "refusing it"
            )
        self.store.put(digest, raw)
        return raw

    def complete(self, image: ResolvedImage) -> None:
        """Pull the blobs of `image` the store lacks (or holds corrupt), in one copy, under their locks."""
        blobs = image.manifest.blobs
        wanted = self._missing(blobs)
        if not wanted:
            return
        with self.store.locked(b.digest for b in wanted):
            missing = self._missing(wanted)  # another fetch may have brought some while we waited
            if missing:
                log = self.progress(len(blobs)) if self.progress else None
                self._copy(image.manifest_digest, missing, log)

    def _missing(self, blobs: Iterable[mf.Descriptor]) -> list[mf.Descriptor]:
        """The blobs not in the store with their bytes (a corrupt copy is removed)."""
        return [b for b in blobs if not self.store.is_valid(b.digest, b.size)]

    def _copy(self, manifest_digest: str, missing: list[mf.Descriptor], log: Any) -> None:
        self.scratch.mkdir(parents=True, exist_ok=True)
        remove_orphans(self.scratch)
        layout = Path(tempfile.mkdtemp(dir=self.scratch, prefix=f"layout.{os.getpid()}."))
        try:
            # skopeo skips blobs already in the shared directory; --preserve-digests keeps the
            # registry's bytes. It writes each blob to a temporary file and renames it.
            self.skopeo.copy(
                f"docker://{self.ref.by_digest(manifest_digest)}",
                f"oci:{layout}",
                "--preserve-digests",
                "--dest-shared-blob-dir",
                str(self.store.root),
                what="blob download",
                log=log,
            )
        finally:
            shutil.rmtree(layout, ignore_errors=True)
        bad = [b.digest for b in self._missing(missing)]
        if bad:
            raise PullError(f"downloaded blobs do not match their digests: {', '.join(bad)}")


def remove_orphans(scratch: Path) -> None:
    """Remove scratch files of fetches that were killed (their process is gone)."""
    for entry in scratch.glob("*.*.*"):
        pid = entry.name.split(".")[1]
        if not pid.isdigit() or Path(f"/proc/{pid}").exists():
            continue
        if entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
