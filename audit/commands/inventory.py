"""`container-lock inventory`: the packages inside an image or recorded in a build manifest."""

from __future__ import annotations

import json
from pathlib import Path

import click

from .. import exits
from ..exits import fail
from ..inputs import json_option, timeout_option


@click.command("inventory", epilog=exits.HELP)
@click.argument("source")
@click.option(
    "--platform", "platform_text", metavar="OS/ARCH[/VARIANT]", help="Of a multi-arch image (default: host)."
)
@timeout_option
@json_option
def inventory_command(source: str, platform_text: str | None, timeout: float, as_json: bool) -> None:
    """The packages inside an image: SOURCE is an image reference (pulled to a temporary
    directory) or a build manifest (what the build recorded).

    dpkg (status and distroless status.d), apk, rpm (sqlite), Python distributions and
    os-release, each package with the layer that brought it.
    """
    from containerlock.contents.inventory import InventoryError
    from containerlock.fetch.skopeo import RegistryError
    from containerlock.oci.platform import Platform, PlatformError
    from sbom.manifests import BuildManifestError

    from .. import inventory as listing
    from ..progress import progress
    from ..render import inventory as render

    path = Path(source)
    try:
        if path.is_dir():
            fail(f"{source}: is a directory; give a build manifest file or an image reference")
        if path.is_file():
            if platform_text is not None:
                fail(f"--platform {platform_text}: a build manifest records its images' platforms already")
            found = listing.of_manifest(path)
        elif listing.looks_like_path(source):
            fail(f"{source}: no such build manifest file")
        else:
            try:
                platform = Platform.parse(platform_text) if platform_text is not None else None
            except PlatformError as error:
                fail(f"--platform {platform_text!r}: {error}")
            with progress(f"pulling and reading {source} (bytes of layers)", quiet=as_json) as advance:
                found = [listing.of_image(source, platform, timeout, advance)]
    except (InventoryError, PlatformError, BuildManifestError, listing.SourceError) as error:
        fail(str(error))
    except RegistryError as error:
        fail(str(error), exits.REGISTRY)
    if as_json:
        print(json.dumps(render.as_json(found), indent=2, sort_keys=True))
    else:
        render.show(found)
