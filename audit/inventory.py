"""`container-lock inventory`: the packages inside an image, from a registry or a build manifest."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from pathlib import Path

from containerlock.contents import inventory
from containerlock.contents.inventory import Inventory
from containerlock.fetch.skopeo import RegistryError, Skopeo, run_subprocess
from containerlock.oci.platform import Platform
from containerlock.oci.reference import ImageReference, InvalidReference, parse_url

# Text that names a file rather than an image: checked before any registry work.
PATH_PREFIXES = ("./", "../", "/", "~")


class SourceError(ValueError):
    """SOURCE is neither a readable build manifest nor a valid image reference (exit status 2)."""


def looks_like_path(text: str) -> bool:
    """Does `text` name a file (an image reference never ends in .json nor starts with ./ or /)?"""
    return text.startswith(PATH_PREFIXES) or text.endswith(".json")


def parse_image(text: str) -> ImageReference:
    """`[docker://]host[:port]/path[:tag][@sha256:…]` → an image reference; SourceError if invalid."""
    location = text.removeprefix("docker://")
    location, _, digest = location.partition("@")
    name, tag = location, "latest"
    if ":" in location.rsplit("/", 1)[-1]:
        name, tag = location.rsplit(":", 1)
    url = f"docker://{name};tag={tag}" + (f";digest={digest}" if digest else "")
    try:
        return parse_url(url)
    except InvalidReference as err:
        raise SourceError(
            f"{text}: not an image reference ({err}) nor a build manifest file; "
            "write host[:port]/path[:tag][@sha256:…] or the path of a build manifest"
        ) from None


def _platform_of(layout: Path) -> Platform:
    index = json.loads((layout / "index.json").read_text())
    blobs = layout / "blobs" / "sha256"
    manifest = json.loads((blobs / index["manifests"][0]["digest"].split(":", 1)[1]).read_text())
    config = json.loads((blobs / manifest["config"]["digest"].split(":", 1)[1]).read_text())
    return Platform(str(config.get("os")), str(config.get("architecture")), config.get("variant") or None)


def of_image(
    text: str,
    platform: Platform | None,
    timeout: float,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[str, Inventory]:
    """Pull `text` (for `platform`, default the host's) into a temporary layout and list its packages.

    SourceError when the image has no such platform (a single-platform image of another one
    is not silently listed instead).
    """
    ref = parse_image(text)
    source = f"docker://{ref.by_digest(ref.digest) if ref.digest else ref.tagged}"
    options = ["--preserve-digests"]
    if platform is not None:
        options += ["--override-os", platform.os, "--override-arch", platform.architecture]
        options += ["--override-variant", platform.variant] if platform.variant else []
    client = Skopeo(run_subprocess, text, ref.registry, timeout=timeout)
    with tempfile.TemporaryDirectory(prefix="container-lock-inventory.") as tmp:
        layout = Path(tmp) / "layout"
        try:
            client.copy(source, f"oci:{layout}:image", *options, what="image download")
        except RegistryError as err:
            if platform is not None and "no image found in manifest list" in str(err):
                raise SourceError(f"{text}: the image has no {platform} variant") from None
            raise
        if platform is not None:
            found = _platform_of(layout)
            if (found.os, found.architecture) != (platform.os, platform.architecture) or (
                platform.variant and found.variant != platform.variant
            ):
                raise SourceError(
                    f"{text}: a single-platform {found} image, not {platform}; "
                    "give a reference to the image for that platform"
                )
        _, blobs = inventory.layout_layers(layout)
        return text, inventory.of_layers(blobs, text, progress=progress)


def of_manifest(path: Path) -> list[tuple[str, Inventory | None]]:
    """The inventories a build recorded in a build manifest, per image."""
    from sbom.manifests import load

    return [
        (f"{image.reference}:{image.tag} ({image.platform})", image.inventory)
        for image in load(path, "an image reference or a build manifest").images
    ]
