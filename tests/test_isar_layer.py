"""Real Isar (master: bitbake 2.8; v0.10: bitbake 2.0): the layer parses and packages the right platform.

Each Isar ref gets one build directory (and DL_DIR); each machine is one bitbake invocation that
builds `do_install_fetched_containers` of a docker-loader and a podman-loader recipe.
"""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import tarfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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
    """Both loader recipes packaged the machine's platform: the config inside each archive (named
    by its manifest.json) hashes to the platform's config digest in the registry's index, and
    image.list's image ID (3rd column) says the same."""
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
        # What the device loads, read from the archive itself, against what the registry serves.
        config = archive_config(archive)
        assert sha256_digest(config) == registry_config_digest(registry, index, platform), (pn, archive)
        assert platform_of(json.loads(config)) == platform, (pn, archive)


_ACCEPT = ", ".join(
    (
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    )
)


def _registry_json(registry: Registry, repository: str, digest: str) -> dict[str, Any]:
    request = urllib.request.Request(
        f"{registry.url}/v2/{repository}/manifests/{digest}", headers={"Accept": _ACCEPT}
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        body = answer.read()
    assert sha256_digest(body) == digest, f"the registry served other bytes for {repository}@{digest}"
    data: dict[str, Any] = json.loads(body)
    return data


def registry_config_digest(registry: Registry, image: PushedImage, platform: str) -> str:
    """The config digest of `platform`'s manifest, as the registry serves the image's index."""
    index = _registry_json(registry, image.repository, image.digest)
    [entry] = [m for m in index["manifests"] if platform_of(m["platform"]) == platform]
    manifest = _registry_json(registry, image.repository, entry["digest"])
    digest: str = manifest["config"]["digest"]
    return digest


def platform_of(spec: dict[str, Any]) -> str:
    """`os/architecture[/variant]` of an index entry's platform or an image config."""
    return "/".join(p for p in (spec["os"], spec["architecture"], spec.get("variant")) if p)


def sha256_digest(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


def archive_config(archive: Path) -> bytes:
    """The image config inside a docker-archive (`.tar`, `.tar.zst`, …): manifest.json names it."""
    if archive.name.endswith(".tar"):
        data = archive.read_bytes()
    else:
        tool = {".zst": ["zstd", "-dcq"], ".xz": ["xz", "-dc"], ".gz": ["gzip", "-dc"]}[archive.suffix]
        data = subprocess.run([*tool, str(archive)], capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        manifest = tar.extractfile("manifest.json")
        assert manifest is not None, f"{archive}: no manifest.json"
        [entry] = json.loads(manifest.read())
        config = tar.extractfile(entry["Config"])
        assert config is not None, f"{archive}: no {entry['Config']}"
        return config.read()
