"""The loader packages installed in a root file system: their links, image.list and record directory."""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from . import PreloadError

ENGINES = ("docker", "podman")
LISTS_DIR = Path("usr/share/container-loader")
DEFAULT_STATE_DIR = "/var/lib/container-loader"
_STATE_LINE = re.compile(
    r"^state_dir=\$\{CONTAINER_LOADER_STATE_DIR:-(?P<dir>/[^}]*)\}/(?P<engine>\w+)$", re.M
)


@dataclass(frozen=True)
class Image:
    """One line of image.list: the archive's file name, the reference, the image ID (hex)."""

    file: str
    reference: str
    image_id: str


@dataclass(frozen=True)
class Loader:
    """An installed loader package: its engine, its payload directory (`usr/share/<bpn>`, relative),
    its dpkg name, version and architecture, its images, and the record directory its script uses."""

    engine: str
    share: Path
    package: str
    version: str
    arch: str
    images: tuple[Image, ...]
    state_dir: str  # on the device, without the engine


def _inside(rootfs: Path, link: Path) -> Path:
    """Where a link in the root file system points, resolved inside it (never on the host)."""
    target = os.readlink(link)
    base = Path("/") / link.parent.relative_to(rootfs) if not target.startswith("/") else Path("/")
    return Path(os.path.normpath(base / target)).relative_to("/")


def read_image_list(path: Path) -> tuple[Image, ...]:
    """image.list: `<file> <reference> <image ID>` a line (comments and blank lines skipped)."""
    found = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        if len(fields) < 3 or "/" in fields[0] or fields[0].startswith(".."):
            raise PreloadError(f"{path}:{number}: not '<file> <reference> <image ID>' ({line!r})")
        found.append(Image(fields[0], fields[1], fields[2].removeprefix("sha256:")))
    return tuple(found)


def _owner(rootfs: Path, path: Path) -> tuple[str, str, str]:
    """The dpkg package (name, version, architecture) that installed `path` in the root file system."""
    admin = str(rootfs / "var/lib/dpkg")
    found = subprocess.run(
        ["dpkg-query", f"--admindir={admin}", "-S", f"/{path}"], capture_output=True, text=True, check=False
    )
    if found.returncode != 0 or ":" not in found.stdout:
        raise PreloadError(f"/{path}: no installed package owns it in {rootfs} ({found.stderr.strip()})")
    package = found.stdout.split(": ", 1)[0].split(",")[0].strip()
    fields = subprocess.run(
        ["dpkg-query", f"--admindir={admin}", "-W", "-f", "${Package} ${Version} ${Architecture}", package],
        capture_output=True,
        text=True,
        check=False,
    )
    parts = fields.stdout.split()
    if fields.returncode != 0 or len(parts) != 3:
        raise PreloadError(f"{package}: dpkg-query cannot read it in {rootfs} ({fields.stderr.strip()})")
    return parts[0], parts[1], parts[2]


def state_dir(script: Path) -> str:
    """The record directory the package's loader script uses (CONTAINER_LOADER_STATE_DIR at its build)."""
    m = _STATE_LINE.search(script.read_text()) if script.is_file() else None
    return m["dir"] if m else DEFAULT_STATE_DIR


def loaders(rootfs: Path) -> list[Loader]:
    """Every installed loader package, found by its link `usr/share/container-loader/<engine>.d/*.list`."""
    found = []
    for engine in ENGINES:
        links = rootfs / LISTS_DIR / f"{engine}.d"
        for link in sorted(links.glob("*.list")) if links.is_dir() else ():
            listed = _inside(rootfs, link) if link.is_symlink() else link.relative_to(rootfs)
            if not (rootfs / listed).is_file():
                raise PreloadError(f"/{link.relative_to(rootfs)} points to /{listed}, which is missing")
            package, version, arch = _owner(rootfs, listed)
            share = listed.parent
            found.append(
                Loader(
                    engine=engine,
                    share=share,
                    package=package,
                    version=version,
                    arch=arch,
                    images=read_image_list(rootfs / listed),
                    state_dir=state_dir(rootfs / share / "container-loader.sh"),
                )
            )
    return found
