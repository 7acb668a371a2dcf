"""The `docker://` fetcher: registry content pulled by digest into a verified DL_DIR store."""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import bb
import bb.event
from bb.fetch2 import (
    FetchError,
    FetchMethod,
    MissingChecksumEvent,
    NoChecksumError,
    check_network_access,
    logger,
)

from . import manifest as mf
from . import mirror, policy, skopeo
from .image import ResolvedImage, blobs_valid, platform_manifest_digest, resolve
from .platform import BuildArches, Platform, PlatformError, choose_platform
from .progress import SkopeoCopyProgress
from .reference import ImageReference, InvalidReference, parse_url, redact
from .store import BlobStore, atomic_write, canonical_json, sha256_digest

STORE_DIR = "containers"
UNPACK_DIR = "container-images"
RECORD_VERSION = 1


def _strictness(d: Any) -> str:
    return d.getVar("BB_STRICT_CHECKSUM") or "0"


def store_root(d: Any) -> Path:
    """`${DL_DIR}/containers`: blobs, image records and temporary files."""
    return Path(d.getVar("DL_DIR")) / STORE_DIR


def _skopeo(ud: Any, d: Any) -> skopeo.Skopeo:
    return skopeo.Skopeo(d, ud.image.tagged, ud.image.registry, ud.url)


def unpack_dirname(image: ImageReference) -> str:
    """The directory under `${WORKDIR}/container-images` that holds the image's OCI layout."""
    return f"{image.fs_name}@{image.tag}"


class DockerRegistryFetcher(FetchMethod):
    """Fetch `docker://host[:port]/path;tag=…;digest=sha256:…` with skopeo."""

    def supports(self, ud: Any, d: Any) -> bool:
        return ud.type == "docker"

    def supports_checksum(self, ud: Any) -> bool:
        # Integrity is the digest's job; BitBake's file checksums do not apply.
        return False

    def urldata_init(self, ud: Any, d: Any) -> None:
        try:
            ud.image = parse_url(d.expand(ud.url))
            choice = choose_platform(
                BuildArches(
                    package_arch=d.getVar("PACKAGE_ARCH"),
                    distro_arch=d.getVar("DISTRO_ARCH"),
                    target_arch=d.getVar("TARGET_ARCH"),
                    pn=d.getVar("PN") or "",
                    override=d.getVar("CONTAINER_PLATFORM"),
                )
            )
        except (InvalidReference, PlatformError) as err:
            raise FetchError(str(err), redact(ud.url)) from None
        ud.platform, ud.platform_reason = choice.platform, choice.reason
        image: ImageReference = ud.image
        ud.mirrortarballs = [mirror.tarball_name(image, ud.platform)]
        if image.digest:
            ud.localfile = f"{STORE_DIR}/images/{image.digest.replace(':', '-')}/{ud.platform.fs_name}.json"
        else:
            ud.localfile = f"{STORE_DIR}/tags/{unpack_dirname(image)}/{ud.platform.fs_name}.json"

    # -- state in DL_DIR ---------------------------------------------------------------

    def _store(self, d: Any) -> BlobStore:
        return BlobStore(store_root(d) / "blobs")

    def _read_record(self, ud: Any) -> dict[str, Any] | None:
        try:
            record = mf.load(Path(ud.localpath).read_bytes())
        except (FileNotFoundError, mf.ManifestError):
            return None
        return record if record.get("version") == RECORD_VERSION else None

    def _stored_image(self, d: Any, digest: str, platform: Platform) -> ResolvedImage | None:
        """The image `digest` for `platform`, if the store holds all of it intact (it is verified).

        PlatformError if the store holds the image but it is not built for `platform`:
        the check holds however the image came into DL_DIR.
        """
        try:
            image = resolve(self._store(d), digest, platform)
        except (FileNotFoundError, mf.ManifestError):
            return None
        return image if blobs_valid(self._store(d), image) else None

    def _usable_image(self, ud: Any, d: Any) -> ResolvedImage | None:
        """`_local_image`, with a stored image of the wrong platform counted as absent."""
        try:
            return self._local_image(ud, d)
        except PlatformError:
            return None  # download() or unpack() reports it

    def _local_image(self, ud: Any, d: Any) -> ResolvedImage | None:
        """The URL's image from DL_DIR (pinned: by its digest; a tag: as last resolved), or None."""
        digest = ud.image.digest
        if digest is None:
            record = self._read_record(ud)
            digest = record.get("digest") if record else None
        return self._stored_image(d, str(digest), ud.platform) if digest else None

    def _generate_mirror(self, d: Any) -> bool:
        return bb.utils.to_boolean(d.getVar("BB_GENERATE_MIRROR_TARBALLS"))

    def _mirror_path(self, ud: Any, d: Any) -> Path:
        return Path(d.getVar("DL_DIR")) / ud.mirrortarballs[0]

    def _enforce_policy(self, ud: Any, d: Any) -> None:
        """CONTAINER_POLICY: refuse images the policy denies (registry, tag), before any network access."""
        spec = (d.getVar("CONTAINER_POLICY") or "").strip()
        if not spec:
            return
        try:
            loaded = policy.load(spec)
        except policy.PolicyError as err:
            raise FetchError(f"CONTAINER_POLICY: {err}", ud.url) from None
        image: ImageReference = ud.image
        denials = [
            reason
            for rule, reason in loaded.image_denials(image.registry, image.name, image.tag)
            if loaded.severity(rule) == "error"
        ]
        if denials:
            raise FetchError(
                f"{image.tagged} is denied by CONTAINER_POLICY ({spec}): {'; '.join(denials)}", ud.url
            )

    def need_update(self, ud: Any, d: Any) -> bool:
        self._enforce_policy(ud, d)
        if not ud.image.digest and _strictness(d) == "1":
            return True  # download() reports it, before any network access
        if self._usable_image(ud, d) is None:
            return True
        if self._generate_mirror(d) and not self._mirror_path(ud, d).exists():
            return True  # download() finds the image stored; build_mirror_data() writes the tarball
        # A tag without digest is resolved again whenever the network may be used.
        return not ud.image.digest and not bb.utils.to_boolean(d.getVar("BB_NO_NETWORK"))

    def done(self, ud: Any, d: Any) -> bool:
        return self._usable_image(ud, d) is not None

    def clean(self, ud: Any, d: Any) -> None:
        # Blobs are shared with other images; only this URL's record goes.
        for path in (ud.localpath, ud.donestamp):
            if path:
                Path(path).unlink(missing_ok=True)

    # -- download ------------------------------------------------------------------------

    def _check_strict(self, ud: Any, d: Any) -> None:
        image: ImageReference = ud.image
        if _strictness(d) != "1" or (image.digest and image.tag_given):
            return
        missing = " and ".join(
            what for what, absent in (("tag", not image.tag_given), ("digest", not image.digest)) if absent
        )
        raise NoChecksumError(
            f'{ud.url}: BB_STRICT_CHECKSUM = "1" requires a tag and a digest, this URL has no '
            f"{missing}. Pin it in SRC_URI (docker://{image.name};tag=<tag>;digest=sha256:…) "
            "or with `container-lock update`",
            ud.url,
        )

    def _manifest_bytes(self, source_digest: str, ud: Any, d: Any) -> bytes:
        """The manifest with `source_digest`: from the store, else from the registry (verified)."""
        store = self._store(d)
        try:
            return store.read(source_digest)
        except FileNotFoundError:
            pass
        raw = _skopeo(ud, d).inspect_raw(ud.image.by_digest(source_digest), store_root(d) / "tmp")
        if sha256_digest(raw) != source_digest:
            raise FetchError(
                f"the registry returned a manifest that hashes to {sha256_digest(raw)}, "
                f"not {source_digest}; refusing it",
                ud.url,
            )
        store.put(source_digest, raw)
        return raw

    def _resolve_tag(self, ud: Any, d: Any) -> str:
        """Resolve the tag once; the manifest bytes are kept, so the digest cannot race."""
        raw = _skopeo(ud, d).inspect_raw(ud.image.tagged, store_root(d) / "tmp")
        digest = sha256_digest(raw)
        self._store(d).put(digest, raw)
        return digest

    def _warn_if_tag_moved(self, ud: Any, d: Any) -> None:
        image: ImageReference = ud.image
        tag_raw = _skopeo(ud, d).inspect_raw(image.tagged, store_root(d) / "tmp")
        tag_digest = sha256_digest(tag_raw)
        if tag_digest == image.digest:
            self._store(d).put(tag_digest, tag_raw)  # spares fetching the same bytes by digest
            return
        doc = mf.load(tag_raw)
        if mf.is_index(doc) and any(m.get("digest") == image.digest for m in doc.get("manifests", [])):
            return  # the pin is one platform of the index the tag names
        logger.warning(
            "%s: tag '%s' now points to %s, but the recipe pins %s; building the pinned digest. "
            "If the new content is wanted, update the digest (or run `container-lock update`).",
            ud.url,
            image.tag,
            tag_digest,
            image.digest,
        )

    def _pull_blobs(self, ud: Any, d: Any, manifest_digest: str, manifest: mf.ImageManifest) -> None:
        store = self._store(d)
        wanted = [b for b in manifest.blobs if not store.is_valid(b.digest, b.size)]
        if not wanted:
            return
        with store.locked(b.digest for b in wanted):
            # Another fetch may have brought some of them while we waited.
            missing = [b for b in wanted if not store.is_valid(b.digest, b.size)]
            if missing:
                self._copy_blobs(ud, d, manifest_digest, manifest, missing)

    def _copy_blobs(
        self, ud: Any, d: Any, manifest_digest: str, manifest: mf.ImageManifest, missing: list[mf.Descriptor]
    ) -> None:
        store = self._store(d)
        tmp = store_root(d) / "tmp"
        tmp.mkdir(parents=True, exist_ok=True)
        _remove_orphans(tmp)
        layout = Path(tempfile.mkdtemp(dir=tmp, prefix=f"layout.{os.getpid()}."))
        try:
            progress = SkopeoCopyProgress(d, len(manifest.blobs))
            _skopeo(ud, d).copy_to_store(ud.image.by_digest(manifest_digest), store.root, layout, progress)
        finally:
            shutil.rmtree(layout, ignore_errors=True)
        bad = [b.digest for b in missing if not store.is_valid(b.digest, b.size)]
        if bad:
            raise FetchError(f"downloaded blobs do not match their digests: {', '.join(bad)}", ud.url)

    def download(self, ud: Any, d: Any) -> None:
        self._check_strict(ud, d)
        self._enforce_policy(ud, d)
        image: ImageReference = ud.image
        logger.info("%s: platform %s (%s)", redact(ud.url), ud.platform, ud.platform_reason)
        try:
            if image.digest:
                stored = self._stored_image(d, image.digest, ud.platform)
                if stored is not None:  # pulled before, e.g. through another tag or recipe
                    self._write_record(ud, stored)
                    return
            if self._import_mirror_tarball(ud, d):
                return
        except PlatformError as err:
            raise FetchError(f"{image.tagged} ({image.digest}): {err}", ud.url) from None
        check_network_access(d, f"skopeo inspect --raw docker://{image.tagged}", ud.url)
        if image.digest:
            digest = image.digest
            if image.tag_given:
                try:
                    self._warn_if_tag_moved(ud, d)
                except FetchError as err:  # advisory: the digest is what is built
                    logger.warning(
                        "%s: could not look up tag '%s' (%s); fetching the pinned digest",
                        ud.url,
                        image.tag,
                        err,
                    )
        else:
            digest = self._resolve_tag(ud, d)
        try:
            top = self._manifest_bytes(digest, ud, d)
            manifest_digest = platform_manifest_digest(top, digest, ud.platform)
            raw = top if manifest_digest == digest else self._manifest_bytes(manifest_digest, ud, d)
            self._pull_blobs(ud, d, manifest_digest, mf.image_manifest(mf.load(raw)))
            resolved = resolve(self._store(d), digest, ud.platform)
        except (mf.ManifestError, PlatformError) as err:
            raise FetchError(f"{image.tagged} ({digest}): {err}", ud.url) from None
        self._write_record(ud, resolved)
        if not image.digest:
            self._report_missing_digest(ud, d, digest)

    def _import_mirror_tarball(self, ud: Any, d: Any) -> bool:
        """Take the image from a mirror tarball in DL_DIR (put there by PREMIRRORS/MIRRORS)."""
        path = self._mirror_path(ud, d)
        if not path.exists():
            return False
        try:
            facts = mirror.import_into(path, self._store(d))
        except mirror.MirrorError as err:
            logger.warning("%s: ignoring mirror tarball: %s", ud.url, err)
            return False
        digest = ud.image.digest or facts["digest"]
        stored = self._stored_image(d, digest, ud.platform)
        if stored is None:
            logger.warning(
                "%s: mirror tarball %s does not hold %s for %s", ud.url, path.name, digest, ud.platform
            )
            return False
        self._write_record(ud, stored)
        if not ud.image.digest:
            self._report_missing_digest(ud, d, digest)
        return True

    def build_mirror_data(self, ud: Any, d: Any) -> None:
        """With BB_GENERATE_MIRROR_TARBALLS, write the image's mirror tarball into DL_DIR."""
        path = self._mirror_path(ud, d)
        if not self._generate_mirror(d) or path.exists():
            return
        image = self._usable_image(ud, d)
        if image is not None:
            mirror.write(path, ud.image, image, self._store(d))
            logger.info("wrote mirror tarball %s", path.name)

    def _write_record(self, ud: Any, image: ResolvedImage) -> None:
        record = {
            "version": RECORD_VERSION,
            "reference": ud.image.name,
            "tag": ud.image.tag,
            "digest": image.digest,
            "platform": str(image.platform),
            "manifest": image.manifest_digest,
        }
        atomic_write(Path(ud.localpath), canonical_json(record))

    def _report_missing_digest(self, ud: Any, d: Any, digest: str) -> None:
        bb.event.fire(MissingChecksumEvent(ud.url, sha256sum=digest), d)
        if _strictness(d) == "ignore":
            return
        logger.warning(
            "%s has no digest; tag '%s' resolved to %s. Pin it by writing this in SRC_URI "
            "(or run `container-lock update`):\n    %s",
            ud.url,
            ud.image.tag,
            digest,
            ud.image.url(digest),
        )

    def checkstatus(self, fetch: Any, ud: Any, d: Any) -> bool:
        image: ImageReference = ud.image
        source = image.by_digest(image.digest) if image.digest else image.tagged
        check_network_access(d, f"skopeo inspect --raw docker://{source}", ud.url)
        _skopeo(ud, d).inspect_raw(source, store_root(d) / "tmp")
        return True

    # -- unpack ----------------------------------------------------------------------------

    def unpack(self, ud: Any, rootdir: str, d: Any) -> None:
        try:
            image = self._local_image(ud, d)
        except PlatformError as err:
            raise FetchError(f"{ud.image.tagged}: {err}", ud.url) from None
        if image is None:
            raise FetchError(
                "the image is missing or corrupt in DL_DIR (every blob is verified); run do_fetch again",
                ud.url,
            )
        dest = Path(rootdir) / UNPACK_DIR / unpack_dirname(ud.image)
        dest.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}."))
        try:
            self._write_layout(staging, ud.image, image, self._store(d))
            if dest.exists():
                shutil.rmtree(dest)
            os.rename(staging, dest)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise

    def _write_layout(self, root: Path, ref: ImageReference, image: ResolvedImage, store: BlobStore) -> None:
        """An OCI image layout of one platform, blobs hard-linked from the store where possible."""
        blobs = root / "blobs" / "sha256"
        blobs.mkdir(parents=True)
        for digest in (image.manifest_digest, *(b.digest for b in image.manifest.blobs)):
            _link_or_copy(store.path(digest), blobs / digest.split(":", 1)[1])
        descriptor = {
            "mediaType": image.manifest_media_type,
            "digest": image.manifest_digest,
            "size": image.manifest_size,
            "annotations": {"org.opencontainers.image.ref.name": ref.tag},
        }
        atomic_write(root / "oci-layout", canonical_json({"imageLayoutVersion": "1.0.0"}))
        atomic_write(root / "index.json", canonical_json({"schemaVersion": 2, "manifests": [descriptor]}))
        facts = {
            "reference": ref.name,
            "tag": ref.tag,
            "digest": image.digest,
            "platform": str(image.platform),
            "manifest": image.manifest_digest,
            "config": image.manifest.config.digest,
            "layers": [
                {"digest": b.digest, "size": b.size, "mediaType": b.media_type} for b in image.manifest.layers
            ],
        }
        atomic_write(root / "container-lock.json", canonical_json(facts))


def _remove_orphans(tmp: Path) -> None:
    """Remove scratch files of fetches that were killed (their process is gone)."""
    for entry in tmp.glob("*.*.*"):
        pid = entry.name.split(".")[1]
        if not pid.isdigit() or Path(f"/proc/{pid}").exists():
            continue
        if entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError as err:
        if err.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK):
            raise
        shutil.copy2(src, dst)


def register() -> None:
    """Put this fetcher first in BitBake's fetcher list (idempotent).

    Isar appends its own `docker` fetcher per recipe; being first, this one wins.
    """
    import bb.fetch2

    methods = bb.fetch2.methods
    methods[:] = [m for m in methods if not isinstance(m, DockerRegistryFetcher)]
    methods.insert(0, DockerRegistryFetcher())
