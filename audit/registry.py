"""Resolve tags to digests with the shared skopeo client (no blob is downloaded for an index)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass

from containerlock.fetch.skopeo import RegistryError, Skopeo, run_subprocess
from containerlock.files import sha256_digest
from containerlock.lock.lockfile import LockEntry
from containerlock.oci import manifest as mf
from containerlock.oci.image import index_platforms
from containerlock.oci.platform import Platform
from containerlock.oci.reference import ImageReference

from .registry_api import Session, Unsupported


@dataclass(frozen=True)
class Resolution:
    """A tag's current digest and per-platform manifests, or why it failed."""

    ref: ImageReference
    entry: LockEntry | None
    error: str | None = None


def resolve(ref: ImageReference, timeout: float = 60.0, session: Session | None = None) -> LockEntry:
    """The digest `ref`'s tag names now, and the manifests of its platforms.

    One HTTP request (two for a single-platform image: its config names the platform),
    with skopeo's settings; skopeo itself where registries.conf needs its full handling.
    """
    session = session or Session(timeout)
    try:
        raw = session.manifest(ref.registry, ref.repository, ref.tag)
        digest = sha256_digest(raw)
        doc = mf.load(raw)
        if mf.is_index(doc):
            return LockEntry(digest, index_platforms(doc))
        config_digest = mf.image_manifest(doc).config.digest
        config = json.loads(session.blob(ref.registry, ref.repository, config_digest))
    except Unsupported:
        return _resolve_with_skopeo(ref, timeout)
    except RegistryError as err:
        raise RegistryError(
            f"{ref.tagged}: manifest lookup from registry {ref.registry} failed: {err}"
        ) from None
    return LockEntry(digest, {str(_platform(config)): digest})


def _platform(config: dict) -> Platform:
    return Platform(str(config.get("os")), str(config.get("architecture")), config.get("variant") or None)


def _resolve_with_skopeo(ref: ImageReference, timeout: float) -> LockEntry:
    client = Skopeo(run_subprocess, ref.tagged, ref.registry, timeout=timeout)
    raw = client.inspect_raw(ref.tagged)
    digest = sha256_digest(raw)
    doc = mf.load(raw)
    if mf.is_index(doc):
        return LockEntry(digest, index_platforms(doc))
    config = json.loads(client.inspect_config(ref.by_digest(digest)))
    return LockEntry(digest, {str(_platform(config)): digest})


def resolve_all(
    refs: Iterable[ImageReference],
    jobs: int = 8,
    timeout: float = 60.0,
    progress: Callable[[int, int], None] | None = None,
) -> list[Resolution]:
    """Resolve in parallel (one session: tokens are shared); one failure does not stop the others.

    `progress(done, total)` is called as lookups finish. On KeyboardInterrupt the lookups not
    started are cancelled and the running ones abandoned (the caller exits at once).
    """
    session = Session(timeout)
    targets = list(refs)

    def one(ref: ImageReference) -> Resolution:
        try:
            return Resolution(ref, resolve(ref, timeout, session))
        except RegistryError as err:  # names the image already
            return Resolution(ref, None, str(err))
        except (mf.ManifestError, ValueError) as err:
            return Resolution(ref, None, f"{ref.tagged}: {err}")

    pool = ThreadPoolExecutor(max_workers=max(1, jobs))
    try:
        futures = [pool.submit(one, ref) for ref in targets]
        for done, _ in enumerate(as_completed(futures), 1):
            if progress is not None:
                progress(done, len(futures))
        results = [f.result() for f in futures]
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()
    return results
