"""Loader classes and the on-target loader, with real BitBake, registry, skopeo and podman."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import signal
import subprocess
import tarfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import bb
import pytest

from tests.harness.bitbake import PACKAGE_TASKS, PAYLOAD_TASKS, PROJECT_LAYER, TEST_CORE_LAYER, BuildDir
from tests.harness.podman import RUN_OPTIONS, Podman

LATER_TASKS = (
    "do_install_fetched_containers",
    "do_deploy_container_manifest",
    "do_prepare_build",
    "do_dpkg_build",
    "do_build",
)


def ar_members(data: bytes) -> list[str]:
    """Member names of an `ar` archive (a .deb), read without binutils."""
    assert data.startswith(b"!<arch>\n")
    names, offset = [], 8
    while offset + 60 <= len(data):
        header = data[offset : offset + 60]
        names.append(header[:16].decode().strip().rstrip("/"))
        size = int(header[48:58].decode().strip())
        offset += 60 + size + (size % 2)
    return names


def pinned(image) -> str:
    return f"docker://{image.host}/{image.repository};tag={image.tag};digest={image.digest}"


def loader_recipe(build: BuildDir, name: str, *images, engine: str = "podman", extra: str = "") -> Path:
    urls = " ".join(pinned(i) for i in images)
    return build.write_recipe(f"{name}_1.0", f'inherit {engine}-loader\nSRC_URI += "{urls}"\n{extra}\n')


def payload(d) -> Path:
    return Path(d.getVar("D")) / "usr" / "share" / d.getVar("BPN")


def archives(d) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in (payload(d) / "images").iterdir()}


def decompress(path: Path) -> bytes:
    tool = {".zst": ["zstd", "-dc"], ".xz": ["xz", "-dc"], ".gz": ["gzip", "-dc"], ".tar": ["cat"]}[
        path.suffix
    ]
    return subprocess.run([*tool, str(path)], capture_output=True, check=True).stdout


def install_deb(d, root: Path) -> Path:
    """Unpack the built .deb into `root` (what dpkg does on the target); returns the payload dir."""
    deb = next(Path(d.getVar("WORKDIR")).glob("*.deb"))
    subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
    return root / "usr" / "share" / d.getVar("BPN")


def run_loader(share: Path, podman: Podman) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(share / "container-loader.sh")], capture_output=True, text=True, env=podman.env(), timeout=300
    )


@pytest.mark.parametrize(
    ("change", "value"),
    [("ZSTD_COMPRESSION_LEVEL", "-19"), ("CONTAINER_COMPRESSION", "xz")],
)
def test_compression_change_reruns_only_packaging_without_downloads(
    build, registry, image_factory, change, value
) -> None:
    image = image_factory.single_arch("loader/level", tag="1.0")
    rec = loader_recipe(build, "level", image)
    build.set(CONTAINER_PAYLOAD="recompress")
    before = build.taskhashes(rec)
    d = build.run(rec, *PACKAGE_TASKS)
    old = {name: payload(d) / "images" / name for name in archives(d)}
    old_bytes = {name: path.read_bytes() for name, path in old.items()}
    old_tars = {name: decompress(path) for name, path in old.items()}

    build.set(**{change: value})
    after = build.taskhashes(rec)
    assert before["do_fetch"] == after["do_fetch"]
    assert before["do_unpack"] == after["do_unpack"]
    assert before["do_install"] == after["do_install"]
    for task in LATER_TASKS:
        assert before[task] != after[task], task

    mark = registry.mark()
    d = build.run(rec, *PACKAGE_TASKS)
    assert registry.blob_gets(mark) == []
    new = {name: payload(d) / "images" / name for name in archives(d)}
    assert list(new) != list(old) or [p.read_bytes() for p in new.values()] != list(old_bytes.values())
    assert [decompress(p) for p in new.values()] == list(old_tars.values())
    manifest = json.loads((Path(d.getVar("WORKDIR")) / "container-lock-manifest.json").read_text())
    assert manifest["images"][0]["compression"] == ("xz" if value == "xz" else "zst")


def test_only_the_chosen_algorithms_level_and_the_packaging_code_are_signed(build, image_factory) -> None:
    image = image_factory.single_arch("loader/levels", tag="1.0")
    rec = loader_recipe(build, "levels", image, engine="docker")  # default payload: layers
    layers = build.taskhashes(rec)["do_install_fetched_containers"]
    build.set(ZSTD_COMPRESSION_LEVEL="-19", CONTAINER_COMPRESSION="xz")  # no meaning for a layers payload
    assert build.taskhashes(rec)["do_install_fetched_containers"] == layers
    build.set(CONTAINER_PAYLOAD="recompress", CONTAINER_COMPRESSION="zst")
    zst = build.taskhashes(rec)["do_install_fetched_containers"]
    assert zst != layers
    build.set(CONTAINER_XZ_LEVEL="1", CONTAINER_GZIP_LEVEL="1")
    assert build.taskhashes(rec)["do_install_fetched_containers"] == zst
    checksums = build.parse(rec).getVarFlag("do_install_fetched_containers", "file-checksums")
    assert "lib/containerlock/payload/archive.py" in checksums


def test_thread_count_changes_neither_signature_nor_bytes(build, image_factory) -> None:
    image = image_factory.single_arch("loader/threads", tag="1.0")
    rec = loader_recipe(build, "threads", image)
    results = []
    for kind in ("zst", "xz"):
        for threads in ("1", "4"):
            build.set(
                CONTAINER_PAYLOAD="recompress",
                CONTAINER_COMPRESSION=kind,
                CONTAINER_COMPRESSION_THREADS=threads,
            )
            hashes = build.taskhashes(rec)
            d = build.run(rec, *PAYLOAD_TASKS)
            results.append((kind, hashes["do_install_fetched_containers"], archives(d)))
    assert results[0][1:] == results[1][1:]
    assert results[2][1:] == results[3][1:]


@pytest.mark.parametrize("kind", ["layers", "recompress"])
def test_payload_is_reproducible(tmp_path, image_factory, kind) -> None:
    image = image_factory.multi_arch("loader/repro", tag="1.0")
    outputs = []
    for n in range(2):
        build = BuildDir(tmp_path / f"b{n}")
        build.set(
            DL_DIR=str(tmp_path / f"dl{n}"), TMPDIR=str(tmp_path / f"b{n}" / "tmp"), CONTAINER_PAYLOAD=kind
        )
        d = build.run(loader_recipe(build, "repro", image), *PACKAGE_TASKS)
        share = payload(d)
        outputs.append(
            (
                archives(d),
                (share / "image.list").read_bytes(),
                (Path(d.getVar("WORKDIR")) / "container-lock-manifest.json").read_bytes(),
            )
        )
        build.events.close()
    assert outputs[0] == outputs[1]


@pytest.mark.parametrize(
    ("engine", "depends", "suffix"),
    [
        # podman gunzips layers in-process: a recompressed archive (zstd on the target) by default.
        ("podman", "bash, podman, zstd", ".tar.zst"),
        # docker: the blobs as fetched, with pigz so that dockerd gunzips them at C speed.
        ("docker", "bash, docker.io, apparmor, pigz", ".tar"),  # bookworm: docker.io has the client
    ],
)
def test_package_metadata_and_uncompressed_deb(build, image_factory, engine, depends, suffix) -> None:
    image = image_factory.single_arch(f"loader/meta-{engine}", tag="1.0")
    recipe = loader_recipe(build, f"meta-{engine}", image, engine=engine, extra='DEBIAN_DEPENDS = "bash"')
    d = build.run(recipe, *PACKAGE_TASKS)
    deb = next(Path(d.getVar("WORKDIR")).glob("*.deb"))
    info = subprocess.run(["dpkg-deb", "-I", str(deb)], capture_output=True, text=True, check=True).stdout
    assert f"Depends: {depends}\n" in info  # the engine and what decompresses its payload
    assert "Architecture: amd64" in info
    members = ar_members(deb.read_bytes())
    assert "data.tar" in members  # built with -Znone: the payload is compressed already
    rules = (Path(d.getVar("S")) / "debian" / "rules").read_text()
    assert "dh_builddeb -- -Znone" in rules
    unit = (Path(d.getVar("S")) / "debian" / f"meta-{engine}.service").read_text()
    # docker: after and with its daemon; podman has none (podman.service is the REST API server,
    # which the loader does not use and would start beside every load)
    engine_lines = {line for line in unit.splitlines() if line.startswith(("After=", "Requires="))}
    want = {"After=docker.service", "Requires=docker.service"} if engine == "docker" else set()
    assert engine_lines == want, unit
    assert "RequiresMountsFor=/var/lib/container-loader\n" in unit  # the record's partition
    # loads at a time: docker 2, podman 1 (two at a time was not faster, docs/loader.md)
    script = (Path(d.getVar("D")) / "usr" / "share" / f"meta-{engine}" / "container-loader.sh").read_text()
    assert f"jobs=${{CONTAINER_LOADER_JOBS:-{2 if engine == 'docker' else 1}}}\n" in script
    assert "@" not in unit, unit
    assert f"ExecStart=/usr/share/meta-{engine}/container-loader.sh" in unit
    line = (payload(d) / "image.list").read_text().split()
    plat = image.platforms["linux/amd64"]
    assert line == [
        f"{image.host.replace(':', '_')}+loader+meta-{engine}@1.0{suffix}",
        image.reference,
        plat.config_digest,
    ]


def test_layers_payload_holds_the_registry_blobs_as_fetched(build, image_factory) -> None:
    """No decompression, no recompression: the archive's layer files are the registry's blobs."""
    image = image_factory.multi_arch("loader/asis", tag="1.0")
    recipe = loader_recipe(build, "asis", image, engine="docker", extra='DISTRO_ARCH = "arm64"')
    d = build.run(recipe, *PAYLOAD_TASKS)
    archive = next((payload(d) / "images").iterdir())
    plat = image.platforms["linux/arm64/v8"]
    with tarfile.open(archive) as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}  # type: ignore[union-attr]
        manifest = json.loads(members["manifest.json"])
    assert manifest == [
        {
            "Config": f"{plat.config_digest.split(':')[1]}.json",
            "Layers": [f"{layer.digest.split(':')[1]}.tar" for layer in plat.layers],
            "RepoTags": [image.reference],
        }
    ]
    for layer in plat.layers:
        data = members[f"{layer.digest.split(':')[1]}.tar"]
        assert "sha256:" + hashlib.sha256(data).hexdigest() == layer.digest and data[:2] == b"\x1f\x8b"


def test_layers_payload_refuses_zstd_layers_clearly(build, image_factory) -> None:
    image = image_factory.layered("loader/zstd", [{"etc/x": b"x"}], compressions=("zstd",))
    with pytest.raises(bb.BBHandledException):
        build.run(loader_recipe(build, "zstdlayers", image, engine="docker"), *PAYLOAD_TASKS)
    message = build.events.messages(logging.CRITICAL)[-1]
    assert "tar+zstd cannot go into a docker-archive" in message and image.reference in message


def test_bad_compression_setting_is_a_clear_error(build, image_factory) -> None:
    image = image_factory.single_arch("loader/bad", tag="1.0")
    build.set(CONTAINER_PAYLOAD="recompress", CONTAINER_COMPRESSION="lz4")
    with pytest.raises(bb.BBHandledException):  # what bb.fatal raises, after logging
        build.run(loader_recipe(build, "badcomp", image), *PAYLOAD_TASKS)
    assert any("badcomp: CONTAINER_COMPRESSION = 'lz4'" in m for m in build.events.messages(logging.CRITICAL))


@pytest.mark.parametrize("engine", ["podman", "docker"])
def test_loader_loads_verifies_and_runs_the_image(build, tmp_path, image_factory, podman, engine) -> None:
    image = image_factory.single_arch("loader/run", tag="1.0")
    d = build.run(loader_recipe(build, f"run-{engine}", image, engine=engine), *PACKAGE_TASKS)
    share = install_deb(d, tmp_path / "target")
    result = run_loader(share, podman)
    assert result.returncode == 0, result.stderr
    assert podman.image_id(image.reference) == image.platforms["linux/amd64"].config_digest.split(":")[1]
    assert podman.names() == {image.reference}  # no docker.io/ or localhost/ prefix
    ran = podman("run", "--rm", *RUN_OPTIONS, image.reference, "/bin/hello")
    assert ran.stdout == "hello from the container-lock test image\n"


def test_failing_image_does_not_stop_the_others_and_rerun_is_idempotent(
    build, tmp_path, image_factory, podman
) -> None:
    images = [image_factory.single_arch(f"loader/three-{i}", tag="1.0") for i in range(3)]
    d = build.run(
        loader_recipe(build, "three", *images, extra='CONTAINER_DELETE_AFTER_LOAD = "1"'), *PACKAGE_TASKS
    )
    share = install_deb(d, tmp_path / "target")
    broken = sorted((share / "images").iterdir())[1]
    broken.write_bytes(broken.read_bytes()[:200])

    first = run_loader(share, podman)
    assert first.returncode == 1
    bad_ref = next(i.reference for i in images if i.repository.replace("/", "+") in broken.name)
    assert bad_ref in first.stderr
    good = [i for i in images if i.reference != bad_ref]
    for image in good:
        assert podman.image_id(image.reference) == image.platforms["linux/amd64"].config_digest.split(":")[1]
    assert podman.image_id(bad_ref) is None
    # Deleted only after a verified load: the broken archive stays.
    assert sorted(p.name for p in (share / "images").iterdir()) == [broken.name]

    second = run_loader(share, podman)
    assert second.returncode == 1
    assert all(i.reference not in second.stderr for i in good)  # nothing reloaded
    assert {i.reference for i in good} <= podman.names()


def test_upgrade_that_keeps_the_tag_is_loaded(build, tmp_path, image_factory, podman) -> None:
    for n, content in enumerate((b"v1\n", b"v2\n")):
        image = image_factory.single_arch(
            "loader/upgrade", tag="stable", files={"etc/version": content, "bin/hello": b"x"}
        )
        d = build.run(loader_recipe(build, "upgrade", image), *PACKAGE_TASKS)
        share = install_deb(d, tmp_path / f"target{n}")
        result = run_loader(share, podman)
        assert result.returncode == 0, result.stderr
        assert podman.image_id(image.reference) == image.platforms["linux/amd64"].config_digest.split(":")[1]


def test_upstream_isar_recipe_builds_unchanged(build, image_factory) -> None:
    """A recipe written for upstream Isar's loader classes (the core layer has decoys of them)."""
    image = image_factory.single_arch("loader/upstream", tag="3.10.2")
    rec = build.write_recipe(
        "prebuilt-docker-img_0.1",
        "inherit docker-loader\n\n"
        'MAINTAINER = "someone <someone@example.invalid>"\n\n'
        'CONTAINER_DELETE_AFTER_LOAD = "1"\n\n'
        f'SRC_URI += "\\\n    docker://{image.host}/{image.repository};'
        f'digest={image.digest};tag=3.10.2 \\\n    "\n',
    )
    d = build.run(rec, *PACKAGE_TASKS)
    included = d.getVar("BBINCLUDED").split()
    assert str(PROJECT_LAYER / "classes-recipe" / "docker-loader.bbclass") in included
    decoys = [
        str(TEST_CORE_LAYER / "classes-recipe" / f"{c}.bbclass")
        for c in ("docker-loader", "container-loader")
    ]
    assert not set(decoys) & set(included)
    assert (payload(d) / "image.list").read_text().split()[1] == image.reference
    script = (payload(d) / "container-loader.sh").read_text()
    assert "@CONTAINER_ENGINE@:-docker" not in script and "ENGINE:-docker}" in script
    assert "DELETE_AFTER_LOAD:-1}" in script


def _shim(tmp_path: Path, podman, body: str) -> dict[str, str]:
    """An environment whose `podman` is a wrapper script around the test store."""
    shims = tmp_path / "shim-bin"
    shims.mkdir(exist_ok=True)
    (shims / "podman").write_text(f'#!/bin/bash\n{body}\nexec {podman.shims}/podman "$@"\n')
    (shims / "podman").chmod(0o755)
    env = podman.env()
    env["PATH"] = f"{shims}:{env['PATH']}"
    return env


def test_loader_waits_for_the_engine_then_fails_visibly(build, tmp_path, image_factory, podman) -> None:
    """Asked (podman's store file not read), an engine that does not answer is waited for, then
    given up on visibly; with the store file read, a podman that fails fails the loads by name."""
    image = image_factory.single_arch("loader/wait", tag="1.0")
    share = install_deb(build.run(loader_recipe(build, "wait", image), *PACKAGE_TASKS), tmp_path / "target")
    env = _shim(tmp_path, podman, "exit 125")  # the engine does not answer at all
    result = subprocess.run(
        [str(share / "container-loader.sh")], capture_output=True, text=True, env=env, timeout=60
    )
    assert result.returncode == 1
    assert f"{image.reference}: loading {share}/images/" in result.stderr
    assert "1 with errors" in result.stderr
    env["CONTAINER_LOADER_READ_STORE"] = "0"
    env["CONTAINER_LOADER_ENGINE_WAIT"] = "2"
    result = subprocess.run(
        [str(share / "container-loader.sh")], capture_output=True, text=True, env=env, timeout=60
    )
    assert result.returncode == 1 and "podman does not answer after 2s; no image loaded" in result.stderr
    # The engine comes up a moment later (its first answer fails): the loader waits for it and loads.
    flag = tmp_path / "engine-up"
    env = _shim(tmp_path, podman, f"if [ ! -e {flag} ]; then touch {flag}; exit 125; fi")
    env["CONTAINER_LOADER_READ_STORE"] = "0"
    result = subprocess.run(
        [str(share / "container-loader.sh")], capture_output=True, text=True, env=env, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert podman.image_id(image.reference) is not None


def test_loader_reports_unknown_and_unsafe_image_list_lines(build, tmp_path, image_factory, podman) -> None:
    """The loader script's own checks (no engine involved): bad lines fail visibly, the rest loads."""
    images = [image_factory.single_arch(f"loader/lines-{i}", tag="1.0") for i in range(2)]
    share = install_deb(
        build.run(loader_recipe(build, "lines", *images), *PACKAGE_TASKS), tmp_path / "target"
    )
    with (share / "image.list").open("a") as f:
        f.write("not-there.tar.zst 127.0.0.1:1/ghost:1 sha256:" + "0" * 64 + "\n")
        f.write("../../etc/passwd 127.0.0.1:1/evil:1 sha256:" + "1" * 64 + "\n")
        f.write("lonely-file-without-reference\n")
    result = run_loader(share, podman)
    assert result.returncode == 1
    assert "not-there.tar.zst is missing" in result.stderr
    assert "refusing file name '../../etc/passwd'" in result.stderr
    assert "has no reference" in result.stderr
    for image in images:
        assert podman.image_id(image.reference) == image.platforms["linux/amd64"].config_digest.split(":")[1]


@pytest.fixture
def small_disk(tmp_path: Path):
    """A 4 MiB tmpfs: a real file system that runs out of space."""
    mountpoint = tmp_path / "small-disk"
    mountpoint.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mountpoint)], check=True)
    yield mountpoint
    subprocess.run(["umount", "-l", str(mountpoint)], check=False)


def test_engine_store_full_then_grown_rerun_converges(build, tmp_path, image_factory, small_disk) -> None:
    """podman's real store on a full file system: loads fail with ENOSPC, nothing is deleted; with
    space again, a rerun loads everything."""
    noise = os.urandom(6 << 20)  # bigger than the disk, incompressible
    images = [
        image_factory.single_arch(f"loader/disk-{i}", tag="1.0", files={"n.bin": noise}) for i in range(2)
    ]
    recipe = loader_recipe(build, "disk", *images, extra='CONTAINER_DELETE_AFTER_LOAD = "1"')
    share = install_deb(build.run(recipe, *PACKAGE_TASKS), tmp_path / "target")
    engine = Podman(small_disk / "podman")
    try:
        full = run_loader(share, engine)
        assert full.returncode == 1
        assert "no space left on device" in full.stderr.lower(), full.stderr
        assert len(list((share / "images").iterdir())) == 2  # nothing deleted after a failed load
        subprocess.run(["mount", "-o", "remount,size=256m", str(small_disk)], check=True)
        again = run_loader(share, engine)
        assert again.returncode == 0, again.stderr
        for image in images:
            assert (
                engine.image_id(image.reference) == image.platforms["linux/amd64"].config_digest.split(":")[1]
            )
        assert list((share / "images").iterdir()) == []  # deleted once verified
    finally:
        engine.close()


def _kill_engine_load(storage_conf: Path, timeout: float = 60.0) -> bool:
    """SIGKILL the first `podman … load` on the store `storage_conf` names once it runs; whether
    one was killed."""
    mark = f"CONTAINERS_STORAGE_CONF={storage_conf}".encode()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for proc in Path("/proc").iterdir():
            try:
                argv = (proc / "cmdline").read_bytes().split(b"\0")
                if b"load" not in argv or not argv[0].endswith(b"podman"):
                    continue
                if mark not in (proc / "environ").read_bytes().split(b"\0"):
                    continue
            except OSError:
                continue
            time.sleep(0.05)  # into the load
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(proc.name), signal.SIGKILL)
            return True
        time.sleep(0.002)
    return False


def test_engine_killed_mid_load_then_rerun_converges(build, tmp_path, image_factory, podman) -> None:
    """The real `podman load` SIGKILLed half-way (not a power cut: what it wrote survives in the
    page cache; power cuts are the boot tier's); the rerun loads all."""
    noise = os.urandom(24 << 20)  # a load that takes long enough to be cut
    images = [
        image_factory.single_arch(f"loader/power-{i}", tag="1.0", files={"n.bin": noise}) for i in range(2)
    ]
    share = install_deb(
        build.run(loader_recipe(build, "power", *images), *PACKAGE_TASKS), tmp_path / "target"
    )
    with ThreadPoolExecutor(1) as pool:
        killer = pool.submit(_kill_engine_load, podman.storage_conf)
        first = run_loader(share, podman)
        assert killer.result() is True
    assert first.returncode == 1 and "failed" in first.stderr, first.stderr
    second = run_loader(share, podman)
    assert second.returncode == 0, second.stderr
    for image in images:
        assert podman.image_id(image.reference) == image.platforms["linux/amd64"].config_digest.split(":")[1]
