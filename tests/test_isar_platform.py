"""Real Isar master, cross builds (DISTRO_ARCH armhf on an amd64 host): the platform pulled and checked.

- Isar rewrites PACKAGE_ARCH to the host's for `DPKG_ARCH = "all"` recipes; the image must still
  be the device's (linux/arm/v7), and the fetch log says which platform and why.
- An amd64-only image pinned by its manifest digest in an armhf recipe fails every do_fetch, also
  when its blobs are already in DL_DIR (second try; or fetched first by an amd64 build).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.harness.images import ImageFactory, PushedImage
from tests.harness.isar import IsarBuild, docker_url, isar_checkout, unpacked_records, work_dir
from tests.harness.registry import Registry

pytestmark = pytest.mark.isar

ARMHF = "linux/arm/v7"


@pytest.fixture(scope="module")
def dl_dir() -> Path:
    """One DL_DIR for this module's armhf and amd64 builds (a shared download directory)."""
    return work_dir("platform-downloads")


@pytest.fixture(scope="module")
def armhf(registry: Registry, dl_dir: Path) -> IsarBuild:
    build = IsarBuild(isar_checkout("master"), work_dir("platform-armhf"), machine="qemuarm", dl_dir=dl_dir)
    build.registries(insecure=[registry.host])
    return build


@pytest.fixture(scope="module")
def amd64(registry: Registry, dl_dir: Path) -> IsarBuild:
    build = IsarBuild(isar_checkout("master"), work_dir("platform-amd64"), machine="qemuamd64", dl_dir=dl_dir)
    build.registries(insecure=[registry.host])
    return build


@pytest.fixture(scope="module")
def index(image_factory: ImageFactory) -> PushedImage:
    return image_factory.multi_arch("isar/platform-multi", "1.0")


def test_arch_all_recipe_in_cross_build_gets_distro_arch(
    armhf: IsarBuild, index: PushedImage, registry: Registry
) -> None:
    """`inherit dpkg-raw` (DPKG_ARCH all → PACKAGE_ARCH amd64 in Isar) + the index: arm/v7 unpacked."""
    url = docker_url(registry.host, index.repository, index.tag, index.digest)
    armhf.add_recipe("cl-arch-all", f'inherit dpkg-raw\nSRC_URI += "{url}"\n')
    env = armhf.variables("cl-arch-all")
    assert (env.get("DISTRO_ARCH"), env.get("DPKG_ARCH")) == ("armhf", "all")
    assert env.get("PACKAGE_ARCH") == "amd64", "Isar's multiarch rewrite is what this test is about"

    result = armhf.bitbake("-c", "unpack", "cl-arch-all")
    assert result.ok, result.tail()
    assert result.ran("cl-arch-all", "do_fetch") and result.ran("cl-arch-all", "do_unpack")
    records = unpacked_records(armhf.workdir("cl-arch-all"))
    assert len(records) == 1, records
    record = records[0]
    assert record["platform"] == ARMHF, record
    assert record["manifest"] == index.platforms[ARMHF].manifest_digest
    assert record["config"] == index.platforms[ARMHF].config_digest
    log = armhf.task_log("cl-arch-all", "do_fetch")
    assert f"platform {ARMHF}" in log and "DISTRO_ARCH" in log, log[-2000:]


def _wrong_platform_recipe(build: IsarBuild, pn: str, url: str) -> None:
    build.add_recipe(pn, f'inherit dpkg-raw\nDPKG_ARCH = "${{DISTRO_ARCH}}"\nSRC_URI += "{url}"\n')


def _assert_fetch_refused(build: IsarBuild, pn: str, image: PushedImage) -> None:
    result = build.bitbake("-c", "fetch", pn)
    assert not result.ok, f"do_fetch of an amd64-only image for {ARMHF} succeeded:\n{result.tail()}"
    assert [t.task for t in result.failed()] == ["do_fetch"], result.tasks
    message = result.output + build.task_log(pn, "do_fetch")
    assert ARMHF in message and "linux/amd64" in message, result.tail()
    assert image.digest in message, result.tail()


def test_wrong_platform_refused_on_every_try(
    armhf: IsarBuild, image_factory: ImageFactory, registry: Registry
) -> None:
    """An amd64-only manifest pinned in an armhf recipe: do_fetch fails, and fails again from DL_DIR."""
    image = image_factory.single_arch("isar/amd64-only-a", "1.0")
    _wrong_platform_recipe(
        armhf, "cl-wrong-a", docker_url(registry.host, image.repository, "1.0", image.digest)
    )
    _assert_fetch_refused(armhf, "cl-wrong-a", image)
    mark = registry.mark()
    _assert_fetch_refused(armhf, "cl-wrong-a", image)  # blobs (or a record) may be in DL_DIR now
    assert registry.blob_get_count(mark) == 0


def test_wrong_platform_refused_after_amd64_build_stored_it(
    armhf: IsarBuild, amd64: IsarBuild, image_factory: ImageFactory, registry: Registry
) -> None:
    """The same digest fetched first by an amd64 recipe (store hit in the shared DL_DIR): still refused."""
    image = image_factory.single_arch("isar/amd64-only-b", "1.0")
    url = docker_url(registry.host, image.repository, "1.0", image.digest)
    amd64.add_recipe("cl-right-b", f'inherit dpkg-raw\nDPKG_ARCH = "${{DISTRO_ARCH}}"\nSRC_URI += "{url}"\n')
    first = amd64.bitbake("-c", "unpack", "cl-right-b")
    assert first.ok, first.tail()
    assert unpacked_records(amd64.workdir("cl-right-b"))[0]["manifest"] == image.digest

    _wrong_platform_recipe(armhf, "cl-wrong-b", url)
    mark = registry.mark()
    _assert_fetch_refused(armhf, "cl-wrong-b", image)
    assert registry.blob_get_count(mark) == 0
