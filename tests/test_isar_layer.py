"""Real Isar (master: bitbake 2.8; v0.10: bitbake 2.0): the layer parses and packages the right platform.

Each Isar ref gets one build directory (and DL_DIR); each machine is one bitbake invocation that
builds `do_install_fetched_containers` of a docker-loader and a podman-loader recipe.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.harness.images import ImageFactory, PushedImage
from tests.harness.isar import (
    ARCH_PLATFORM,
    MACHINE_ARCH,
    IsarBuild,
    bitbake_version,
    docker_url,
    isar_checkout,
    loader_recipe,
    work_dir,
)
from tests.harness.registry import Registry

pytestmark = pytest.mark.isar

REFS = ("master", "v0.10")
MACHINES = ("qemuamd64", "qemuarm", "qemuarm64")
RECIPES = {"cl-docker": "docker", "cl-podman": "podman"}


@pytest.fixture(scope="module")
def index(image_factory: ImageFactory) -> PushedImage:
    """The 4-platform index (amd64, arm64/v8, arm/v7, arm/v6)."""
    return image_factory.multi_arch("isar/layer-multi", "1.0")


@pytest.fixture(scope="module")
def builds(registry: Registry, index: PushedImage) -> Iterator[dict[str, IsarBuild]]:
    """One build directory per Isar ref, with both loader recipes pinned to the index."""
    url = docker_url(registry.host, index.repository, index.tag, index.digest)
    found: dict[str, IsarBuild] = {}
    for ref in REFS:
        build = IsarBuild(isar_checkout(ref), work_dir(f"layer-{ref}"))
        build.registries(insecure=[registry.host])
        for pn, engine in RECIPES.items():
            build.add_recipe(pn, loader_recipe(engine, url))
        found[ref] = build
    yield found


def test_bundle_refs_have_the_expected_bitbake() -> None:
    """The tier really covers two BitBake generations: 2.8 (master) and 2.0 (v0.10)."""
    assert bitbake_version(isar_checkout("master")).startswith("2.8")
    assert bitbake_version(isar_checkout("v0.10")).startswith("2.0")


@pytest.mark.parametrize("ref", REFS)
def test_parse_with_layer(builds: dict[str, IsarBuild], ref: str) -> None:
    """`bitbake -p` with meta, meta-isar, the layer and the test layer: no parse error.

    On v0.10 (bitbake 2.0, no `addpylib`) this fails on c0bf9d4's layer.
    """
    result = builds[ref].bitbake("-p")
    assert result.ok, result.tail()
    assert "Parsing of" in result.output and " 0 errors" in result.output, result.tail()
    assert not result.errors(), result.errors()


@pytest.mark.parametrize("machine", MACHINES)
@pytest.mark.parametrize("ref", REFS)
def test_payload_has_the_machines_platform(
    builds: dict[str, IsarBuild], index: PushedImage, registry: Registry, ref: str, machine: str
) -> None:
    """Both loader recipes packaged the machine's platform: image ID (3rd column) = its config digest."""
    build = builds[ref].set(MACHINE=machine)
    result = build.bitbake("-c", "install_fetched_containers", *RECIPES)
    assert result.ok, result.tail()
    platform = ARCH_PLATFORM[MACHINE_ARCH[machine]]
    expected = index.platforms[platform]
    for pn in RECIPES:
        assert result.ran(pn, "do_install_fetched_containers"), result.executed(pn)
        rows = build.image_list(pn)
        assert len(rows) == 1, rows
        name, reference, image_id = rows[0][:3]
        assert reference == f"{registry.host}/{index.repository}:{index.tag}"
        assert image_id == expected.config_digest, (pn, platform, image_id)
        archive = build.image_dir(pn) / "usr" / "share" / pn / "images" / name
        assert archive.is_file() and archive.stat().st_size > 0, archive
