"""Real Isar master: what reruns when packaging settings change, and offline builds from a mirror.

- Changing the zstd level (Isar's ZSTD_COMPRESSION_LEVEL, then CONTAINER_ZSTD_LEVEL) or the
  algorithm (CONTAINER_COMPRESSION = "xz") reruns only do_install_fetched_containers, per
  bitbake's own output, with no blob downloaded; the old archive is gone.
- BB_GENERATE_MIRROR_TARBALLS = "1" in one build; a second build directory with an empty DL_DIR
  and a file:// PREMIRRORS entry builds with BB_NO_NETWORK = "1" and no registry request.
"""

from __future__ import annotations

import pytest

from tests.harness.images import ImageFactory, PushedImage
from tests.harness.isar import IsarBuild, docker_url, isar_checkout, loader_recipe, work_dir
from tests.harness.registry import Registry

pytestmark = pytest.mark.isar

AMD64 = "linux/amd64"


@pytest.fixture(scope="module")
def index(image_factory: ImageFactory) -> PushedImage:
    return image_factory.multi_arch("isar/rebuild-multi", "1.0")


@pytest.fixture(scope="module")
def build(registry: Registry) -> IsarBuild:
    """An amd64 build that writes mirror tarballs."""
    build = IsarBuild(isar_checkout("master"), work_dir("rebuild"), machine="qemuamd64")
    build.registries(insecure=[registry.host])
    # The compression tests are about recompressed payloads (docker-loader's default, layers, has no level).
    build.set(BB_GENERATE_MIRROR_TARBALLS="1", CONTAINER_PAYLOAD="recompress")
    return build


def _archives(build: IsarBuild, pn: str) -> list[str]:
    return sorted(p.name for p in (build.image_dir(pn) / "usr" / "share" / pn / "images").iterdir())


@pytest.mark.parametrize(
    ("variable", "value", "suffix"),
    [("ZSTD_COMPRESSION_LEVEL", "-9", ".tar.zst"), ("CONTAINER_ZSTD_LEVEL", "1", ".tar.zst")],
)
def test_zstd_level_reruns_only_packaging(
    build: IsarBuild, index: PushedImage, registry: Registry, variable: str, value: str, suffix: str
) -> None:
    """A new zstd level: only do_install_fetched_containers runs again; zero blob GETs."""
    pn = "cl-compress"
    build.add_recipe(
        pn, loader_recipe("docker", docker_url(registry.host, "isar/rebuild-multi", "1.0", index.digest))
    )
    first = build.bitbake("-c", "install_fetched_containers", pn)
    assert first.ok, first.tail()
    mark = registry.mark()
    build.set(**{variable: value})
    again = build.bitbake("-c", "install_fetched_containers", pn)
    assert again.ok, again.tail()
    assert again.executed(pn) == ["do_install_fetched_containers"], again.executed()
    assert registry.blob_get_count(mark) == 0
    [archive] = _archives(build, pn)
    assert archive.endswith(suffix)
    assert build.image_list(pn)[0][2] == index.platforms[AMD64].config_digest


def test_algorithm_change_reruns_only_packaging_and_drops_old_archive(
    build: IsarBuild, index: PushedImage, registry: Registry
) -> None:
    """CONTAINER_COMPRESSION zst → xz: only the packaging task reruns; the .zst archive is gone."""
    pn = "cl-algorithm"
    build.add_recipe(
        pn, loader_recipe("podman", docker_url(registry.host, "isar/rebuild-multi", "1.0", index.digest))
    )
    build.unset("CONTAINER_COMPRESSION")
    first = build.bitbake("-c", "install_fetched_containers", pn)
    assert first.ok, first.tail()
    assert [a.rsplit(".", 1)[-1] for a in _archives(build, pn)] == ["zst"]
    mark = registry.mark()
    build.set(CONTAINER_COMPRESSION="xz")
    try:
        again = build.bitbake("-c", "install_fetched_containers", pn)
    finally:
        build.unset("CONTAINER_COMPRESSION")
    assert again.ok, again.tail()
    assert again.executed(pn) == ["do_install_fetched_containers"], again.executed()
    assert registry.blob_get_count(mark) == 0
    archives = _archives(build, pn)
    assert len(archives) == 1 and archives[0].endswith(".tar.xz"), archives
    assert build.image_list(pn)[0][0] == archives[0]
    assert build.image_list(pn)[0][2] == index.platforms[AMD64].config_digest


def test_layers_payload_ignores_compression_settings(
    build: IsarBuild, index: PushedImage, registry: Registry
) -> None:
    """recompress → layers reruns only packaging (0 blob GETs); then a zstd level change reruns nothing."""
    pn = "cl-layers"
    build.add_recipe(
        pn, loader_recipe("docker", docker_url(registry.host, "isar/rebuild-multi", "1.0", index.digest))
    )
    first = build.bitbake("-c", "install_fetched_containers", pn)
    assert first.ok, first.tail()
    mark = registry.mark()
    build.set(CONTAINER_PAYLOAD="layers")
    try:
        layers = build.bitbake("-c", "install_fetched_containers", pn)
        assert layers.ok, layers.tail()
        assert layers.executed(pn) == ["do_install_fetched_containers"], layers.executed()
        assert [a.rsplit("@", 1)[-1] for a in _archives(build, pn)] == ["1.0.tar"]
        build.set(ZSTD_COMPRESSION_LEVEL="-15")
        level = build.bitbake("-c", "install_fetched_containers", pn)
        assert level.ok, level.tail()
        assert level.executed(pn) == [], level.executed()
    finally:
        build.set(CONTAINER_PAYLOAD="recompress")
        build.unset("ZSTD_COMPRESSION_LEVEL")
    assert registry.blob_get_count(mark) == 0
    assert build.image_list(pn)[0][2] == index.platforms[AMD64].config_digest


def test_premirror_from_first_dl_dir_builds_offline(
    build: IsarBuild, index: PushedImage, registry: Registry
) -> None:
    """Mirror tarballs from the first DL_DIR feed a second build offline: 0 registry requests."""
    pn = "cl-mirror"
    url = docker_url(registry.host, "isar/rebuild-multi", "1.0", index.digest)
    build.add_recipe(pn, loader_recipe("docker", url))
    first = build.bitbake("-c", "install_fetched_containers", pn)
    assert first.ok, first.tail()
    tarballs = sorted(p.name for p in build.dl_dir.glob("docker_*.tar"))
    assert tarballs, sorted(p.name for p in build.dl_dir.iterdir())
    assert not any(":" in name for name in tarballs), tarballs

    second = IsarBuild(isar_checkout("master"), work_dir("mirror-offline"), machine="qemuamd64")
    second.registries(insecure=[registry.host])
    second.add_recipe(pn, loader_recipe("docker", url))
    second.set(BB_NO_NETWORK="1")
    second.conf_append = f'PREMIRRORS:prepend = "docker://.*/.* file://{build.dl_dir}/ "\n'
    assert not any(second.dl_dir.iterdir())
    mark = registry.mark()
    result = second.bitbake("-c", "install_fetched_containers", pn)
    assert result.ok, result.tail()
    assert result.ran(pn, "do_fetch")
    assert registry.requests(mark) == []
    assert second.image_list(pn)[0][2] == index.platforms[AMD64].config_digest
    assert (second.dl_dir / "containers").is_dir()
