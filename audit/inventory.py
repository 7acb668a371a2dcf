"""`container-lock inventory`: the packages inside an image, from a registry or a build manifest."""

from __future__ import annotations

import tempfile
from pathlib import Path

from containerlock import inventory
from containerlock.inventory import Inventory
from containerlock.platform import Platform
from containerlock.skopeo import Skopeo, run_subprocess


def image_source(text: str) -> str:
    """`docker://…`, `host[:port]/path[:tag]` or `…@sha256:…` → a skopeo `docker://` source."""
    return text if text.startswith("docker://") else f"docker://{text}"


def of_image(ref: str, platform: Platform | None, timeout: float) -> tuple[str, Inventory]:
    """Pull `ref` (for `platform`, default the host's) into a temporary layout and list its packages."""
    source = image_source(ref)
    options = ["--preserve-digests"]
    if platform is not None:
        options += ["--override-os", platform.os, "--override-arch", platform.architecture]
        options += ["--override-variant", platform.variant] if platform.variant else []
    registry = source.removeprefix("docker://").split("/", 1)[0]
    client = Skopeo(run_subprocess, ref, registry, timeout=timeout)
    with tempfile.TemporaryDirectory(prefix="container-lock-inventory.") as tmp:
        layout = Path(tmp) / "layout"
        client.copy(source, f"oci:{layout}:image", *options, what="image download")
        _, blobs = inventory.layout_layers(layout)
        return ref, inventory.of_layers(blobs, ref)


def of_manifest(path: Path) -> list[tuple[str, Inventory | None]]:
    """The inventories a build recorded in a build manifest, per image."""
    from sbom.manifests import load

    return [
        (f"{image.reference}:{image.tag} ({image.platform})", image.inventory) for image in load(path).images
    ]
