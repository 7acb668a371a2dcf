"""Loader packages over a device's lifetime, on real engines: an update replaces the image behind a
reference and the old one is pruned (only images a loader loaded, never one a container uses),
removal releases a package's images, the record survives a root file system switch.

Packages are built by the in-process BitBake harness and unpacked into a target root as dpkg
would; the loader runs against a private podman store (and a private dockerd), its state
directory beside the store (CONTAINER_LOADER_STATE_DIR).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.harness.bitbake import PACKAGE_TASKS, BuildDir
from tests.harness.images import base_files
from tests.harness.podman import RUN_OPTIONS, Podman
from tests.test_loader import install_deb, loader_recipe


def config_hex(image) -> str:
    return image.platforms["linux/amd64"].config_digest.split(":")[1]


def package(build: BuildDir, root: Path, name: str, *images, engine: str = "podman", extra: str = "") -> Path:
    """Build and unpack a loader package into `root` (an upgrade unpacks over the old files)."""
    d = build.run(loader_recipe(build, name, *images, engine=engine, extra=extra), *PACKAGE_TASKS)
    return install_deb(d, root)


def remove(share: Path) -> None:
    """What dpkg does on removal: the package's files (its list link included) are gone."""
    link = share.parent / "container-loader" / "podman.d" / f"{share.name}.list"
    link.unlink()
    shutil.rmtree(share)


def run(share: Path, env: dict[str, str], *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(share / "container-loader.sh"), *args],
        capture_output=True,
        text=True,
        env={**env, **extra},
        timeout=300,
    )


@pytest.fixture
def versions(image_factory):
    """`loader/app:stable` at v1 (image A), then v2 (image B); C is new in v2."""
    a = image_factory.single_arch("loader/app", tag="stable", files={"etc/version": b"1\n", "bin/x": b"a"})
    b = image_factory.single_arch("loader/app", tag="stable", files={"etc/version": b"2\n", "bin/x": b"b"})
    c = image_factory.single_arch("loader/extra", tag="1.0")
    return a, b, c


def test_update_prunes_the_replaced_image_and_keeps_the_new_ones(build, tmp_path, versions, podman) -> None:
    a, b, c = versions
    root = tmp_path / "target"
    first = run(package(build, root, "app", a), podman.env())
    assert first.returncode == 0, first.stderr
    assert podman.image_id(a.reference) == config_hex(a)
    state = Path(podman.env()["CONTAINER_LOADER_STATE_DIR"]) / "podman" / "loaded"
    assert state.read_text() == f"{config_hex(a)} {a.reference}\n"

    share = package(build, root, "app", b, c)  # v2 over v1, as `dpkg -i` does
    second = run(share, podman.env())
    assert second.returncode == 0, second.stderr
    assert podman.image_id(b.reference) == config_hex(b)  # the reference is B now
    assert podman.image_id(c.reference) == config_hex(c)
    assert podman.image_id(config_hex(a)) is None  # A is gone
    assert (
        f"container-loader(app): pruned {a.reference} ({config_hex(a)}): no installed package lists it"
        in (second.stderr)
    )
    assert state.read_text() == "".join(sorted(f"{config_hex(i)} {i.reference}\n" for i in (b, c)))
    third = run(share, podman.env())
    assert third.returncode == 0 and "pruned" not in third.stderr
    assert "nothing to do: 2 image(s) already present" in third.stderr


def test_prune_off_keeps_everything(build, tmp_path, versions, podman) -> None:
    a, b, _ = versions
    root = tmp_path / "target"
    assert run(package(build, root, "app", a), podman.env()).returncode == 0
    off = 'CONTAINER_LOADER_PRUNE = "0"'
    result = run(package(build, root, "app", b, extra=off), podman.env())
    assert result.returncode == 0, result.stderr
    assert podman.image_id(config_hex(a)) == config_hex(a) and podman.image_id(b.reference) == config_hex(b)
    assert "pruned" not in result.stderr


def test_an_image_a_container_uses_is_kept_and_said_so(build, tmp_path, versions, podman) -> None:
    a, b, _ = versions
    root = tmp_path / "target"
    assert run(package(build, root, "app", a), podman.env()).returncode == 0
    container = podman("create", config_hex(a), "/bin/x").stdout.strip()
    share = package(build, root, "app", b)
    result = run(share, podman.env())
    assert result.returncode == 0, result.stderr
    assert podman.image_id(config_hex(a)) == config_hex(a)
    assert (
        f"kept {a.reference} ({config_hex(a)}): no installed package lists it, but container(s) {container}"
        in (result.stderr)
    )
    podman("rm", container)
    again = run(share, podman.env())
    assert f"pruned {a.reference} ({config_hex(a)})" in again.stderr
    assert podman.image_id(config_hex(a)) is None


def test_images_the_loader_did_not_load_are_never_removed(
    build, tmp_path, versions, podman, image_factory
) -> None:
    a, b, _ = versions
    by_hand = image_factory.single_arch("loader/by-hand", tag="1.0")
    archive = tmp_path / "by-hand.tar"
    subprocess.run(
        [
            "skopeo",
            "copy",
            "--src-tls-verify=false",
            f"docker://{by_hand.reference}",
            f"docker-archive:{archive}",
        ],
        check=True,
        capture_output=True,
    )
    podman("load", "-i", str(archive))
    root = tmp_path / "target"
    # A was loaded by hand before the package came: present, tagged, not the loader's.
    podman("load", "-i", str(_archive_of(a, tmp_path)))
    assert run(package(build, root, "app", a), podman.env()).returncode == 0
    result = run(package(build, root, "app", b), podman.env())
    assert result.returncode == 0, result.stderr
    assert podman.image_id(config_hex(by_hand)) == config_hex(by_hand)
    assert podman.image_id(config_hex(a)) == config_hex(a)  # not the loader's: kept, untagged
    assert "pruned" not in result.stderr


def _archive_of(image, tmp_path: Path) -> Path:
    archive = tmp_path / f"{image.repository.replace('/', '_')}-{config_hex(image)[:12]}.tar"
    subprocess.run(
        [
            "skopeo",
            "copy",
            "--src-tls-verify=false",
            f"docker://{image.ref_by_digest}",
            f"docker-archive:{archive}:{image.reference}",
        ],
        check=True,
        capture_output=True,
    )
    return archive


def test_removal_releases_images_no_other_package_lists(build, tmp_path, versions, podman) -> None:
    a, _, c = versions
    root = tmp_path / "target"
    app = package(build, root, "app", a, c)
    other = package(build, root, "other", c)  # lists C too
    assert run(app, podman.env()).returncode == 0
    assert run(other, podman.env()).returncode == 0
    released = run(app, podman.env(), "--release")  # prerm
    assert released.returncode == 0, released.stderr
    remove(app)
    assert podman.image_id(config_hex(a)) is None
    assert podman.image_id(c.reference) == config_hex(c)  # still listed by `other`
    assert f"pruned {a.reference}" in released.stderr and c.reference not in released.stderr


def test_removal_while_the_engine_is_down_is_released_by_the_next_run(
    build, tmp_path, versions, podman
) -> None:
    a, _, c = versions
    root = tmp_path / "target"
    app, other = package(build, root, "app", a), package(build, root, "other", c)
    assert run(app, podman.env()).returncode == 0 and run(other, podman.env()).returncode == 0
    down = run(
        app, podman.env(), "--release", CONTAINER_LOADER_ENGINE="false", CONTAINER_LOADER_ENGINE_WAIT="1"
    )
    assert down.returncode == 0 and "the next loader run releases this package's images" in down.stderr
    remove(app)
    assert podman.image_id(config_hex(a)) == config_hex(a)
    later = run(other, podman.env())
    assert later.returncode == 0 and f"pruned {a.reference}" in later.stderr
    assert podman.image_id(config_hex(a)) is None


def test_the_record_survives_a_root_file_system_switch(build, tmp_path, versions, podman) -> None:
    """A/B update: the new root has only v2 of the package; the state directory (beside the
    engine's store, on the data partition) still says the loader loaded A."""
    a, b, _ = versions
    assert run(package(build, tmp_path / "root-a", "app", a), podman.env()).returncode == 0
    result = run(package(build, tmp_path / "root-b", "app", b), podman.env())
    assert result.returncode == 0, result.stderr
    assert podman.image_id(config_hex(a)) is None and podman.image_id(b.reference) == config_hex(b)


@pytest.mark.docker
def test_docker_update_prunes_the_replaced_image(build, tmp_path, versions, dockerd) -> None:
    a, b, _ = versions
    dockerd.remove_all()
    root = tmp_path / "target"
    first = run(package(build, root, "dapp", a, engine="docker"), dockerd.env())
    assert first.returncode == 0, first.stderr
    result = run(package(build, root, "dapp", b, engine="docker"), dockerd.env())
    assert result.returncode == 0, result.stderr
    assert dockerd.image_id(b.reference) == f"sha256:{config_hex(b)}"
    assert dockerd.image_id(config_hex(a)) is None
    assert f"pruned {a.reference} ({config_hex(a)})" in result.stderr
    dockerd.remove_all()


def test_a_record_is_not_forgotten_while_the_engine_does_not_answer(
    build, tmp_path, versions, podman
) -> None:
    """Pruning asks the engine whether a recorded image still exists; an engine that stopped
    answering is no answer: the record stays for the next run."""
    a, b, _ = versions
    root = tmp_path / "target"
    assert run(package(build, root, "app", a), podman.env()).returncode == 0
    share = package(build, root, "app", b)
    state = Path(podman.env()["CONTAINER_LOADER_STATE_DIR"]) / "podman" / "loaded"
    flaky = tmp_path / "flaky"
    flaky.mkdir()
    # An engine that loads and verifies B, then fails every call pruning makes (it died mid-run).
    (flaky / "podman").write_text(
        "#!/bin/sh\n"
        f'case "$*" in *{config_hex(a)}*|info*|ps*|rmi*) exit 125 ;; esac\n'
        f'exec {podman.shims / "podman"} "$@"\n'
    )
    (flaky / "podman").chmod(0o755)
    env = {**podman.env(), "PATH": f"{flaky}:{podman.env()['PATH']}"}
    flaky_run = run(share, env)
    assert flaky_run.returncode == 0, flaky_run.stderr
    assert podman.image_id(b.reference) == config_hex(b)
    assert f"{config_hex(a)} {a.reference}" in state.read_text()
    again = run(share, podman.env())
    assert f"pruned {a.reference} ({config_hex(a)})" in again.stderr
    assert podman.image_id(config_hex(a)) is None


def test_the_own_list_counts_as_installed_when_its_link_is_missing(build, tmp_path, versions, podman) -> None:
    """A damaged install (or a copied package tree) without the package's link in
    `container-loader/podman.d/`: the images it just loaded are still wanted, not pruned; only
    `--release` leaves its own list out."""
    a, _, c = versions
    share = package(build, tmp_path / "target", "app", a, c)
    (share.parent / "container-loader" / "podman.d" / "app.list").unlink()
    first = run(share, podman.env())
    assert first.returncode == 0, first.stderr
    assert "pruned" not in first.stderr
    for image in (a, c):
        assert podman.image_id(image.reference) == config_hex(image)
    again = run(share, podman.env())
    assert again.returncode == 0 and "nothing to do: 2 image(s) already present" in again.stderr
    assert "pruned" not in again.stderr
    released = run(share, podman.env(), "--release")
    assert released.returncode == 0, released.stderr
    assert podman.image_id(config_hex(a)) is None and podman.image_id(config_hex(c)) is None


@pytest.fixture
def small_store(tmp_path: Path):
    """podman's store (and the loaders' record beside it) on a 4 MiB tmpfs: a real ENOSPC."""
    mountpoint = tmp_path / "small-disk"
    mountpoint.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mountpoint)], check=True)
    engine = Podman(mountpoint / "podman")
    try:
        yield mountpoint, engine
    finally:
        engine.close()
        subprocess.run(["umount", "-l", str(mountpoint)], check=False)


def test_a_failed_update_keeps_the_previous_image_until_its_replacement_is_in(
    build, tmp_path, image_factory, small_store
) -> None:
    """v2 loaded `app:stable` = A; v3 moves the reference to B, whose load fails on a full data
    partition. A stays, the reference still names it and it runs; the unit fails naming the
    cause. With space again the next run loads B, the reference names B, and only then is A
    pruned."""
    disk, podman = small_store
    a = image_factory.single_arch(
        "loader/fail-update", tag="stable", files={**base_files("app"), "etc/v": b"2"}
    )
    noise = os.urandom(6 << 20)  # bigger than the disk, incompressible
    b = image_factory.single_arch(
        "loader/fail-update", tag="stable", files={**base_files("app"), "n.bin": noise}
    )
    root = tmp_path / "target"
    v2 = run(package(build, root, "app", a), podman.env())
    assert v2.returncode == 0, v2.stderr
    assert podman.image_id(a.reference) == config_hex(a)

    share = package(build, root, "app", b)  # v3 over v2
    full = run(share, podman.env())
    assert full.returncode == 1, full.stderr
    assert "no space left on device" in full.stderr.lower(), full.stderr
    assert podman.image_id(a.reference) == config_hex(a)  # the reference still names A
    assert f"kept {a.reference} ({config_hex(a)}): its replacement ({config_hex(b)}) is not loaded" in (
        full.stderr
    )
    assert "pruned" not in full.stderr
    ran = podman("run", "--rm", *RUN_OPTIONS, a.reference, "/bin/hello")
    assert ran.stdout == "hello from the container-lock test image\n"

    subprocess.run(["mount", "-o", "remount,size=256m", str(disk)], check=True)
    freed = run(share, podman.env())
    assert freed.returncode == 0, freed.stderr
    assert podman.image_id(b.reference) == config_hex(b)
    assert podman.image_id(config_hex(a)) is None
    lines = freed.stderr.splitlines()
    loaded = lines.index(f"container-loader(app): {b.reference}: loaded ({config_hex(b)})")
    pruned = lines.index(
        f"container-loader(app): pruned {a.reference} ({config_hex(a)}): no installed package lists it"
    )
    assert loaded < pruned
