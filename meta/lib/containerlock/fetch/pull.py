"""Registry → blob store: tags resolved once, manifests by digest (verified), blobs under per-blob locks.

No BitBake here: the fetcher supplies the skopeo client and turns these errors
into FetchErrors naming the URL.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..files import sha256_digest
from ..oci import manifest as mf
from ..oci.image import ResolvedImage, check_config, resolve
from ..oci.platform import Platform
from ..oci.reference import ImageReference
from ..oci.store import BlobStore
from .skopeo import Skopeo

# Makes the log object skopeo's output goes to, given the number of blobs to copy (task progress).
ProgressFactory = Callable[[int], Any]


class PullError(RuntimeError):
    """The registry's bytes are not what was asked for; nothing of them is kept."""


@dataclass(frozen=True)
class Puller:
    """Pulls one reference's content into `store`; `scratch` holds temporary files."""

    skopeo: Skopeo
    store: BlobStore
    scratch: Path
    ref: ImageReference

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

    def manifest(self, digest: str) -> bytes:
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

    def pull(self, digest: str, platform: Platform, progress: ProgressFactory | None = None) -> ResolvedImage:
        """`digest` for `platform`: resolved (manifests from the store, else the registry), missing blobs
        pulled, config checked."""
        image = resolve(self.manifest, digest, platform)
        self._blobs(image.manifest_digest, image.manifest, progress)
        return check_config(self.store, image)

    def _blobs(
        self, manifest_digest: str, manifest: mf.ImageManifest, progress: ProgressFactory | None
    ) -> None:
        wanted = [b for b in manifest.blobs if not self.store.is_valid(b.digest, b.size)]
        if not wanted:
            return
        with self.store.locked(b.digest for b in wanted):
            # Another fetch may have brought some of them while we waited.
            missing = [b for b in wanted if not self.store.is_valid(b.digest, b.size)]
            if missing:
                self._copy(manifest_digest, missing, progress(len(manifest.blobs)) if progress else None)

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
        bad = [b.digest for b in missing if not self.store.is_valid(b.digest, b.size)]
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
