"""The docker-loader's on-target loader against a REAL dockerd that runs out of space or is killed.

The same faults as the podman tests in tests/test_loader.py: the daemon's data root on a small
tmpfs (a real ENOSPC from dockerd), an update whose new image does not fit, and dockerd,
containerd and shims SIGKILLed at once (/run emptied) while `docker load` streams an image into
it; then a restart on the same data root. A SIGKILL is not a power cut: what the daemon wrote
survives in the page cache. Power cuts are the boot tier's (tests/test_isar_lifetime.py).
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.harness.dockerd import DOCKER, RUN_OPTIONS, Dockerd
from tests.harness.images import base_files
from tests.test_docker_engine import config_digest, docker_package, image_list, run_loader

pytestmark = pytest.mark.docker


def test_engine_store_full_then_grown_rerun_converges(build, tmp_path, image_factory) -> None:
    """dockerd's data root on a full file system: both loads fail with ENOSPC, no archive is deleted
    and no image is left; with space again, a rerun loads both with the listed IDs, then deletes."""
    noise = os.urandom(6 << 20)  # bigger than the disk, incompressible
    images = [
        image_factory.single_arch(f"dfault/disk-{i}", tag="1.0", files={"n.bin": noise}) for i in range(2)
    ]
    share = docker_package(
        build, tmp_path / "target", "ddisk", *images, extra='CONTAINER_DELETE_AFTER_LOAD = "1"'
    )
    with Dockerd(data_root_size="4m") as engine:
        full = run_loader(share, engine.env())
        assert full.returncode == 1, full.stderr
        assert "no space left on device" in full.stderr.lower(), full.stderr
        failures = [line for line in full.stderr.splitlines() if ": loading " in line and "failed" in line]
        assert len(failures) == 2, full.stderr  # the first failure did not stop the second image
        assert "0 loaded, 0 already present, 2 with errors" in full.stderr
        assert sorted(p.name for p in (share / "images").iterdir()) == sorted(
            name for name, _ in image_list(share).values()
        )  # nothing deleted after a failed load
        assert engine.image_ids() == set()

        engine.resize_data_root("256m")
        again = run_loader(share, engine.env())
        assert again.returncode == 0, again.stderr
        for image in images:
            assert engine.image_id(image.reference) == config_digest(image)
        assert engine.image_ids() == {config_digest(i) for i in images}
        assert list((share / "images").iterdir()) == []  # deleted once verified


def _load_clients(engine: Dockerd) -> list[int]:
    """PIDs of `docker … load` clients talking to `engine`."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv[:1] == [DOCKER.encode()] and engine.host.encode() in argv and b"load" in argv:
            pids.append(int(proc.name))
    return pids


def _imported_bytes(engine: Dockerd) -> int:
    """Bytes dockerd has written so far into its temporary import directories (`<root>/tmp`)."""
    total = 0
    for parent, _, files in os.walk(engine.data_root / "tmp"):
        for name in files:
            try:
                total += os.lstat(os.path.join(parent, name)).st_size
            except OSError:
                continue
    return total


def _kill_engine_mid_load(engine: Dockerd, timeout: float = 60.0) -> int:
    """SIGKILL `engine` (dockerd, containerd, shims) once a `docker load` runs and dockerd has
    stored part of the archive; returns the bytes it had imported then (0: no load was caught in
    time, nothing killed)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _load_clients(engine):
            imported = _imported_bytes(engine)
            if imported > 0:
                engine.kill_all()
                return imported
        time.sleep(0.002)
    return 0


def test_engine_killed_mid_load_then_rerun_converges(build, tmp_path, image_factory) -> None:
    """dockerd SIGKILLed while it loads the first image (not a power cut: the page cache
    survives): the loader reports the failures and exits 1; after dockerd's restart no partial
    image exists, and the rerun loads both with the listed IDs."""
    noise = os.urandom(24 << 20)  # a load that takes long enough to be cut
    images = [
        image_factory.single_arch(f"dfault/power-{i}", tag="1.0", files={"n.bin": noise}) for i in range(2)
    ]
    share = docker_package(build, tmp_path / "target", "dpower", *images)
    with Dockerd() as engine:
        with ThreadPoolExecutor(1) as pool:
            killer = pool.submit(_kill_engine_mid_load, engine)
            first = run_loader(share, engine.env())
            imported = killer.result()
        assert 0 < imported < 2 * len(noise), imported  # cut while the first archive was streaming in
        assert first.returncode == 1, first.stderr
        assert f"container-loader(dpower): {images[0].reference}: loading" in first.stderr, first.stderr
        assert "0 loaded" in first.stderr, first.stderr

        engine.start()  # restarted: same data root, /run empty
        assert engine.image_ids() == set()  # nothing half-imported became an image
        second = run_loader(share, engine.env())
        assert second.returncode == 0, second.stderr
        assert "2 loaded, 0 already present, 0 with errors" in second.stderr, second.stderr
        for image in images:
            assert engine.image_id(image.reference) == config_digest(image)
        assert engine.image_ids() == {config_digest(i) for i in images}


def test_a_failed_update_keeps_the_previous_image_until_its_replacement_is_in(
    build, tmp_path, image_factory
) -> None:
    """v2 loaded `app:stable` = A into dockerd; v3 moves the reference to B, which does not fit on
    the data root: A stays under the reference and runs, the unit fails naming the cause; with
    space again B is loaded, named, and only then A pruned."""
    a = image_factory.single_arch("dfault/update", tag="stable", files={**base_files("app"), "etc/v": b"2"})
    noise = os.urandom(6 << 20)  # bigger than the disk, incompressible
    b = image_factory.single_arch("dfault/update", tag="stable", files={**base_files("app"), "n.bin": noise})
    root = tmp_path / "target"
    with Dockerd(data_root_size="4m") as engine:
        v2 = run_loader(docker_package(build, root, "dupdate", a), engine.env())
        assert v2.returncode == 0, v2.stderr
        share = docker_package(build, root, "dupdate", b)  # v3 over v2
        full = run_loader(share, engine.env())
        assert full.returncode == 1, full.stderr
        assert "no space left on device" in full.stderr.lower(), full.stderr
        assert engine.image_id(a.reference) == config_digest(a)  # the reference still names A
        ran = engine("run", "--rm", *RUN_OPTIONS, a.reference, "/bin/hello")
        assert ran.stdout == "hello from the container-lock test image\n"
        assert "pruned" not in full.stderr
        assert f"kept {a.reference} ({config_digest(a).split(':')[1]}): its replacement" in full.stderr

        engine.resize_data_root("256m")
        freed = run_loader(share, engine.env())
        assert freed.returncode == 0, freed.stderr
        assert engine.image_id(b.reference) == config_digest(b)
        assert engine.image_ids() == {config_digest(b)}  # A pruned
        lines = freed.stderr.splitlines()
        hex_a, hex_b = (config_digest(i).split(":")[1] for i in (a, b))
        loaded = lines.index(f"container-loader(dupdate): {b.reference}: loaded ({hex_b})")
        pruned = lines.index(
            f"container-loader(dupdate): pruned {a.reference} ({hex_a}): no installed package lists it"
        )
        assert loaded < pruned
