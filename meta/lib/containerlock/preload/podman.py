"""podman's store (containers-storage) in a root file system, written with skopeo on the build host.

skopeo's `containers-storage:[DRIVER@GRAPHROOT+RUNROOT]REF` destination writes the store with the
same library podman uses (containers/storage), as data: no container runs, nothing of the image is
executed, so an arm64 store is written on an amd64 host.
"""

from __future__ import annotations

import json
import os
import subprocess
import tomllib
from dataclasses import dataclass
from pathlib import Path

from . import PreloadError

CONFIGS = (Path("etc/containers/storage.conf"), Path("usr/share/containers/storage.conf"))
DEFAULT_GRAPHROOT = "/var/lib/containers/storage"
DEFAULT_DRIVER = "overlay"
SKOPEO_TIMEOUT = 1800


@dataclass(frozen=True)
class Store:
    """podman's store on the device: graph root (absolute on the device) and driver."""

    graphroot: str
    driver: str

    def images_file(self, rootfs: Path) -> Path:
        return rootfs / self.graphroot.lstrip("/") / f"{self.driver}-images" / "images.json"


def store_of(rootfs: Path) -> Store:
    """The store the device's podman uses: `[storage]` graphroot and driver of the root file system's
    storage.conf (the first of /etc/containers, /usr/share/containers), else podman's defaults."""
    for conf in CONFIGS:
        path = rootfs / conf
        if not path.is_file():
            continue
        try:
            table = tomllib.loads(path.read_text()).get("storage", {})
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
            raise PreloadError(f"/{conf} in {rootfs}: not TOML podman can read ({err})") from None
        graphroot = table.get("graphroot") or DEFAULT_GRAPHROOT
        if not isinstance(graphroot, str) or not graphroot.startswith("/") or "$" in graphroot:
            raise PreloadError(f"/{conf}: graphroot {graphroot!r} is not an absolute path the build can use")
        return Store(graphroot, table.get("driver") or DEFAULT_DRIVER)
    return Store(DEFAULT_GRAPHROOT, DEFAULT_DRIVER)


def stored_ids(rootfs: Path, store: Store) -> dict[str, str]:
    """Each name in the store file → its image ID."""
    path = store.images_file(rootfs)
    if not path.is_file():
        return {}
    return {name: image["id"] for image in json.loads(path.read_text()) for name in image.get("names") or ()}


def release_mounts(graphroot: Path) -> None:
    """Unmount whatever is still mounted in the store (nothing, with skopeo in its own mount
    namespace; run without one, skopeo exits with `<graphroot>/overlay` bind-mounted onto itself)."""
    prefix = str(graphroot)
    points = [
        line.split()[4]
        for line in Path("/proc/self/mountinfo").read_text().splitlines()
        if line.split()[4] == prefix or line.split()[4].startswith(prefix + "/")
    ]
    for point in sorted(points, key=len, reverse=True):
        result = subprocess.run(["umount", point], capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise PreloadError(
                f"{point}: left mounted by skopeo and cannot be unmounted: {result.stderr.strip()}"
            )


def write(rootfs: Path, store: Store, archive: Path, reference: str, image_id: str, work: Path) -> None:
    """Copy the docker-archive `archive` into the store under `reference`; check that the reference
    names `image_id` (the config digest) afterwards."""
    runroot = work / "runroot"
    runroot.mkdir(parents=True, exist_ok=True)
    graphroot = rootfs / store.graphroot.lstrip("/")
    # Only the three settings the destination names: the build host's own storage.conf (its
    # options, another image store) must not shape the device's store.
    conf = work / "storage.conf"
    conf.write_text(
        f'[storage]\ndriver = "{store.driver}"\ngraphroot = "{graphroot}"\nrunroot = "{runroot}"\n'
    )
    dest = f"containers-storage:[{store.driver}@{graphroot}+{runroot}]{reference}"
    # The archive was verified against its pinned digests at fetch time; no signature policy applies.
    # In a mount namespace of its own: what containers/storage mounts (its overlay driver bind-mounts
    # `<graphroot>/overlay` onto itself) can neither stay behind nor propagate into the build's
    # other mounts of the root file system (Isar's `isar-work` bind mount).
    args = [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "skopeo",
        "--insecure-policy",
        "copy",
        "--quiet",
    ]
    args += [f"docker-archive:{archive}", dest]
    env = {**os.environ, "CONTAINERS_STORAGE_CONF": str(conf), "TMPDIR": str(work)}
    try:
        result = subprocess.run(
            args, capture_output=True, text=True, env=env, timeout=SKOPEO_TIMEOUT, check=False
        )
    except FileNotFoundError:
        raise PreloadError("skopeo is not installed on the build host (apt-get install skopeo)") from None
    if result.returncode != 0:
        raise PreloadError(
            f"{reference}: skopeo could not write it into {graphroot}: {result.stderr.strip()}"
        )
    got = stored_ids(rootfs, store).get(reference)
    if got != image_id:
        raise PreloadError(f"{reference}: the store names image {got or 'none'}, expected {image_id}")
