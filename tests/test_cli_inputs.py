"""Every command's bad input: the documented exit status, a message naming the input, no traceback,
nothing created or changed; Ctrl-C; registries that fail."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from containerlock.lock import lockfile
from containerlock.lock.lockfile import Lock, LockEntry
from containerlock.payload.archive import MANIFEST_VERSION

D1 = "sha256:" + "1" * 64
UNREACHABLE = "127.0.0.1:9"  # discard port: nothing listens, connections are refused


def run(cwd: Path, *args: str, env: dict[str, str] | None = None, timeout: int = 300):
    return subprocess.run(
        [sys.executable, "-m", "audit", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A layer with one unpinned recipe, a directory, garbage files and a build manifest of nothing."""
    (tmp_path / "layer").mkdir()
    (tmp_path / "layer" / "r.bb").write_text(f'SRC_URI = "docker://{UNREACHABLE}/team/a;tag=1"\n')
    (tmp_path / "adir").mkdir()
    (tmp_path / "garbage.json").write_text("\x00\x01 not json {")
    (tmp_path / "garbage.toml").write_text("version = = 1\n")
    (tmp_path / "list.json").write_text("[1, 2]\n")
    package = {"name": "demo-images", "version": "1.0", "arch": "amd64"}
    manifest = {"version": MANIFEST_VERSION, "package": package, "engine": "podman", "images": []}
    (tmp_path / "empty-manifest.json").write_text(json.dumps(manifest))
    return tmp_path


CASES = [
    # (args, exit status, what the message must say)
    (["update", "missing-layer"], 2, "missing-layer: no such file or directory"),
    (["update", "layer", "-l", "adir"], 2, "'adir' is a directory"),
    (["update", "layer", "-l", "garbage.json"], 2, "garbage.json:1:"),
    (["update", "layer", "-l", "nodir/x.json"], 2, "directory nodir does not exist"),
    (["update", "layer", "--image", "NOT::A//REF"], 2, "NOT::A"),
    (["update", "layer", "--timeout", "0"], 2, "'--timeout'"),
    (["update", "layer", "-j", "0"], 2, "'--jobs'"),
    (["update", "layer", "-j", "-3"], 2, "'--jobs'"),
    (["check", "missing-layer"], 2, "missing-layer: no such file or directory"),
    (["check", "layer", "-l", "adir"], 2, "'adir' is a directory"),
    (["check", "layer", "-l", "list.json"], 2, "list.json: the top level must be a JSON object"),
    (["check", "layer", "-p", "adir"], 2, "adir: is a directory"),
    (["check", "layer", "-p", "garbage.toml"], 2, "garbage.toml: not valid TOML"),
    (["check", "layer", "-p", "missing.toml"], 2, "missing.toml: no such policy file"),
    (["verify", "layer", "-l", "adir"], 2, "'adir' is a directory"),
    (["verify", "layer", "-l", "missing.json"], 2, "missing.json: no such lockfile"),
    (["verify", "layer", "-p", "adir"], 2, "adir: is a directory"),
    (["verify", "layer", "--trusted-root", "missing.json"], 2, "'missing.json' does not exist"),
    (["sbom", "missing.json"], 2, "missing.json"),
    (["sbom", "garbage.json"], 2, "garbage.json"),
    (["sbom", "--deploy-dir", "missing-dir"], 2, "missing-dir"),
    (["sbom", "list.json"], 2, "list.json: not a container-lock build manifest (the top level is not"),
    (["sbom", "empty-manifest.json", "-o", "adir"], 2, "'adir' is a directory"),
    (["sbom", "empty-manifest.json", "-o", "nodir/out.json"], 2, "directory nodir does not exist"),
    (["sbom", "list.json", "--source-date-epoch", "-5"], 2, "'--source-date-epoch'"),
    (["sbom", "empty-manifest.json", "--merge", "garbage.json"], 2, "garbage.json: not a CycloneDX"),
    (["sbom", "empty-manifest.json", "--merge", "missing.json"], 2, "'missing.json' does not exist"),
    (["inventory", "./missing.json"], 2, "./missing.json: no such build manifest file"),
    (["inventory", "missing.json"], 2, "missing.json: no such build manifest file"),
    (["inventory", "NOT::A//REF"], 2, "NOT::A//REF: not an image reference"),
    (["inventory", "adir"], 2, "adir: is a directory"),
    (["inventory", "garbage.json"], 2, "garbage.json"),
    (["inventory", f"{UNREACHABLE}/team/a:1", "--timeout", "5"], 3, f"registry {UNREACHABLE}"),
    (["update", "layer", "--timeout", "5"], 3, f"registry {UNREACHABLE}"),
]


@pytest.mark.parametrize(("args", "status", "complaint"), CASES, ids=[" ".join(c[0]) for c in CASES])
def test_bad_input_has_its_exit_status_and_names_the_input(workdir, args, status, complaint) -> None:
    before = sorted(p.relative_to(workdir) for p in workdir.rglob("*"))
    result = run(workdir, *args)
    assert result.returncode == status, result.stdout + result.stderr
    assert complaint in result.stderr, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    after = sorted(p.relative_to(workdir) for p in workdir.rglob("*"))
    assert after == before  # no lockfile, directory or output was created


def test_a_failing_update_leaves_the_lock_byte_identical(workdir) -> None:
    lock = workdir / "lock.json"
    lock.write_bytes(Lock({f"{UNREACHABLE}/team/a:1": LockEntry(D1, {"linux/amd64": D1})}).dumps())
    os.utime(lock, (1_000_000, 1_000_000))
    before = lock.read_bytes()
    for args in (["layer"], [], ["layer", "--check"]):
        result = run(workdir, "update", *args, "-l", "lock.json", "--timeout", "5")
        assert result.returncode == 3, result.stdout + result.stderr
        assert lock.read_bytes() == before and lock.stat().st_mtime == 1_000_000
    assert "could not be checked: 1 of 1 references failed" in result.stdout
    assert "up to date" not in result.stdout


def test_update_that_resolves_nothing_writes_no_lock(workdir) -> None:
    result = run(workdir, "update", "layer", "-l", "new.json", "--timeout", "5")
    assert result.returncode == 3 and "not written: no reference could be resolved" in result.stdout
    assert not (workdir / "new.json").exists()
    (workdir / "layer" / "r.bb").write_text('SRC_URI = "docker://${REG}/team/a;tag=1"\n')
    result = run(workdir, "update", "layer", "-l", "new.json")
    assert result.returncode == 2 and "no reference could be resolved statically" in result.stderr
    assert "${REG}" in result.stderr and not (workdir / "new.json").exists()


def test_ctrl_c_stops_at_once_with_130(workdir) -> None:
    """A registry that accepts connections and never answers: SIGINT ends `update` at once."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(64)
        host = f"127.0.0.1:{silent.getsockname()[1]}"
        recipes = "".join(f'SRC_URI += "docker://{host}/team/app{n};tag=1"\n' for n in range(20))
        (workdir / "layer" / "r.bb").write_text(recipes)
        process = subprocess.Popen(
            [sys.executable, "-m", "audit", "update", "layer", "-l", "lock.json", "--timeout", "60"],
            cwd=workdir,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        time.sleep(3)  # the lookups are waiting for the silent registry now
        assert process.poll() is None
        started = time.monotonic()
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=30)
        stopped_after = time.monotonic() - started
    assert process.returncode == 130, stderr
    assert stopped_after < 5, stopped_after  # not the 60 s the lookups would wait
    assert "interrupted" in stderr and "Traceback" not in stderr
    assert not (workdir / "lock.json").exists()


def test_plain_http_registry_not_marked_insecure_gets_a_hint(registry, image_factory, tmp_path) -> None:
    image = image_factory.single_arch("hint/plain", tag="1.0")
    home = tmp_path / "home"  # no registries.conf: the registry is taken for HTTPS
    home.mkdir()
    (tmp_path / "r.bb").write_text(f'SRC_URI = "docker://{image.host}/{image.repository};tag=1.0"\n')
    result = run(tmp_path, "update", "r.bb", "-l", "lock.json", "--timeout", "10", env={"HOME": str(home)})
    assert result.returncode == 3
    assert "speaks plain HTTP" in result.stderr and "insecure = true" in result.stderr, result.stderr
    assert "WRONG_VERSION_NUMBER" not in result.stderr


def test_inventory_refuses_a_platform_the_image_does_not_have(image_factory, tmp_path) -> None:
    image = image_factory.single_arch("inventory/amd64-only", tag="1.0")
    ref = f"{image.host}/{image.repository}:1.0"
    result = run(tmp_path, "inventory", ref, "--platform", "linux/arm64", "--json")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "not linux/arm64" in result.stderr and result.stdout == ""
    assert run(tmp_path, "inventory", ref, "--platform", "linux/amd64", "--json").returncode == 0


def test_check_json_names_the_lock_it_used(workdir) -> None:
    result = run(workdir, "check", "layer", "-l", "none.json", "--json")
    assert json.loads(result.stdout)["lockfile"] is None and result.returncode == 0
    (workdir / "lock.json").write_bytes(lockfile.Lock().dumps())
    assert json.loads(run(workdir, "check", "layer", "-l", "lock.json", "--json").stdout)["lockfile"]
