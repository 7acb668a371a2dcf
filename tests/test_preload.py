"""Preloaded stores (CONTAINER_PRELOAD): real loader packages' images written into the engines'
stores of a root file system on the build host, read back with the engines, then the real loader
run against that store (docs/loader.md, "Preloaded stores").

The root file system is a directory with a dpkg database, the loader packages installed into it
with dpkg and the drop-in's `path-exclude` (what the image build's drop-in does inside the
chroot); the archives are read from the built .debs (the pool), as in the image build.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

import pytest

from containerlock.preload import __main__ as cli
from containerlock.preload import debs, run
from sbom.generate import generate
from tests.harness.bitbake import PACKAGE_TASKS
from tests.harness.dockerd import DOCKER, Dockerd
from tests.test_loader import loader_recipe

PODMAN = "/usr/bin/podman"


def _deb(d) -> Path:
    return next(Path(d.getVar("WORKDIR")).glob("*.deb"))


def _package(build, name, image, engine, arch="amd64", deploy: Path | None = None) -> Path:
    """The loader package's .deb; its build manifest copied into `deploy` when given."""
    extra = "" if arch == "amd64" else f'DISTRO_ARCH = "{arch}"\n'
    d = build.run(loader_recipe(build, name, image, engine=engine, extra=extra), *PACKAGE_TASKS)
    if deploy is not None:
        deploy.mkdir(exist_ok=True)
        shutil.copy(Path(d.getVar("CONTAINER_LOCK_DEPLOY_DIR")) / f"{name}.json", deploy)
    return _deb(d)


def _rootfs(tmp_path: Path, pool: Path, excluded: bool = True) -> Path:
    """A root file system with the pool's packages installed by dpkg, the archives excluded."""
    root = tmp_path / "rootfs"
    (root / "var/lib/dpkg/info").mkdir(parents=True)
    (root / "var/lib/dpkg/updates").mkdir()
    (root / "var/lib/dpkg/status").touch()
    drop_in = debs.drop_in([d.share for d in debs.loader_debs(pool)])
    options = [f"--{line}" for line in drop_in.splitlines() if line.startswith("path-exclude=")]
    assert options, drop_in
    subprocess.run(
        ["dpkg", f"--root={root}", "--log=/dev/null", "--force-depends", "--force-architecture",
         *(options if excluded else []), "-i", *map(str, sorted(pool.glob("*.deb")))],
        check=True, capture_output=True,
    )  # fmt: skip
    return root


_RUNROOTS: set[Path] = set()


@pytest.fixture(autouse=True)
def _remove_runroots() -> Iterator[None]:
    yield
    for path in _RUNROOTS:
        shutil.rmtree(path, ignore_errors=True)
    _RUNROOTS.clear()


def _runroot(rootfs: Path) -> str:
    """One short run root per store (podman refuses run roots over 50 characters, and its database
    in the store remembers the first one given); removed after the test."""
    path = Path("/tmp") / f"cl-pre.{hashlib.sha256(str(rootfs).encode()).hexdigest()[:12]}"
    path.mkdir(exist_ok=True)
    _RUNROOTS.add(path)
    return str(path)


def _podman(rootfs: Path, *args: str) -> str:
    """podman on the root file system's store (the build host's podman, amd64)."""
    root = rootfs / "var/lib/containers/storage"
    result = subprocess.run(
        [PODMAN, "--root", str(root), "--runroot", _runroot(rootfs), "--storage-driver", "overlay", *args],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout


def _mounts_under(path: Path) -> list[str]:
    lines = Path("/proc/self/mountinfo").read_text().splitlines()
    return [line.split()[4] for line in lines if line.split()[4].startswith(f"{path}/")]


def _config(image, platform="linux/amd64") -> str:
    return image.platforms[platform].config_digest.removeprefix("sha256:")


def _counting_env(tmp_path: Path, engine_cmd: str, storage_conf: Path | None, state: Path) -> dict[str, str]:
    """PATH with `podman`/`docker` wrappers that log each call, then run the engine on the store."""
    shims = tmp_path / "shims"
    shims.mkdir(exist_ok=True)
    for name in ("podman", "docker"):
        shim = shims / name
        shim.write_text(
            f'#!/bin/sh\necho "$*" >> {shlex.quote(str(tmp_path / "calls"))}\nexec {engine_cmd} "$@"\n'
        )
        shim.chmod(0o755)
    env = {**os.environ, "PATH": f"{shims}:{os.environ['PATH']}", "CONTAINER_LOADER_STATE_DIR": str(state)}
    if storage_conf is not None:
        env["CONTAINERS_STORAGE_CONF"] = str(storage_conf)
    return env


def _run_loader(rootfs: Path, package: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    script = rootfs / "usr/share" / package / "container-loader.sh"
    return subprocess.run([str(script)], env=env, capture_output=True, text=True, timeout=300, check=False)


def _calls(tmp_path: Path) -> list[str]:
    path = tmp_path / "calls"
    return path.read_text().splitlines() if path.exists() else []


def test_podman_store_is_written_from_the_deb_and_first_boot_loads_nothing(
    build, tmp_path, image_factory
) -> None:
    a = image_factory.single_arch("preload/a", tag="1.0", base={"base/file": b"a base layer\n"})  # two layers
    b = image_factory.single_arch("preload/b", tag="2.0")
    pool = tmp_path / "pool"
    pool.mkdir()
    deploy = tmp_path / "deploy"
    for name, image in (("pre-a", a), ("pre-b", b)):
        _package(build, name, image, "podman", deploy=deploy).rename(pool / f"{name}_1.0_amd64.deb")
    rootfs = _rootfs(tmp_path, pool)
    assert not list((rootfs / "usr/share/pre-a/images").iterdir())  # kept out by path-exclude
    listed = subprocess.run(
        ["dpkg", f"--root={rootfs}", "-L", "pre-a"], capture_output=True, text=True, check=True
    )
    assert "/usr/share/pre-a/images/" in listed.stdout  # dpkg still knows the archive

    done = run.preload(rootfs, pool, tmp_path / "work")
    assert not _mounts_under(rootfs)

    assert {(p.engine, p.reference, p.image_id, p.driver) for p in done} == {
        ("podman", a.reference, _config(a), "overlay"),
        ("podman", b.reference, _config(b), "overlay"),
    }
    # The SBOM of the build says so, from the preload manifest beside the build manifests.
    (deploy / "preload").mkdir()
    (deploy / "preload" / "img.json").write_text(json.dumps(run.manifest("img", done[:1])))
    sbom = json.loads(generate(deploy_dir=deploy))
    shown = {c["name"] + ":" + c["version"]: {p["name"]: p["value"] for p in c.get("properties", [])}
             for c in sbom["components"] if c["type"] == "container"}  # fmt: skip
    assert (
        shown[done[0].reference]["container-lock:preloaded"] == "podman:/var/lib/containers/storage (overlay)"
    )
    assert "container-lock:preloaded" not in shown[done[1].reference]
    listing = _podman(rootfs, "images", "--no-trunc", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}")
    assert set(listing.split("\n")) - {""} == {
        f"{a.reference} sha256:{_config(a)}",
        f"{b.reference} sha256:{_config(b)}",
    }
    record = rootfs / "var/lib/container-loader/podman/loaded"
    assert record.read_text() == "".join(sorted(f"{_config(i)} {i.reference}\n" for i in (a, b)))
    # the pinned overlay links are the ones podman mounts: both layers of `a` are in its mount
    mounted = Path(_podman(rootfs, "image", "mount", a.reference).strip())
    try:
        assert (mounted / "base/file").read_bytes() == b"a base layer\n"
        assert (mounted / "bin/hello").is_file()
    finally:
        _podman(rootfs, "image", "unmount", a.reference)
    assert not list((rootfs / "usr/share/pre-a/images").iterdir())

    # The real loader on that store, as on the first boot: nothing loaded, no archive needed.
    conf = tmp_path / "storage.conf"
    runroot = _runroot(rootfs)
    conf.write_text(f'[storage]\ndriver = "overlay"\ngraphroot = "{rootfs}/var/lib/containers/storage"\n'
                    f'runroot = "{runroot}"\n')  # fmt: skip
    env = _counting_env(tmp_path, PODMAN, conf, rootfs / "var/lib/container-loader")
    result = _run_loader(rootfs, "pre-a", env)
    assert result.returncode == 0, result.stderr
    assert "nothing to do: 1 image(s) already present" in result.stderr
    # the store file answers the listing: one podman call, the inspection of the reference
    assert _calls(tmp_path) == [f"image inspect --format {{{{.Id}}}} {a.reference}"]
    (tmp_path / "calls").unlink()
    env["CONTAINER_LOADER_READ_STORE"] = "0"
    result = _run_loader(rootfs, "pre-b", env)
    assert result.returncode == 0 and "nothing to do" in result.stderr, result.stderr
    assert [c.split()[0:2] for c in _calls(tmp_path)] == [["image", "ls"], ["image", "inspect"]]
    assert record.read_text() == "".join(
        sorted(f"{_config(i)} {i.reference}\n" for i in (a, b))
    )  # nothing pruned


class _DeviceDockerd(Dockerd):
    """A dockerd on the root file system's data root with its storage driver (overlay2), as the
    device's dockerd; its own socket and exec root."""

    def __init__(self, data_root: Path) -> None:
        super().__init__()
        self.data_root.rmdir()
        self.data_root = data_root

    def command(self) -> list[str]:
        args = super().command()
        return [*args[: args.index("--storage-driver") + 1], "overlay2", *args[args.index("vfs") + 1 :]]

    def close(self) -> None:
        data_root, self.data_root = self.data_root, self.root / "data"
        super().close()  # (removes its temp dir only: the root file system stays)
        self.data_root = data_root


def test_docker_store_is_written_by_a_private_dockerd_and_first_boot_loads_nothing(
    build, tmp_path, image_factory
) -> None:
    a = image_factory.single_arch("preload/docker-a", tag="1.0")
    b = image_factory.single_arch("preload/docker-b", tag="1.0")
    pool = tmp_path / "pool"
    pool.mkdir()
    _package(build, "dpre", a, "docker").rename(pool / "dpre_1.0_amd64.deb")
    _package(build, "dpre2", b, "docker").rename(pool / "dpre2_1.0_amd64.deb")
    rootfs = _rootfs(tmp_path, pool)
    assert not list((rootfs / "usr/share/dpre/images").iterdir())

    done = run.preload(rootfs, pool, tmp_path / "work")
    assert not _mounts_under(rootfs)

    assert {(p.engine, p.store, p.driver, p.reference, p.image_id) for p in done} == {
        ("docker", "/var/lib/docker", "overlay2", a.reference, _config(a)),
        ("docker", "/var/lib/docker", "overlay2", b.reference, _config(b)),
    }
    data_root = rootfs / "var/lib/docker"
    assert sorted(p.name for p in data_root.iterdir()) == ["image", "overlay2"]  # no run-time state
    again = _rootfs(tmp_path / "again", pool)
    run.preload(again, pool, tmp_path / "work-again")
    first, second = _tree(data_root), _tree(again / "var/lib/docker")
    assert sorted(k for k in first.keys() | second.keys() if first.get(k) != second.get(k)) == []
    record = rootfs / "var/lib/container-loader/docker/loaded"
    assert record.read_text() == "".join(sorted(f"{_config(i)} {i.reference}\n" for i in (a, b)))

    with _DeviceDockerd(data_root) as daemon:
        listing = daemon("image", "ls", "--no-trunc", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}").stdout
        assert set(listing.split("\n")) - {""} == {
            f"{a.reference} sha256:{_config(a)}",
            f"{b.reference} sha256:{_config(b)}",
        }
        env = _counting_env(
            tmp_path, shlex.join([DOCKER, "-H", daemon.host]), None, rootfs / "var/lib/container-loader"
        )
        result = _run_loader(rootfs, "dpre", env)
        assert result.returncode == 0, result.stderr
        assert "nothing to do: 1 image(s) already present" in result.stderr
        assert [c.split()[0:2] for c in _calls(tmp_path)] == [["image", "ls"], ["image", "inspect"]]
        ran = daemon("run", "--rm", "--network", "none", a.reference, "/bin/hello")
        assert ran.stdout == "hello from the container-lock test image\n", ran.stderr
    assert record.read_text() == "".join(sorted(f"{_config(i)} {i.reference}\n" for i in (a, b)))


def _tree(root: Path) -> dict[str, str]:
    """Every path under `root` → what it is: a file's sha256, a link's target, 'dir'."""
    found = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        if path.is_symlink():
            found[rel] = "-> " + os.readlink(path)
        elif path.is_dir():
            found[rel] = "dir"
        else:
            found[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def test_arm64_image_is_written_on_this_host_and_two_writes_are_byte_identical(
    build, tmp_path, image_factory, monkeypatch, capsys
) -> None:
    """An arm64 image (this host is amd64: nothing of it can run here) into podman's store, twice."""
    image = image_factory.single_arch("preload/arm", tag="1.0", platform="linux/arm64/v8")
    pool = tmp_path / "pool"
    pool.mkdir()
    _package(build, "armpre", image, "podman", arch="arm64").rename(pool / "armpre_1.0_arm64.deb")
    stores = []
    for n in (1, 2):
        rootfs = _rootfs(tmp_path / f"build{n}", pool)
        if n == 1:
            done = [
                asdict(p) for p in run.preload(rootfs, pool, tmp_path / "work1", source_date_epoch=1700000000)
            ]
        else:  # the image build's command: the drop-in, then the write (SOURCE_DATE_EPOCH from the env)
            assert cli.main(["exclude", str(rootfs), str(pool)]) == 0
            assert (rootfs / debs.DROP_IN).read_text().endswith("path-exclude=/usr/share/armpre/images/*\n")
            monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
            capsys.readouterr()
            assert cli.main(["write", str(rootfs), str(pool), str(tmp_path / "work2"), "img"]) == 0
            done = json.loads(capsys.readouterr().out)["preloaded"]
            assert not (rootfs / debs.DROP_IN).exists()
        stores.append(_tree(rootfs / "var/lib/containers/storage"))
        assert [(p["reference"], p["image_id"], p["arch"]) for p in done] == [
            (image.reference, _config(image, "linux/arm64/v8"), "arm64")
        ]
        inspected = json.loads(_podman(rootfs, "image", "inspect", image.reference))[0]
        assert (inspected["Id"], inspected["Architecture"]) == (_config(image, "linux/arm64/v8"), "arm64")
    differ = sorted(k for k in stores[0].keys() | stores[1].keys() if stores[0].get(k) != stores[1].get(k))
    print("\n".join(differ))
    assert differ == []
