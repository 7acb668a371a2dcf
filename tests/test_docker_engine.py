"""The docker-loader package against a REAL dockerd (Debian's docker.io), not the podman shim.

The package is built by the in-process BitBake harness, unpacked like dpkg would, and its
container-loader.sh runs with Debian's `/usr/bin/docker` first in PATH, talking to a private dockerd.
"""

from __future__ import annotations

import shlex
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness.bitbake import PACKAGE_TASKS, BuildDir
from tests.harness.dockerd import RUN_OPTIONS, Dockerd
from tests.harness.images import PushedImage
from tests.test_loader import decompress, install_deb, loader_recipe

pytestmark = pytest.mark.docker

HELLO = "hello from the container-lock test image\n"


@pytest.fixture
def engine(dockerd: Dockerd) -> Iterator[Dockerd]:
    """The session's dockerd with an empty store; what a test loaded is removed afterwards."""
    dockerd.remove_all()
    assert dockerd.image_ids() == set()
    yield dockerd
    dockerd.remove_all()


def docker_package(build: BuildDir, target: Path, name: str, *images: PushedImage, extra: str = "") -> Path:
    """Build a docker-loader package for `images`, unpack it into `target`; returns the payload dir."""
    d = build.run(loader_recipe(build, name, *images, engine="docker", extra=extra), *PACKAGE_TASKS)
    share = install_deb(d, target)
    assert "ENGINE:-docker}" in (share / "container-loader.sh").read_text()
    return share


def image_list(share: Path) -> dict[str, tuple[str, str]]:
    """image.list as {reference: (file, image ID)}."""
    lines = [line.split() for line in (share / "image.list").read_text().splitlines() if line.strip()]
    return {ref: (file, image_id) for file, ref, image_id in lines}


def config_digest(image: PushedImage) -> str:
    return image.platforms["linux/amd64"].config_digest


def run_loader(share: Path, env: dict[str, str], wait: int | None = None) -> subprocess.CompletedProcess[str]:
    if wait is not None:
        env = {**env, "CONTAINER_LOADER_ENGINE_WAIT": str(wait)}
    return subprocess.run(
        [str(share / "container-loader.sh")], capture_output=True, text=True, env=env, timeout=300
    )


def actions(events: list[str]) -> list[str]:
    return [e.split()[0] for e in events]


def test_loads_into_real_dockerd_with_the_listed_image_ids(build, tmp_path, image_factory, engine) -> None:
    images = [
        image_factory.single_arch("docker/load", tag="1.0"),
        image_factory.multi_arch("docker/load-multi", tag="2.1"),
    ]
    share = docker_package(build, tmp_path / "target", "dload", *images)
    listed = image_list(share)
    assert set(listed) == {i.reference for i in images}

    since = time.time()
    result = run_loader(share, engine.env())
    assert result.returncode == 0, result.stderr
    assert actions(engine.events(since, time.time())).count("load") == 2
    for image in images:
        want = listed[image.reference][1]
        assert want == config_digest(image)  # the build lists the amd64 config digest
        assert engine.image_id(image.reference) == want  # docker's image ID is the config digest
        assert image.reference in engine.repo_tags(want)  # the ref from image.list names it
        assert f"{image.reference}: loaded ({want.removeprefix('sha256:')})" in result.stderr
    assert engine.names() == {i.reference for i in images}  # no docker.io/ prefix added
    assert engine.image_ids() == {config_digest(i) for i in images}


def test_loaded_image_runs(build, tmp_path, image_factory, engine) -> None:
    image = image_factory.single_arch("docker/run", tag="1.0")
    share = docker_package(build, tmp_path / "target", "drun", image)
    result = run_loader(share, engine.env())
    assert result.returncode == 0, result.stderr
    ran = engine("run", "--rm", *RUN_OPTIONS, image.reference, timeout=120)
    assert ran.stdout == HELLO
    assert engine("ps", "--all", "--quiet").stdout == ""  # --rm removed it


def test_image_present_under_another_name_is_retagged_not_loaded(
    build, tmp_path, image_factory, engine
) -> None:
    image = image_factory.single_arch("docker/retag", tag="1.0")
    share = docker_package(build, tmp_path / "target", "dretag", image)
    assert run_loader(share, engine.env()).returncode == 0
    want = config_digest(image)
    engine("tag", image.reference, "127.0.0.1:1/elsewhere/other:9")
    engine("rmi", image.reference)  # only untags: the image stays under the other name
    assert engine.image_id(image.reference) is None
    assert engine.image_id(want) == want
    for archive in (share / "images").iterdir():
        archive.unlink()  # a load would now fail: only a retag can succeed

    since = time.time()
    result = run_loader(share, engine.env())
    assert result.returncode == 0, result.stderr
    assert actions(engine.events(since, time.time())) == ["tag"]
    assert engine.image_id(image.reference) == want
    assert set(engine.repo_tags(want)) == {image.reference, "127.0.0.1:1/elsewhere/other:9"}


def test_rerun_loads_nothing_and_succeeds(build, tmp_path, image_factory, engine) -> None:
    images = [image_factory.single_arch(f"docker/again-{i}", tag="1.0") for i in range(2)]
    share = docker_package(
        build, tmp_path / "target", "dagain", *images, extra='CONTAINER_DELETE_AFTER_LOAD = "1"'
    )
    first = run_loader(share, engine.env())
    assert first.returncode == 0, first.stderr
    assert list((share / "images").iterdir()) == []  # deleted after verified loads
    ids = engine.image_ids()
    assert ids == {config_digest(i) for i in images}

    since = time.time()
    second = run_loader(share, engine.env())
    assert second.returncode == 0, second.stderr
    # Nothing to do: the loader says so, and the engine records no load and no tag.
    assert second.stdout == ""
    assert "container-loader(dagain): nothing to do: 2 image(s) already present" in second.stderr
    assert ": loaded (" not in second.stderr and "failed" not in second.stderr
    assert engine.events(since, time.time()) == []
    assert engine.image_ids() == ids
    for image in images:
        assert engine.image_id(image.reference) == config_digest(image)


def _overlapping_loads(directory: Path, engine: Dockerd) -> Path:
    """A `docker` whose `load` takes at least a second and logs `start`/`end` lines around it."""
    log = directory / "loads.log"
    directory.mkdir(parents=True)
    wrapper = directory / "docker"
    real, quoted_log = shlex.quote(str(engine.bin / "docker")), shlex.quote(str(log))
    wrapper.write_text(
        "#!/bin/bash\n"
        f'[ "$1" = load ] || exec {real} "$@"\n'
        f"echo start >> {quoted_log}\n"
        "sleep 1\n"
        f'{real} "$@"\n'
        "status=$?\n"
        f"echo end >> {quoted_log}\n"
        'exit "$status"\n'
    )
    wrapper.chmod(0o755)
    return log


def _most_at_once(log: Path) -> int:
    running = most = 0
    for line in log.read_text().split():
        running += 1 if line == "start" else -1
        most = max(most, running)
    return most


@pytest.mark.parametrize("jobs", [1, 2, 3])
def test_images_load_jobs_at_a_time_and_a_rerun_asks_the_engine_twice(
    build, tmp_path, image_factory, engine, jobs
) -> None:
    """CONTAINER_LOADER_JOBS loads at a time (the default from the class: 2); every reference is
    verified; a second run costs two engine calls (one listing, one inspection of every reference)."""
    images = [image_factory.single_arch(f"docker/jobs-{i}", tag=f"{jobs}.0") for i in range(5)]
    share = docker_package(build, tmp_path / "target", f"djobs{jobs}", *images)
    loads = _overlapping_loads(tmp_path / "loads-bin", engine)
    env = {**engine.env(), "PATH": f"{loads.parent}:{engine.env()['PATH']}"}
    if jobs != 2:
        env["CONTAINER_LOADER_JOBS"] = str(jobs)
    result = run_loader(share, env)
    assert result.returncode == 0, result.stderr
    assert loads.read_text().split().count("start") == len(images)
    assert _most_at_once(loads) == jobs
    for image in images:
        assert engine.image_id(image.reference) == config_digest(image)
        assert f"{image.reference}: loaded ({config_digest(image).removeprefix('sha256:')})" in result.stderr
    calls = _logging_docker(tmp_path / "calls-bin", engine)
    again = run_loader(share, {**engine.env(), "PATH": f"{calls.parent}:{engine.env()['PATH']}"})
    assert again.returncode == 0, again.stderr
    assert "nothing to do: 5 image(s) already present" in again.stderr
    assert [line.split()[1:] for line in calls.read_text().splitlines()] == [["image", "0"], ["image", "0"]]


def _corrupt(archive: Path, how: str) -> None:
    if how == "truncated":  # the decompressor fails half-way
        archive.write_bytes(archive.read_bytes()[:200])
        return
    # A well-formed archive whose layer content changed: only docker's own diff-ID check can see it.
    tar = decompress(archive)
    assert tar.count(HELLO.encode()) == 1, "the layer is expected uncompressed in the docker-archive"
    tar = tar.replace(HELLO.encode(), HELLO.upper().encode())
    archive.write_bytes(
        subprocess.run(["zstd", "-q", "-c"], input=tar, capture_output=True, check=True).stdout
    )


@pytest.mark.parametrize("how", ["truncated", "tampered-layer"])
def test_corrupt_archive_fails_by_name_and_the_others_load(
    build, tmp_path, image_factory, engine, how
) -> None:
    images = [image_factory.single_arch(f"docker/three-{i}", tag="1.0") for i in range(3)]
    # recompress: the layers are plain tars inside the archive, so one can be changed and re-wrapped
    share = docker_package(
        build, tmp_path / "target", "dthree", *images, extra='CONTAINER_PAYLOAD = "recompress"'
    )
    bad = images[1]
    broken = share / "images" / image_list(share)[bad.reference][0]
    _corrupt(broken, how)

    result = run_loader(share, engine.env())
    assert result.returncode == 1
    failures = [line for line in result.stderr.splitlines() if "failed" in line]
    assert len(failures) == 1 and failures[0].startswith(
        f"container-loader(dthree): {bad.reference}: loading"
    )
    if how == "tampered-layer":
        assert "diffid" in failures[0].lower()  # docker's verdict, passed through
    assert engine.image_id(bad.reference) is None
    assert config_digest(bad) not in engine.image_ids()
    for image in (images[0], images[2]):
        assert engine.image_id(image.reference) == config_digest(image)
    assert engine.names() == {images[0].reference, images[2].reference}


def _logging_docker(directory: Path, engine: Dockerd) -> Path:
    """A `docker` that records each call (`<time.time()> <subcommand> <exit status>`) and runs
    `engine`'s own client; returns its log."""
    log = directory / "docker-calls.log"
    directory.mkdir(parents=True)
    wrapper = directory / "docker"
    wrapper.write_text(
        "#!/bin/sh\n"
        f'{shlex.quote(str(engine.bin / "docker"))} "$@"\n'
        "status=$?\n"
        f'echo "$(date +%s.%N) $1 $status" >> {shlex.quote(str(log))}\n'
        'exit "$status"\n'
    )
    wrapper.chmod(0o755)
    return log


def test_engine_started_after_the_loader_is_waited_for(build, tmp_path, image_factory) -> None:
    """The loader polls the absent engine (about once a second) without touching an image, and
    loads once the engine answers, well inside its wait budget."""
    image = image_factory.single_arch("docker/late", tag="1.0")
    share = docker_package(build, tmp_path / "target", "dlate", image)
    late = Dockerd()  # its socket does not exist yet
    calls = _logging_docker(tmp_path / "logging-bin", late)
    env = late.env()
    env["PATH"] = f"{calls.parent}:{env['PATH']}"
    loader = subprocess.Popen(
        [str(share / "container-loader.sh")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**env, "CONTAINER_LOADER_ENGINE_WAIT": "60"},
    )
    try:
        time.sleep(3)
        assert loader.poll() is None, loader.communicate()  # still waiting for the engine
        starting = time.time()
        late.start()
        _, stderr = loader.communicate(timeout=120)
        assert loader.returncode == 0, stderr
        assert late.image_id(image.reference) == config_digest(image)
        assert f"{image.reference}: loaded" in stderr
        assert "does not answer" not in stderr
        log = [line.split() for line in calls.read_text().splitlines()]
        before = [(sub, status) for when, sub, status in log if float(when) < starting]
        after = [(sub, status) for when, sub, status in log if float(when) >= starting]
        # Polled by listing the store (`docker image ls`), each failing, at least twice in the 3 s
        # before the start.
        assert len(before) >= 2 and all(c == ("image", "1") for c in before), log
        # Then three engine calls for the image, all succeeding: the listing that answers, the
        # load, one inspection that verifies the reference (the archive carries the tag).
        assert after == [("image", "0"), ("load", "0"), ("image", "0")], log
    finally:
        if loader.poll() is None:
            loader.kill()
        late.close()


def test_absent_engine_is_given_up_on_visibly(build, tmp_path, image_factory) -> None:
    image = image_factory.single_arch("docker/absent", tag="1.0")
    share = docker_package(build, tmp_path / "target", "dabsent", image)
    absent = Dockerd()  # never started: nothing listens on its socket
    try:
        started = time.monotonic()
        result = run_loader(share, absent.env(), wait=3)
        elapsed = time.monotonic() - started
        assert result.returncode == 1
        assert "container-loader(dabsent): docker does not answer after 3s; no image loaded" in result.stderr
        assert 3 <= elapsed < 30, elapsed
        assert sorted(p.name for p in (share / "images").iterdir()) == [image_list(share)[image.reference][0]]
    finally:
        absent.close()
