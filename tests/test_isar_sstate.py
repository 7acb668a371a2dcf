"""Issue 20, real Isar master: a loader package from a shared sstate mirror (build farms).

Builder 1 builds a podman-loader recipe (unpinned URL, pinned by a lockfile in its own build
directory) with SSTATE_DIR in a shared directory, hash equivalence on (OEEquivHash, a local
hash server). Builder 2 — another build directory elsewhere, an empty DL_DIR, its lockfile and a copy
of the layer at other paths, that SSTATE_DIR as a file:// SSTATE_MIRRORS entry, no BB_NO_NETWORK (Isar signs
it) — builds the same recipe:

- it runs the setscene tasks of the package and the build manifest (not the payload's) and none of
  do_fetch, do_unpack, do_container_inventory, do_install_fetched_containers, do_dpkg_build;
  the registry's access log has no request from it; its .deb is builder 1's, byte for byte;
  its end-of-build SBOM is builder 1's, byte for byte;
- the signatures of every task of the recipe (`bitbake -S none`) are equal in both builders,
  and a difference is shown with bitbake-diffsigs;
- hash equivalence: in builder 1, a variable in do_install_fetched_containers' signature that
  does not change the payload reruns that task only: its output hash matches, the hash server
  answers the old unihash, and the .deb is reused (do_dpkg_build does not run);
- Isar v0.10 (BitBake 2.0): the build manifest comes from the mirror the same way.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.harness import farm
from tests.harness.images import ImageFactory, PushedImage
from tests.harness.isar import (
    BitbakeResult,
    IsarBuild,
    docker_url,
    give_to_build_user,
    isar_checkout,
    loader_recipe,
    work_dir,
)
from tests.harness.registry import Registry

pytestmark = pytest.mark.isar

PN = "cl-farm"
CLI = [sys.executable, "-m", "audit"]
# The recipe's own tasks whose work a full sstate match must skip.
SKIPPED = (
    "do_fetch",
    "do_unpack",
    "do_container_inventory",
    "do_install",
    "do_install_fetched_containers",
    "do_deploy_container_manifest",
    "do_prepare_build",
    "do_dpkg_build",
)
SIGNED = (*SKIPPED, "do_deploy_deb", "do_build")
# A variable in do_install_fetched_containers' signature that changes no byte of its output.
RECIPE_EXTRA = 'CLTEST_FARM_NOTE ?= "first"\ndo_install_fetched_containers[vardeps] += "CLTEST_FARM_NOTE"\n'


@dataclass
class Farm:
    first: IsarBuild
    second: IsarBuild
    image: PushedImage
    first_build: BitbakeResult
    second_build: BitbakeResult
    second_requests: list[object]


def _lockfile(build: IsarBuild, name: str) -> Path:
    """`container-lock update` of the test layer into `<topdir>/<name>`."""
    lock = build.topdir / name
    update = subprocess.run(
        [*CLI, "update", str(build.test_layer), "--lockfile", str(lock)],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert update.returncode == 0, update.stdout + update.stderr
    give_to_build_user(lock)
    return lock


@pytest.fixture(scope="module")
def farm_builds(image_factory: ImageFactory, registry: Registry) -> Farm:
    image = image_factory.single_arch("isar/farm", "1.0")
    isar = isar_checkout("master")
    shared = work_dir("farm-sstate")
    first = farm.builder(isar, "farm-a", registry.host, sstate_dir=shared)
    first.set(BB_SIGNATURE_HANDLER="OEEquivHash", BB_HASHSERVE="auto")
    second = farm.builder(isar, "farm-b", registry.host, mirror=shared)
    second.cl_layer = farm.layer_copy(first.cl_layer, "farm-b-layer")  # the layer at another path too
    recipe = loader_recipe(
        "podman", docker_url(registry.host, image.repository, image.tag), extra=RECIPE_EXTRA
    )
    cli = str(first.cli_wrapper())
    for build, lock_name in ((first, "container-lock.json"), (second, "locks/farm-lock.json")):
        build.add_recipe(PN, recipe)
        (build.topdir / lock_name).parent.mkdir(exist_ok=True)
        build.set(CONTAINER_LOCKFILE=str(_lockfile(build, lock_name)), CONTAINER_LOCK_SBOM_CLI=cli)
    assert second.dl_dir != first.dl_dir and second.cl_layer != first.cl_layer

    first_build = first.bitbake(PN)
    assert first_build.ok, first_build.tail()
    assert not any(second.dl_dir.iterdir())
    mark = registry.mark()
    second_build = second.bitbake(PN)
    return Farm(first, second, image, first_build, second_build, list(registry.requests(mark)))


def test_second_builder_takes_the_package_from_the_sstate_mirror(farm_builds: Farm) -> None:
    """Builder 2: setscene only for the recipe, 0 registry requests, the same .deb and SBOM."""
    first, second, result = farm_builds.first, farm_builds.second, farm_builds.second_build
    assert farm_builds.first_build.ran(PN, "do_fetch")
    assert farm_builds.first_build.ran(PN, "do_dpkg_build")
    assert result.ok, result.tail()
    ran = result.executed(PN)
    assert "do_dpkg_build_setscene" in ran and "do_deploy_container_manifest_setscene" in ran, ran
    assert not [task for task in SKIPPED if task in ran], ran
    # The payload's own object is neither downloaded nor restored: nothing needs it.
    assert "do_install_fetched_containers_setscene" not in ran, ran
    assert farm_builds.second_requests == []
    assert not (second.dl_dir / "containers").exists()

    first_debs, second_debs = farm.debs(first, PN), farm.debs(second, PN)
    assert first_debs and first_debs == second_debs, (sorted(first_debs), sorted(second_debs))

    manifest = second.deploy_dir / "container-lock" / f"{PN}.json"
    assert manifest.read_bytes() == (first.deploy_dir / "container-lock" / f"{PN}.json").read_bytes()
    [entry] = json.loads(manifest.read_text())["images"]
    assert entry["digest"] == farm_builds.image.digest and "inventory" in entry
    sbom_a, sbom_b = farm.sbom(first), farm.sbom(second)
    assert sbom_a.is_file(), farm_builds.first_build.tail()
    assert sbom_b.is_file(), result.tail()
    assert sbom_a.read_bytes() == sbom_b.read_bytes()
    assert farm_builds.image.digest.split(":")[1] in sbom_b.read_text()


def test_task_signatures_do_not_depend_on_the_builder(farm_builds: Farm) -> None:
    """`bitbake -S none`: every task of the recipe has the same hash in both build directories
    (other TOPDIR, TMPDIR, DL_DIR, lockfile path)."""
    first, second = farm_builds.first, farm_builds.second
    assert first.variables(PN)["CONTAINER_LOCKFILE"] != second.variables(PN)["CONTAINER_LOCKFILE"]
    sigs_a = farm.signatures(first, PN, SIGNED)
    sigs_b = farm.signatures(second, PN, SIGNED)
    differ = [t for t in SIGNED if farm.task_hash(sigs_a[t]) != farm.task_hash(sigs_b[t])]
    if differ:
        first_diff = differ[0]
        pytest.fail(
            f"signatures differ between builders: {differ}\n"
            + farm.diffsigs(first, sigs_a[first_diff], sigs_b[first_diff])[-4000:]
        )


def test_hash_equivalence_reuses_the_package(farm_builds: Farm) -> None:
    """Builder 1 (OEEquivHash, BB_HASHSERVE = "auto"): a new value of a variable signed by
    do_install_fetched_containers reruns that task; the same payload bytes keep the .deb."""
    first = farm_builds.first
    before = farm.debs(first, PN)
    first.set(CLTEST_FARM_NOTE="second")
    try:
        result = first.bitbake(PN)
    finally:
        first.unset("CLTEST_FARM_NOTE")
    assert result.ok, result.tail()
    ran = result.executed(PN)
    assert "do_install_fetched_containers" in ran, ran
    assert "do_dpkg_build" not in ran and "do_fetch" not in ran, ran
    assert farm.debs(first, PN) == before


def test_sstate_objects_of_the_loader_tasks(farm_builds: Farm) -> None:
    """The shared SSTATE_DIR holds an object for the payload and one for the build manifest;
    neither carries a .deb (Isar's dpkg-base adds one to every object of a recipe)."""
    shared = Path(farm_builds.first.local_conf["SSTATE_DIR"])
    objects = sorted(shared.rglob(f"sstate:{PN}:*.tar.zst"))
    for task in ("install_fetched_containers", "deploy_container_manifest", "dpkg_build"):
        found = [p for p in objects if p.name.endswith(f"_{task}.tar.zst")]
        assert found, (task, [p.name for p in objects])
        if task == "dpkg_build":
            continue
        for path in found:
            listing = subprocess.run(
                ["tar", "-I", "zstd", "-tf", str(path)], capture_output=True, text=True, check=True
            ).stdout.split()
            assert not [n for n in listing if n.endswith(".deb")], (path.name, listing)


def test_isar_v0_10_manifest_from_the_sstate_mirror(image_factory: ImageFactory, registry: Registry) -> None:
    """Isar v0.10 (BitBake 2.0) has the same sstate class: `-c deploy_container_manifest` in a
    second builder with the first one's SSTATE_DIR as its mirror runs only the setscene task
    (not the payload's), sends no registry request and deploys the same manifest."""
    image = image_factory.single_arch("isar/farm-v0-10", "1.0")
    isar = isar_checkout("v0.10")
    shared = work_dir("farm-v0-10-sstate")
    first = farm.builder(isar, "farm-v0-10-a", registry.host, sstate_dir=shared)
    second = farm.builder(isar, "farm-v0-10-b", registry.host, mirror=shared)
    recipe = loader_recipe("docker", docker_url(registry.host, image.repository, image.tag, image.digest))
    for build in (first, second):
        build.add_recipe(PN, recipe)
    made = first.bitbake("-c", "deploy_container_manifest", PN)
    assert made.ok, made.tail()
    assert made.ran(PN, "do_fetch") and made.ran(PN, "do_deploy_container_manifest"), made.executed(PN)
    mark = registry.mark()
    result = second.bitbake("-c", "deploy_container_manifest", PN)
    assert result.ok, result.tail()
    assert result.executed(PN) == ["do_deploy_container_manifest_setscene"], result.executed(PN)
    assert registry.requests(mark) == []
    manifest = second.deploy_dir / "container-lock" / f"{PN}.json"
    assert manifest.read_bytes() == (first.deploy_dir / "container-lock" / f"{PN}.json").read_bytes()
