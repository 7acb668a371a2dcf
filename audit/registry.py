"""Resolve tags to digests with skopeo (no blob is downloaded for an index)."""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from containerlock import manifest as mf
from containerlock.image import index_platforms
from containerlock.lockfile import LockEntry
from containerlock.platform import Platform
from containerlock.reference import ImageReference
from containerlock.registry_errors import explain


class RegistryError(RuntimeError):
    """A registry could not answer for one image; the text says which and why."""


@dataclass(frozen=True)
class Resolution:
    """A tag's current digest and per-platform manifests, or why it failed."""

    ref: ImageReference
    entry: LockEntry | None
    error: str | None = None


def skopeo_raw(args: list[str], timeout: float) -> bytes:
    """Run `skopeo <args>` and return stdout bytes; RegistryError with the cause otherwise."""
    try:
        result = subprocess.run(["skopeo", *args], capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise RegistryError(f"timed out after {timeout:.0f} s") from None
    except FileNotFoundError:
        raise RegistryError("skopeo is not installed (Debian: apt install skopeo)") from None
    if result.returncode:
        raise RegistryError(explain(result.stderr.decode(errors="replace")))
    return result.stdout


def resolve(ref: ImageReference, timeout: float = 60.0) -> LockEntry:
    """The digest `ref`'s tag names now, and the manifests of its platforms."""
    raw = skopeo_raw(["inspect", "--raw", f"docker://{ref.tagged}"], timeout)
    digest = "sha256:" + hashlib.sha256(raw).hexdigest()
    doc = mf.load(raw)
    if mf.is_index(doc):
        return LockEntry(digest, index_platforms(doc))
    config = json.loads(
        skopeo_raw(["inspect", "--config", "--raw", f"docker://{ref.by_digest(digest)}"], timeout)
    )
    platform = Platform(str(config.get("os")), str(config.get("architecture")), config.get("variant") or None)
    return LockEntry(digest, {str(platform): digest})


def resolve_all(
    refs: Iterable[ImageReference],
    jobs: int = 8,
    timeout: float = 60.0,
    resolver: Callable[[ImageReference, float], LockEntry] = resolve,
) -> list[Resolution]:
    """Resolve in parallel; one failure does not stop the others."""

    def one(ref: ImageReference) -> Resolution:
        try:
            return Resolution(ref, resolver(ref, timeout))
        except (RegistryError, mf.ManifestError, ValueError) as err:
            return Resolution(ref, None, f"{ref.tagged}: {err}")

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        return list(pool.map(one, refs))
