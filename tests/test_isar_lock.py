"""Real Isar master with meta-isar in BBLAYERS: strict mode, the lockfile, recording, the build's SBOM.

meta-isar's `prebuilt-podman-img` has an unpinned `docker://quay.io/libpod/alpine;tag=latest`
and is parsed in every build; strict mode must judge only the recipes the build runs.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.harness.images import ImageFactory, PushedImage
from tests.harness.isar import (
    IsarBuild,
    docker_url,
    give_to_build_user,
    isar_checkout,
    loader_recipe,
    work_dir,
)
from tests.harness.registry import Registry

pytestmark = pytest.mark.isar

AMD64 = "linux/amd64"
CLI = [sys.executable, "-m", "audit"]


@pytest.fixture(scope="module")
def index(image_factory: ImageFactory) -> PushedImage:
    return image_factory.multi_arch("isar/lock-multi", "1.0")


@pytest.fixture(scope="module")
def build(registry: Registry) -> IsarBuild:
    build = IsarBuild(isar_checkout("master"), work_dir("lock"), machine="qemuamd64")
    build.registries(insecure=[registry.host])
    return build


def _meta_isar_unpinned(build: IsarBuild) -> Path:
    """meta-isar's prebuilt-podman-img recipe, checked to hold a docker:// URL without digest."""
    [recipe] = build.isar.glob("meta-isar/recipes-*/*/prebuilt-podman-img*.bb")
    urls = [w for w in recipe.read_text().replace('"', " ").split() if w.startswith("docker://")]
    assert urls and all("digest=" not in u for u in urls), urls
    return recipe


def test_strict_pinned_recipe_builds_beside_meta_isar(
    build: IsarBuild, index: PushedImage, registry: Registry
) -> None:
    """BB_STRICT_CHECKSUM = "1": a pinned recipe builds although meta-isar has an unpinned one."""
    _meta_isar_unpinned(build)
    url = docker_url(registry.host, index.repository, index.tag, index.digest)
    build.add_recipe("cl-pinned", loader_recipe("docker", url))
    build.unset("CONTAINER_LOCKFILE", "BB_NO_NETWORK")
    build.set(BB_STRICT_CHECKSUM="1")
    result = build.bitbake("-c", "install_fetched_containers", "cl-pinned")
    assert result.ok, result.tail()
    assert result.ran("cl-pinned", "do_install_fetched_containers")
    assert build.image_list("cl-pinned")[0][2] == index.platforms[AMD64].config_digest


def test_strict_unpinned_stops_then_lockfile_pins_it_offline(
    build: IsarBuild, index: PushedImage, registry: Registry
) -> None:
    """Strict: an unpinned recipe stops the build before any registry request and is listed;
    `container-lock update` writes the lock; a strict offline build then passes."""
    meta_isar_recipe = _meta_isar_unpinned(build)
    unpinned = docker_url(registry.host, index.repository, index.tag)
    recipe = build.add_recipe("cl-unpinned", loader_recipe("podman", unpinned))
    build.set(BB_STRICT_CHECKSUM="1")
    build.unset("CONTAINER_LOCKFILE", "BB_NO_NETWORK")
    mark = registry.mark()
    stopped = build.bitbake("-c", "install_fetched_containers", "cl-unpinned")
    assert not stopped.ok, stopped.tail()
    assert registry.requests(mark) == []
    assert "do_fetch" not in [t.task for t in stopped.tasks if t.state == "Succeeded"]
    errors = "\n".join(stopped.errors()) or stopped.tail()
    assert str(recipe) in stopped.output and unpinned in stopped.output, errors
    assert str(meta_isar_recipe) not in stopped.output, errors

    lock = build.topdir / "container-lock.json"
    update = subprocess.run(
        [*CLI, "update", str(build.test_layer), "--lockfile", str(lock)],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert update.returncode == 0, update.stdout + update.stderr
    key = f"{registry.host}/{index.repository}:{index.tag}"
    assert json.loads(lock.read_text())["images"][key]["digest"] == index.digest
    give_to_build_user(lock)

    build.set(CONTAINER_LOCKFILE=str(lock), BB_NO_NETWORK="1")
    mark = registry.mark()
    try:
        result = build.bitbake("-c", "install_fetched_containers", "cl-unpinned")
    finally:
        build.unset("BB_NO_NETWORK", "BB_STRICT_CHECKSUM", "CONTAINER_LOCKFILE")
    assert result.ok, result.tail()
    assert result.ran("cl-unpinned", "do_fetch")
    assert registry.requests(mark) == []
    assert build.image_list("cl-unpinned")[0][2] == index.platforms[AMD64].config_digest


def test_missing_checksum_recorded_by_a_real_build(
    build: IsarBuild, image_factory: ImageFactory, registry: Registry
) -> None:
    """Non-strict: a real build of an unpinned recipe succeeds and records the digest it resolved
    (MissingChecksumEvent) in CONTAINER_LOCKFILE; the warning names the digest to pin."""
    image = image_factory.single_arch("isar/lock-recorded", "1.0")
    url = docker_url(registry.host, image.repository, "1.0")
    build.add_recipe("cl-recorded", loader_recipe("docker", url))
    lock = build.topdir / "recorded-lock.json"
    build.unset("BB_STRICT_CHECKSUM", "BB_NO_NETWORK")
    build.set(CONTAINER_LOCKFILE=str(lock))
    try:
        result = build.bitbake("-c", "install_fetched_containers", "cl-recorded")
    finally:
        build.unset("CONTAINER_LOCKFILE")
    assert lock.is_file(), result.tail()
    entry = json.loads(lock.read_text())["images"][f"{registry.host}/{image.repository}:1.0"]
    assert entry["digest"] == image.digest
    assert image.digest in result.output  # the warning names the digest to pin
    assert result.ok, "\n".join(result.errors()[:8]) or result.tail()
    assert result.ran("cl-recorded", "do_install_fetched_containers")
    assert build.image_list("cl-recorded")[0][2] == image.platforms[AMD64].config_digest


def test_build_completed_writes_sbom(build: IsarBuild, index: PushedImage, registry: Registry) -> None:
    """`bitbake -c deploy_container_manifest`: the manifest is deployed and, at BuildCompleted, the
    CycloneDX 1.6 SBOM of the images is written by the CLI (CONTAINER_LOCK_SBOM_CLI)."""
    url = docker_url(registry.host, index.repository, index.tag, index.digest)
    build.add_recipe("cl-sbom", loader_recipe("podman", url))
    sbom = build.deploy_dir / "container-lock" / "container-images.cdx.json"
    build.unset("BB_STRICT_CHECKSUM", "BB_NO_NETWORK", "CONTAINER_LOCKFILE")
    # CONTAINER_LOCK_VULNDB: the end-of-build SBOM names the vulnerability snapshot it was audited with.
    db = build.topdir / "osv.db"
    export = Path(build.topdir / "osv-records")
    export.mkdir(exist_ok=True)
    (export / "CVE-2026-0001.json").write_text(
        json.dumps({"id": "CVE-2026-0001", "modified": "2026-11-30T12:00:00Z", "affected": []})
    )
    assert (
        subprocess.run([*CLI, "vulndb", "import", str(export), "--db", str(db)], check=False).returncode == 0
    )
    give_to_build_user(db)
    build.set(CONTAINER_LOCK_SBOM_CLI=str(build.cli_wrapper()), CONTAINER_LOCK_VULNDB=str(db))
    try:
        result = build.bitbake("-c", "deploy_container_manifest", "cl-sbom")
    finally:
        build.unset("CONTAINER_LOCK_SBOM_CLI", "CONTAINER_LOCK_VULNDB")
    assert result.ok, result.tail()
    assert result.ran("cl-sbom", "do_deploy_container_manifest")
    assert (build.deploy_dir / "container-lock" / "cl-sbom.json").is_file()
    assert sbom.is_file(), result.tail()
    assert f"SBOM of the container images: {sbom}" in result.output
    doc = json.loads(sbom.read_text())
    assert doc["bomFormat"] == "CycloneDX" and doc["specVersion"] == "1.6"
    snapshot = json.loads(
        subprocess.run(
            [*CLI, "vulndb", "show", "--db", str(db), "--json"], capture_output=True, text=True, check=True
        ).stdout
    )["id"]
    properties = {p["name"]: p["value"] for p in doc["metadata"]["properties"]}
    assert properties["container-lock:vulndb-snapshot"] == snapshot
    assert doc["vulnerabilities"] == []  # the test images list no package with a record
    text = sbom.read_text()
    assert index.digest.split(":")[1] in text
    assert index.platforms[AMD64].manifest_digest.split(":")[1] in text


def test_policy_requiring_provenance_stops_before_any_download(
    build: IsarBuild, image_factory: ImageFactory, registry: Registry, tmp_path: Path
) -> None:
    """CONTAINER_POLICY with a required [[provenance]]: the image whose lock entry carries no
    verified SLSA provenance stops the build before any task, named with the reason; the one
    `verify --provenance --record` accepted builds; meta-isar's unpinned recipe is not judged."""
    from tests.harness.oci_push import OCI_MANIFEST, attach_bundle
    from tests.harness.sigstore_fixture import PrivateSigstore
    from tests.test_provenance import IDENTITY, ISSUER, policy_text, slsa_v1

    meta_isar_recipe = _meta_isar_unpinned(build)
    good = image_factory.single_arch("prov/isar-good", "1.0")
    missing = image_factory.single_arch("prov/isar-missing", "1.0")
    sigstore = PrivateSigstore(build.topdir / "sigstore")
    subject = {"mediaType": OCI_MANIFEST, "digest": good.digest, "size": 1}
    bundle = sigstore.sign_dsse(
        good.digest, "https://slsa.dev/provenance/v1", IDENTITY, ISSUER, predicate=slsa_v1()
    )
    attach_bundle(registry.host, good.repository, subject, bundle, "https://slsa.dev/provenance/v1")
    policy = build.topdir / "provenance-policy.toml"
    policy.write_text(policy_text(registry.host, None))
    for name, image in (("cl-prov-good", good), ("cl-prov-missing", missing)):
        build.add_recipe(name, loader_recipe("podman", docker_url(registry.host, image.repository, "1.0")))
    lock = build.topdir / "provenance-lock.json"
    layer = str(build.test_layer)
    for args in (
        ["update", layer, "--lockfile", str(lock)],
        [
            "verify",
            layer,
            "--lockfile",
            str(lock),
            "--policy",
            str(policy),
            "--trusted-root",
            str(sigstore.trusted_root_path),
            "--record",
        ],
    ):
        step = subprocess.run([*CLI, *args], capture_output=True, text=True, check=False, timeout=300)
        assert step.returncode in (0, 1), step.stdout + step.stderr  # verify: isar-missing fails
    recorded = json.loads(lock.read_text())["images"]
    assert recorded[f"{registry.host}/prov/isar-good:1.0"]["provenance"][0]["digest"] == good.digest
    assert "provenance" not in recorded[f"{registry.host}/prov/isar-missing:1.0"]
    give_to_build_user(lock, policy)

    build.unset("BB_STRICT_CHECKSUM", "BB_NO_NETWORK")
    build.set(CONTAINER_LOCKFILE=str(lock), CONTAINER_POLICY=str(policy))
    try:
        mark = registry.mark()
        stopped = build.bitbake("-c", "install_fetched_containers", "cl-prov-missing")
        assert not stopped.ok, stopped.tail()
        assert registry.requests(mark) == []
        assert "do_fetch" not in [t.task for t in stopped.tasks if t.state == "Succeeded"]
        assert f"{registry.host}/prov/isar-missing;tag=1.0" in stopped.output, stopped.tail()
        assert "provenance: no attestation: no verified provenance recorded" in stopped.output
        assert str(meta_isar_recipe) not in stopped.output
        result = build.bitbake("-c", "install_fetched_containers", "cl-prov-good")
    finally:
        build.unset("CONTAINER_LOCKFILE", "CONTAINER_POLICY")
    assert result.ok, result.tail()
    assert result.ran("cl-prov-good", "do_fetch")
    assert build.image_list("cl-prov-good")[0][2] == good.platforms[AMD64].config_digest
