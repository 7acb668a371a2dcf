"""What the fetcher tells a recipe's author about pins: each text names the URL and the fix."""

from __future__ import annotations

from ..oci.reference import ImageReference

FIX = "or run `container-lock update`"
NOT_IN_DL_DIR = "the image is missing or corrupt in DL_DIR (every blob is verified); run do_fetch again"


def strict_violation(url: str, image: ImageReference) -> str | None:
    """BB_STRICT_CHECKSUM = "1" wants a tag and a digest; what this URL lacks, or None."""
    absent = [
        what for what, missing in (("tag", not image.tag_given), ("digest", not image.digest)) if missing
    ]
    if not absent:
        return None
    return (
        f'{url}: BB_STRICT_CHECKSUM = "1" requires a tag and a digest, this URL has no '
        f"{' and '.join(absent)}. Pin it in SRC_URI (docker://{image.name};tag=<tag>;digest=sha256:…) {FIX} "
        "(OpenEmbedded-Core turns strict mode on by default)"
    )


def tag_moved(url: str, image: ImageReference, now: str) -> str:
    """The tag names other content than the pin: the pin is built, the author decides."""
    return (
        f"{url}: tag '{image.tag}' now points to {now}, but the recipe pins {image.digest}; building the "
        f"pinned digest. If the new content is wanted, update the digest ({FIX})."
    )


def tag_unknown(url: str, image: ImageReference, error: Exception) -> str:
    return f"{url}: could not look up tag '{image.tag}' ({error}); fetching the pinned digest"


def missing_digest(url: str, image: ImageReference, digest: str) -> str:
    """A tag without a digest was resolved: the exact line to pin it."""
    return (
        f"{url} has no digest; tag '{image.tag}' resolved to {digest}. Pin it by writing this in "
        f"SRC_URI ({FIX}):\n    {image.url(digest)}"
    )
