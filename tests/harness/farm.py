"""Build farms for the real-Isar tests: builders that share an sstate mirror (SSTATE_MIRRORS).

Each builder is an `IsarBuild` of its own (own build directory, TMPDIR, DL_DIR, lockfile path),
so anything in a task signature that names one of those paths shows as a difference between
builders. The first builder's SSTATE_DIR is the mirror of the others.

Typical use::

    first = builder(isar, "farm-a", registry.host, sstate_dir=shared)
    second = builder(isar, "farm-b", registry.host, mirror=shared)
    first.bitbake(pn).check()
    result = second.bitbake(pn)          # its loader package comes from the mirror
    sigs_a, sigs_b = signatures(first, pn), signatures(second, pn)
"""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.harness.isar import IsarBuild, IsarError, give_to_build_user, work_dir, work_root
from tests.harness.isar_boot import isar_environment


def builder(
    isar: Path,
    name: str,
    registry_host: str,
    *,
    sstate_dir: Path | None = None,
    mirror: Path | None = None,
) -> IsarBuild:
    """A builder in a new directory `<work root>/<name>-…`.

    `sstate_dir`: its SSTATE_DIR (default: Isar's, in the build directory); `mirror`: another
    builder's SSTATE_DIR as a file:// SSTATE_MIRRORS entry.
    """
    build = IsarBuild(isar, work_dir(name), machine="qemuamd64")
    build.env.update(isar_environment(isar))  # Isar's bootstrap and sbuild need SCRIPTSDIR
    build.registries(insecure=[registry_host])
    if sstate_dir is not None:
        build.set(SSTATE_DIR=str(sstate_dir))
    if mirror is not None:
        build.conf_append += f'SSTATE_MIRRORS = "file://.* file://{mirror}/PATH"\n'
    return build


def layer_copy(layer: Path | None, name: str) -> Path:
    """A copy of the container-lock layer at `<work root>/<name>/meta` (another builder's checkout)."""
    if layer is None:
        raise IsarError("the build has no container-lock layer to copy")
    dest = work_root() / name / "meta"
    shutil.copytree(layer, dest, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
    give_to_build_user(dest.parent)
    return dest


def stamp_dir(build: IsarBuild, pn: str) -> Path:
    """`${STAMPS_DIR}/${DISTRO}-${DISTRO_ARCH}/${PN}` (Isar's STAMP without `${PV}-${PR}`)."""
    return build.tmpdir / "stamps" / f"{build.distro}-{build.distro_arch}" / pn


def signatures(build: IsarBuild, pn: str, tasks: tuple[str, ...]) -> dict[str, Path]:
    """`bitbake -S none <pn>`: each task's newest sigdata file (its name ends in the task hash)."""
    build.bitbake("-S", "none", pn).check()
    found: dict[str, Path] = {}
    for task in tasks:
        files = sorted(stamp_dir(build, pn).glob(f"*.{task}.sigdata.*"), key=lambda p: p.stat().st_mtime)
        if not files:
            raise IsarError(f"no sigdata of {pn}:{task} under {stamp_dir(build, pn)}")
        found[task] = files[-1]
    return found


def task_hash(sigdata: Path) -> str:
    """The task hash a sigdata file is named after."""
    return sigdata.name.rsplit(".", 1)[1]


def diffsigs(build: IsarBuild, first: Path, second: Path) -> str:
    """`bitbake-diffsigs` of two sigdata files: what differs between two task signatures."""
    result = build.bitbake(str(first), str(second), program="bitbake-diffsigs")
    return result.output


def debs(build: IsarBuild, pn: str) -> dict[str, bytes]:
    """The .deb files of a dpkg recipe in its `${WORKDIR}` (built or restored from sstate)."""
    return {p.name: p.read_bytes() for p in sorted(build.workdir(pn).glob("*.deb"))}


def sbom(build: IsarBuild) -> Path:
    """The end-of-build SBOM of the container images (CONTAINER_LOCK_SBOM_FILE's default)."""
    return build.deploy_dir / "container-lock" / "container-images.cdx.json"
