"""BitBake fetcher for container images: `docker://` URLs pulled by digest into a verified DL_DIR store.

URL (upstream Isar's syntax): ``docker://[host[:port]/]path;tag=<tag>;digest=sha256:<64 hex>``

Parameters:
    tag     default ``latest``; the name the image gets on the target.
    digest  what is pulled: an index (multi-arch) or a manifest. Without it the tag is resolved
            once, pulled by that digest, and ``MissingChecksumEvent`` fired (the lock records it).
    name    BitBake's generic parameter.
A malformed URL raises ``MalformedUrl``; a bad parameter ``ParameterError``.

Variables:
    DL_DIR              the store ``${DL_DIR}/containers``: blobs by digest (shared by all images),
                        records, locks, scratch.
    CONTAINER_PLATFORM  ``os/arch[/variant]``; else DISTRO_ARCH in Isar (PACKAGE_ARCH for
                        -compat/-native), else PACKAGE_ARCH / TARGET_ARCH (platform.py).
    CONTAINER_POLICY    a built-in policy or a policy file; denied images fail before any request.
    CONTAINER_FETCH_RETRIES, CONTAINER_FETCH_RETRY_DELAY, CONTAINER_FETCH_TIMEOUT
                        retries with backoff of transient registry failures; time limit per command.
    BB_STRICT_CHECKSUM  ``1``: tag and digest required, before any request; ``ignore``: no warning.
    BB_NO_NETWORK       only DL_DIR and mirror tarballs are used.
    BB_GENERATE_MIRROR_TARBALLS  a mirror tarball per image and platform, which PREMIRRORS/MIRRORS
                        serve (``ud.mirrortarballs``).
Registry settings (plain HTTP, mirrors, credentials): containers-registries.conf(5), auth.json.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import bb
import bb.event
from bb.fetch2 import (
    FetchError,
    FetchMethod,
    MalformedUrl,
    MissingChecksumEvent,
    NoChecksumError,
    ParameterError,
    check_network_access,
    logger,
)

from ..lock import policy
from ..oci import layout, record
from ..oci.image import Reader, ResolvedImage, StoreReader, first_complete, stored_image
from ..oci.manifest import ManifestError
from ..oci.platform import BuildArches, PlatformError, choose_platform
from ..oci.record import ImageRecord, RecordError
from ..oci.reference import ImageReference, InvalidParameter, InvalidReference, parse_url, redact
from ..oci.store import BlobStore
from . import messages, mirror, skopeo, task_skopeo
from .progress import SkopeoCopyProgress
from .pull import Puller, PullError

STORE_DIR = "containers"
# What is wrong with an image's content (the registry's errors explain themselves).
_CONTENT_ERRORS = (PullError, ManifestError, PlatformError)


def store_root(d: Any) -> Path:
    """`${DL_DIR}/containers`: blobs, image records and temporary files."""
    return Path(d.getVar("DL_DIR")) / STORE_DIR


class DockerRegistryFetcher(FetchMethod):
    """Fetch `docker://host[:port]/path;tag=…;digest=sha256:…` with skopeo."""

    def supports(self, ud: Any, d: Any) -> bool:
        return ud.type == "docker"

    def supports_checksum(self, ud: Any) -> bool:
        return False  # integrity is the digest's job; BitBake's file checksums do not apply

    def urldata_init(self, ud: Any, d: Any) -> None:
        try:
            ud.image = parse_url(d.expand(ud.url))
        except InvalidParameter as err:
            raise ParameterError(str(err), redact(ud.url)) from None
        except InvalidReference as err:
            raise MalformedUrl(redact(ud.url), f"{redact(ud.url)}: {err}") from None
        try:
            choice = choose_platform(BuildArches.of_recipe(d.getVar))
        except PlatformError as err:
            raise FetchError(str(err), redact(ud.url)) from None
        ud.platform, ud.platform_reason = choice.platform, choice.reason
        ud.denial = policy.denial(d.getVar("CONTAINER_POLICY"), ud.image)  # evaluated once per URL
        ud.mirrortarballs = [mirror.tarball_name(ud.image, ud.platform)]
        ud.mirror_path = Path(d.getVar("DL_DIR")) / ud.mirrortarballs[0]
        pin = ud.image.digest.replace(":", "-") if ud.image.digest else None
        where = f"images/{pin}" if pin else f"tags/{layout.dirname(ud.image)}"
        ud.localfile = f"{STORE_DIR}/{where}/{ud.platform.fs_name}.json"

    # -- state in DL_DIR -------------------------------------------------------------------

    def _store(self, d: Any) -> BlobStore:
        return BlobStore(store_root(d) / "blobs")

    def _local_image(self, ud: Any, d: Any) -> ResolvedImage | None:
        """The URL's image from DL_DIR (pinned: its digest; a tag: as last resolved), verified, or None.

        PlatformError if the stored image is not built for the recipe's platform.
        """
        digest = ud.image.digest
        if digest is None:
            try:
                digest = record.read(Path(ud.localpath)).digest
            except (FileNotFoundError, RecordError):
                return None
        return stored_image(self._store(d), digest, ud.platform)

    def _usable_image(self, ud: Any, d: Any) -> ResolvedImage | None:
        """`_local_image`, where a wrong-platform image counts as absent (download/unpack report it)."""
        try:
            return self._local_image(ud, d)
        except PlatformError:
            return None

    def need_update(self, ud: Any, d: Any) -> bool:
        if ud.denial:
            raise FetchError(ud.denial, ud.url)
        if self._usable_image(ud, d) is None or (ud.image.digest is None and _strict(d)):
            return True  # download() reports a strict-mode violation, before any network access
        if _generate_mirror(d) and not ud.mirror_path.exists():
            return True  # download() finds the image stored; build_mirror_data() writes the tarball
        # A tag without digest is resolved again whenever the network may be used.
        return not ud.image.digest and not bb.utils.to_boolean(d.getVar("BB_NO_NETWORK"))

    def done(self, ud: Any, d: Any) -> bool:
        return self._usable_image(ud, d) is not None

    def clean(self, ud: Any, d: Any) -> None:
        for path in filter(None, (ud.localpath, ud.donestamp)):  # blobs are shared: they stay
            Path(path).unlink(missing_ok=True)

    # -- download --------------------------------------------------------------------------

    def _puller(self, ud: Any, d: Any) -> Puller:
        client = task_skopeo.client(d, ud.image, ud.url)
        return Puller(client, self._store(d), store_root(d) / "tmp", ud.image, partial(SkopeoCopyProgress, d))

    def download(self, ud: Any, d: Any) -> None:
        """Resolve → pull the missing blobs → record, from the first source that holds the image."""
        violation = messages.strict_violation(ud.url, ud.image) if _strict(d) else None
        if violation:
            raise NoChecksumError(violation, ud.url)
        if ud.denial:
            raise FetchError(ud.denial, ud.url)
        image: ImageReference = ud.image
        # Log text only: records travel to BitBake's UI process, which cannot unpickle our classes.
        logger.info(f"{redact(ud.url)}: platform {ud.platform} ({ud.platform_reason})")
        try:
            stored = first_complete(self._sources(ud, d), self._store(d), ud.platform)
        except skopeo.RegistryError as err:
            raise FetchError(str(err), ud.url) from None
        except _CONTENT_ERRORS as err:
            raise FetchError(f"{image.tagged} ({image.digest or 'unpinned'}): {err}", ud.url) from None
        if stored is None:  # cannot happen: the registry, asked last, raises what it lacks
            raise FetchError(messages.NOT_IN_DL_DIR, ud.url)
        record.write(Path(ud.localpath), ImageRecord.of(image, stored))
        if not image.digest:
            self._report_missing_digest(ud, d, stored.digest)

    def _sources(self, ud: Any, d: Any) -> Iterator[tuple[str, Reader]]:
        """(digest, reader) for each source of the URL's image, in order, each made only when the one
        before lacked something: DL_DIR (pinned), the blobs of a mirror tarball in DL_DIR (put there by
        PREMIRRORS/MIRRORS), the registry (network check first; the tag resolved once, or checked)."""
        store = self._store(d)
        if ud.image.digest:
            yield ud.image.digest, StoreReader(store)
        if ud.mirror_path.exists():
            try:
                facts = mirror.import_into(ud.mirror_path, store)
            except mirror.MirrorError as err:
                logger.warning(f"{ud.url}: ignoring mirror tarball: {err}")
            else:
                wanted = ud.image.digest or facts.digest
                yield wanted, StoreReader(store)
                held = f"{ud.mirror_path.name} does not hold {wanted} for {ud.platform}"
                logger.warning(f"{ud.url}: ignoring mirror tarball: {held}")
        check_network_access(d, f"skopeo inspect --raw docker://{ud.image.tagged}", ud.url)
        puller = self._puller(ud, d)
        digest = ud.image.digest or puller.resolve_tag()
        if ud.image.digest and ud.image.tag_given:
            self._warn_if_tag_moved(ud, puller)
        yield digest, puller

    def _warn_if_tag_moved(self, ud: Any, puller: Puller) -> None:
        """Advisory: the digest is what is built; a dead or moved tag is only reported."""
        try:
            moved = puller.tag_moved_from(str(ud.image.digest))
        except (skopeo.RegistryError, ManifestError) as err:
            logger.warning(messages.tag_unknown(ud.url, ud.image, err))
            return
        if moved:
            logger.warning(messages.tag_moved(ud.url, ud.image, moved))

    def build_mirror_data(self, ud: Any, d: Any) -> None:
        """With BB_GENERATE_MIRROR_TARBALLS, write the image's mirror tarball into DL_DIR."""
        image = self._usable_image(ud, d) if _generate_mirror(d) and not ud.mirror_path.exists() else None
        if image is not None:
            mirror.write(ud.mirror_path, ud.image, image, self._store(d))
            logger.info(f"wrote mirror tarball {ud.mirror_path.name}")

    def _report_missing_digest(self, ud: Any, d: Any, digest: str) -> None:
        bb.event.fire(MissingChecksumEvent(ud.url, sha256sum=digest), d)
        if (d.getVar("BB_STRICT_CHECKSUM") or "0") != "ignore":
            logger.warning(messages.missing_digest(ud.url, ud.image, digest))

    def checkstatus(self, fetch: Any, ud: Any, d: Any) -> bool:
        source = ud.image.by_digest(ud.image.digest) if ud.image.digest else ud.image.tagged
        check_network_access(d, f"skopeo inspect --raw docker://{source}", ud.url)
        try:
            self._puller(ud, d).skopeo.inspect_raw(source, store_root(d) / "tmp")
        except skopeo.RegistryError as err:
            raise FetchError(str(err), ud.url) from None
        return True

    def unpack(self, ud: Any, rootdir: str, d: Any) -> None:
        """An OCI layout of the recipe's platform in `${WORKDIR}/container-images/` (no network)."""
        try:
            image = self._local_image(ud, d)
        except PlatformError as err:
            raise FetchError(f"{ud.image.tagged}: {err}", ud.url) from None
        if image is None:
            raise FetchError(messages.NOT_IN_DL_DIR, ud.url)
        dest = Path(rootdir) / layout.UNPACK_DIR / layout.dirname(ud.image)
        layout.write(dest, ud.image, image, self._store(d))


def _strict(d: Any) -> bool:
    return (d.getVar("BB_STRICT_CHECKSUM") or "0") == "1"


def _generate_mirror(d: Any) -> bool:
    return bb.utils.to_boolean(d.getVar("BB_GENERATE_MIRROR_TARBALLS"))


def register() -> None:
    """Put this fetcher first in BitBake's fetcher list (idempotent).

    Isar appends its own `docker` fetcher per recipe; being first, this one wins.
    """
    methods = bb.fetch2.methods
    methods[:] = [m for m in methods if not isinstance(m, DockerRegistryFetcher)]
    methods.insert(0, DockerRegistryFetcher())
