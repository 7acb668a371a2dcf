"""Parse and validate `docker://` URLs (upstream Isar syntax) into image references."""

from __future__ import annotations

import re
from dataclasses import dataclass

SCHEME = "docker"
DEFAULT_TAG = "latest"
DOCKER_HUB = "docker.io"
# Parameters this fetcher understands; `name` is BitBake's generic one.
KNOWN_PARAMETERS = frozenset({"tag", "digest", "name"})

_HOST_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_HOST = re.compile(rf"^(?:{_HOST_LABEL}(?:\.{_HOST_LABEL})*|\[[0-9A-Fa-f:.]+\])(?::(?P<port>[0-9]{{1,5}}))?$")
_PATH_COMPONENT = re.compile(r"^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


class InvalidReference(ValueError):
    """A `docker://` URL or one of its parts is malformed; the text says what to do."""


class InvalidParameter(InvalidReference):
    """A `;name=value` parameter of a `docker://` URL is unknown, repeated or malformed."""


@dataclass(frozen=True)
class ImageReference:
    """A validated, normalised container image reference."""

    registry: str
    repository: str
    tag: str
    digest: str | None
    tag_given: bool

    @property
    def name(self) -> str:
        """`host[:port]/path`, the repository's full name."""
        return f"{self.registry}/{self.repository}"

    @property
    def tagged(self) -> str:
        """`host[:port]/path:tag`, the lock key and the name the image is loaded as."""
        return f"{self.name}:{self.tag}"

    def by_digest(self, digest: str) -> str:
        """`host[:port]/path@sha256:…`, for pulling content that cannot move."""
        return f"{self.name}@{digest}"

    @property
    def fs_name(self) -> str:
        """A flat, collision-free file name: no `:` and no `/` (neither can escape a directory)."""
        return self.registry.replace(":", "_") + "+" + self.repository.replace("/", "+")

    def url(self, digest: str | None = None) -> str:
        """The `docker://` URL for this reference, with `digest` (or the pinned one) added."""
        parts = [f"{SCHEME}://{self.name}"]
        if self.tag_given or digest:
            parts.append(f"tag={self.tag}")
        if digest or self.digest:
            parts.append(f"digest={digest or self.digest}")
        return ";".join(parts)


def validate_digest(digest: str, where: str) -> str:
    """Return `digest` if it is `sha256:<64 lower-case hex>`, else raise InvalidReference."""
    if not _DIGEST.match(digest):
        raise InvalidParameter(
            f"{where}: digest '{digest}' is malformed; expected 'sha256:' followed by "
            "64 lower-case hex digits (copy it from `skopeo inspect --raw` or the lockfile)"
        )
    return digest


def _split_url(url: str) -> tuple[str, dict[str, str]]:
    if "://" not in url:
        raise InvalidReference(f"'{url}' is not a URL; write docker://host[:port]/path;tag=…")
    scheme, rest = url.split("://", 1)
    if scheme != SCHEME:
        raise InvalidReference(
            f"'{url}': scheme '{scheme}' is not '{SCHEME}'; write {SCHEME}://host[:port]/path"
        )
    location, _, paramstr = rest.partition(";")
    params: dict[str, str] = {}
    for item in filter(None, paramstr.split(";")):
        key, sep, value = item.partition("=")
        if not sep:
            raise InvalidParameter(f"parameter '{item}' has no value; write {item}=…")
        if key in params:
            raise InvalidParameter(f"parameter '{key}' is given twice; write each parameter once")
        params[key] = value
    return location, params


def _normalise_name(location: str) -> tuple[str, str]:
    if "@" in location.split("/", 1)[0]:
        raise InvalidReference(
            "credentials in the URL are not supported (and would leak into logs); "
            "put them in auth.json (`skopeo login`)"
        )
    location = location.rstrip("/")
    if not location:
        raise InvalidReference("the URL names no image; write docker://host[:port]/path")
    first, _, rest = location.partition("/")
    if not rest and ("." in first or ":" in first or first == "localhost"):
        raise InvalidReference(f"'{first}' names a registry but no image; write docker://{first}/path")
    if rest and ("." in first or ":" in first or first == "localhost" or first.startswith("[")):
        registry, path = first, rest
    else:
        registry, path = DOCKER_HUB, location
        if "/" not in path:
            path = f"library/{path}"
    host_match = _HOST.match(registry)
    if not host_match or (host_match["port"] and not 0 < int(host_match["port"]) < 65536):
        raise InvalidReference(
            f"registry '{registry}' is not a valid host[:port]; write docker://host[:port]/path"
        )
    for component in path.split("/"):
        if component in ("", ".", ".."):
            raise InvalidReference(
                f"repository '{path}' has an empty, '.' or '..' segment; write host[:port]/path/of/image"
            )
        if not _PATH_COMPONENT.match(component):
            hint = " (repository names are lower-case)" if component.lower() != component else ""
            raise InvalidReference(
                f"repository segment '{component}' is not valid{hint}; segments are "
                "lower-case letters and digits, separated by '.', '_', '__' or '-'"
            )
    return registry, path


def parse_url(url: str) -> ImageReference:
    """Parse `docker://[host[:port]/]path[;tag=T][;digest=sha256:…]`.

    Raises InvalidReference naming the problem; the caller adds the URL and recipe.
    """
    location, params = _split_url(url)
    unknown = sorted(set(params) - KNOWN_PARAMETERS)
    if unknown:
        raise InvalidParameter(
            f"unknown parameter(s) {', '.join(unknown)}; known: {', '.join(sorted(KNOWN_PARAMETERS))}"
        )
    registry, repository = _normalise_name(location)
    tag = params.get("tag", DEFAULT_TAG)
    if not _TAG.match(tag):
        raise InvalidParameter(
            f"tag '{tag}' is not valid; tags are 1-128 of [A-Za-z0-9_.-], not starting with '.' or '-'"
        )
    digest = params.get("digest")
    if digest is not None:
        validate_digest(digest, "parameter 'digest'")
    return ImageReference(registry, repository, tag, digest, "tag" in params)


def redact(url: str) -> str:
    """Return `url` with any userinfo replaced, safe for messages and logs."""
    return re.sub(r"://[^/@;]*@", "://<redacted>@", url)
