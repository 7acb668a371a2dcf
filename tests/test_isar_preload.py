"""CONTAINER_PRELOAD in a real Isar image build: qemuarm64 (Debian bookworm), build only.

Upstream Isar (master) builds the root file system of `isar-image-base` for qemuarm64 with a
`podman-loader` package of an arm64 image from the loopback registry (pinned) and
`CONTAINER_PRELOAD = "1"`. Read on the host, nothing of the image executed: podman's store in
the root file system (`podman --root <rootfs>/var/lib/containers/storage images`) lists the image
under its reference by its pinned ID (the config digest); the archive is not in the root file
system while dpkg still has the package installed and lists the archive as its file; the
path-exclude drop-in is gone (a later `dpkg -i` installs archives); the loaders' record names
the image; the preload manifest for the SBOM says which store it went into.

Needs qemu-user binfmt for arm64 on the host (Isar's arm64 root file system runs its maintainer
scripts under emulation; the preload itself does not).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from tests.harness.images import ImageFactory
from tests.harness.isar import IsarBuild, docker_url, isar_checkout, loader_recipe, work_dir
from tests.harness.isar_boot import isar_environment
from tests.harness.registry import Registry

pytestmark = pytest.mark.isar

IMAGE = "isar-image-base"
PN = "cltest-preload-img"
BUILD_TIMEOUT = 45 * 60.0
FORMAT = "{{.Repository}}:{{.Tag}} {{.ID}}"


def _rootfs(build: IsarBuild) -> Path:
    found = sorted(
        (build.tmpdir / "work" / f"{build.distro}-{build.distro_arch}").glob(f"{IMAGE}-*/*/rootfs")
    )
    assert len(found) == 1, found
    return found[0]


def test_qemuarm64_rootfs_has_the_arm64_image_preloaded(
    registry: Registry, image_factory: ImageFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    assert Path("/proc/sys/fs/binfmt_misc/qemu-aarch64").exists(), "arm64 binfmt (qemu-user-static) is needed"
    image = image_factory.single_arch("cltest/preload", "1.0", platform="linux/arm64/v8")
    config = image.platforms["linux/arm64/v8"].config_digest.removeprefix("sha256:")
    isar = isar_checkout("master")
    build = IsarBuild(isar, work_dir("preload"), machine="qemuarm64")
    build.env.update(isar_environment(isar))
    build.registries(insecure=[registry.host])
    build.set(IMAGE_INSTALL=PN, CONTAINER_PRELOAD="1")
    # Neither Isar's own SBOM nor an initrd is asked for (the initrd alone took 15+ min under emulation).
    build.conf_append = 'ROOTFS_FEATURES:remove = "generate-sbom generate-initrd"\n'
    build.add_recipe(
        PN, loader_recipe("podman", docker_url(image.host, image.repository, image.tag, image.digest))
    )

    started = time.monotonic()
    build.bitbake("-c", "rootfs", IMAGE, timeout=BUILD_TIMEOUT).check()
    built = time.monotonic()

    rootfs = _rootfs(build)
    store = rootfs / "var/lib/containers/storage"
    mounts = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    assert not [m for m in mounts if m.startswith(f"{store}/")], "the preload left a mount in the store"
    runroot = tempfile.mkdtemp(prefix="cl-pre.", dir="/tmp")
    try:
        listing = subprocess.run(
            ["podman", "--root", str(store), "--runroot", runroot, "--storage-driver", "overlay",
             "images", "--no-trunc", "--format", FORMAT],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
    finally:
        shutil.rmtree(runroot, ignore_errors=True)
    assert listing.returncode == 0, listing.stderr
    assert listing.stdout.split("\n")[:-1] == [f"{image.reference} sha256:{config}"], listing.stdout

    share = rootfs / "usr/share" / PN
    assert (share / "image.list").is_file()
    assert not list((share / "images").iterdir()), "the archive stayed in the root file system"
    admin = str(rootfs / "var/lib/dpkg")
    status = subprocess.run(
        ["dpkg-query", f"--admindir={admin}", "-W", "-f", "${Status}", PN],
        capture_output=True,
        text=True,
        check=True,
    )
    assert status.stdout == "install ok installed"
    files = subprocess.run(
        ["dpkg-query", f"--admindir={admin}", "-L", PN], capture_output=True, text=True, check=True
    )
    assert any(line.startswith(f"/usr/share/{PN}/images/") for line in files.stdout.splitlines()), (
        files.stdout
    )
    assert not (rootfs / "etc/dpkg/dpkg.cfg.d/zz-container-preload").exists()
    assert (rootfs / "var/lib/container-loader/podman/loaded").read_text() == f"{config} {image.reference}\n"

    manifests = list((build.deploy_dir / "container-lock" / "preload").glob(f"{IMAGE}-*.json"))
    assert len(manifests) == 1, manifests
    preloaded = json.loads(manifests[0].read_text())["preloaded"]
    assert [
        (p["engine"], p["store"], p["driver"], p["reference"], p["image_id"], p["arch"]) for p in preloaded
    ] == [("podman", "/var/lib/containers/storage", "overlay", image.reference, config, "arm64")]
    with capsys.disabled():
        print(f"\nisar preload test (qemuarm64): rootfs build {built - started:.0f} s")
