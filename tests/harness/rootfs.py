"""A real Debian root file system, made by mmdebstrap (from Debian's package archive)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

MMDEBSTRAP_TIMEOUT = 900


def debian_minbase(dest: Path, suite: str = "bookworm") -> Path:
    """`mmdebstrap --variant=minbase <suite>` into `dest/<suite>-minbase.tar` (made once)."""
    tar = dest / f"{suite}-minbase.tar"
    if tar.exists():
        return tar
    if shutil.which("mmdebstrap") is None:
        raise AssertionError("mmdebstrap is not installed (apt-get install mmdebstrap; .ci/setup-isar does)")
    dest.mkdir(parents=True, exist_ok=True)
    partial = tar.with_suffix(".partial.tar")
    subprocess.run(
        ["mmdebstrap", "--quiet", "--variant=minbase", "--mode=root", suite, str(partial)],
        check=True,
        timeout=MMDEBSTRAP_TIMEOUT,
    )
    partial.rename(tar)
    return tar


def installed_packages(tar: Path, workdir: Path) -> set[tuple[str, str, str]]:
    """(package, version, architecture) as `dpkg-query -W` reports them inside the root file system."""
    root = workdir / "root"
    root.mkdir(parents=True)
    subprocess.run(["tar", "-xf", str(tar), "-C", str(root)], check=True)
    out = subprocess.run(
        ["chroot", str(root), "dpkg-query", "-W", "-f", "${Package} ${Version} ${Architecture}\\n"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return {tuple(line.split()) for line in out.splitlines() if line.strip()}  # type: ignore[misc]
