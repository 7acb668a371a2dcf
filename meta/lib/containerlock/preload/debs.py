"""Loader packages among built .debs (Isar's isar-apt pool): which they are, their archives.

A loader package is one that links `usr/share/container-loader/<engine>.d/<bpn>.list` to its
`usr/share/<bpn>/image.list`; its archives are `usr/share/<bpn>/images/*`.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from . import PreloadError
from .installed import ENGINES

_LINK = re.compile(
    r" \./usr/share/container-loader/(?P<engine>\w+)\.d/[^/ ]+\.list"
    r" -> \.\./\.\./(?P<bpn>[^/ ]+)/image\.list$"
)
DROP_IN = Path("etc/dpkg/dpkg.cfg.d/zz-container-preload")


@dataclass(frozen=True)
class LoaderDeb:
    """A built loader package: its file, dpkg name/version/architecture and payload directory."""

    path: Path
    package: str
    version: str
    arch: str
    share: Path  # usr/share/<bpn>


def _run(args: list[str], what: str) -> str:
    result = subprocess.run(args, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise PreloadError(f"{what}: {' '.join(args[:2])} failed: {result.stderr.strip()}")
    return result.stdout


def fields(deb: Path) -> tuple[str, str, str]:
    """Package, Version and Architecture of a .deb."""
    out = _run(
        ["dpkg-deb", "--showformat=${Package} ${Version} ${Architecture}", "--show", str(deb)], str(deb)
    )
    parts = out.split()
    if len(parts) != 3:
        raise PreloadError(f"{deb}: not a Debian package with Package, Version and Architecture")
    return parts[0], parts[1], parts[2]


def loader_share(deb: Path) -> Path | None:
    """`usr/share/<bpn>` when the .deb is a loader package, else None (one listing of its files)."""
    for line in _run(["dpkg-deb", "--contents", str(deb)], str(deb)).splitlines():
        m = _LINK.search(line)
        if m and m["engine"] in ENGINES:
            return Path("usr/share") / m["bpn"]
    return None


def loader_debs(pool: Path) -> list[LoaderDeb]:
    """The loader packages among the .debs under `pool`, in path order."""
    found = []
    for deb in sorted(pool.rglob("*.deb")):
        share = loader_share(deb)
        if share is not None:
            found.append(LoaderDeb(deb, *fields(deb), share=share))
    return found


def find(pool: Path, package: str, version: str, arch: str) -> Path:
    """The .deb of exactly that package version under `pool`."""
    for deb in sorted(pool.rglob(f"{package}_*.deb")):
        if fields(deb) == (package, version, arch):
            return deb
    raise PreloadError(
        f"{package} {version} ({arch}) is installed but its .deb is not under {pool}: "
        "the archives of a preloaded package are read from the built package"
    )


def drop_in(shares: list[Path]) -> str:
    """dpkg configuration that keeps the archives of these payload directories out of the root file
    system (`path-exclude`): dpkg still lists them as the package's files."""
    lines = [f"path-exclude=/{share}/images/*" for share in sorted(set(shares))]
    head = "# container-lock CONTAINER_PRELOAD: the image archives are preloaded into the engines' stores\n"
    return head + "".join(f"{line}\n" for line in lines)


def extract_images(deb: Path, share: Path, dest: Path) -> Path:
    """Unpack the package's `<share>/images/` into `dest`; the directory of the archives."""
    dest.mkdir(parents=True, exist_ok=True)
    tar = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE)
    try:
        result = subprocess.run(
            ["tar", "-x", "-C", str(dest), "--wildcards", f"./{share}/images/*"],
            stdin=tar.stdout,
            capture_output=True,
            text=True,
            check=False,
        )
    finally:
        if tar.stdout is not None:
            tar.stdout.close()
        tar.wait()
    if tar.returncode != 0 or result.returncode != 0:
        raise PreloadError(f"{deb}: cannot unpack /{share}/images: {result.stderr.strip()}")
    return dest / share / "images"
