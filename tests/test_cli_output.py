"""Output people read in CI: whole references and digests when piped, no escape sequences when
piped or with NO_COLOR, progress only on a terminal, exit codes in --help."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from containerlock.lock.lockfile import Lock, LockEntry

ESCAPE = re.compile(r"\x1b\[")
LONG_REPOSITORY = "team/a-repository-name-long-enough-to-overflow-any-eighty-column-table"


def piped(cwd: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "audit", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=300,
        env={**os.environ, **(env or {})},
    )


def on_terminal(cwd: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    """Run with stdout and stderr on a pseudo-terminal (80 columns); (exit status, all output)."""
    leader, follower = pty.openpty()
    environment = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "80", **(env or {})}
    if "NO_COLOR" not in (env or {}):
        environment.pop("NO_COLOR", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "audit", *args],
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=follower,
        stderr=follower,
        env=environment,
    )
    os.close(follower)
    chunks = []
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 1)
        if ready:
            try:
                data = os.read(leader, 65536)
            except OSError:  # the terminal closed: the command ended
                break
            if not data:
                break
            chunks.append(data)
        elif process.poll() is not None:
            break
    os.close(leader)
    return process.wait(timeout=30), b"".join(chunks).decode(errors="replace")


@pytest.fixture
def long_world(image_factory, tmp_path) -> tuple[Path, object]:
    image = image_factory.single_arch(LONG_REPOSITORY, tag="1.0")
    (tmp_path / "r.bb").write_text(f'SRC_URI = "docker://{image.host}/{image.repository};tag=1.0"\n')
    return tmp_path, image


def test_piped_tables_show_whole_references_and_digests(long_world) -> None:
    cwd, image = long_world
    result = piped(cwd, "update", "r.bb", "-l", "lock.json")
    assert result.returncode == 0, result.stderr
    assert f"{image.host}/{image.repository}:1.0" in result.stdout
    assert image.digest in result.stdout and "…" not in result.stdout
    assert not ESCAPE.search(result.stdout + result.stderr)


def test_terminal_styles_unless_no_color(tmp_path) -> None:
    (tmp_path / "r.bb").write_text('SRC_URI = "docker://reg.example/team/a;tag=latest"\n')
    status, styled = on_terminal(tmp_path, "check", "r.bb", "-p", "strict")
    assert status == 1 and ESCAPE.search(styled), styled  # the check can see styling
    status, plain = on_terminal(tmp_path, "check", "r.bb", "-p", "strict", env={"NO_COLOR": "1"})
    assert status == 1 and "error" in plain and "forbidden-tag" in plain
    assert not ESCAPE.search(plain), repr(plain)


def test_progress_on_a_terminal_only(image_factory, tmp_path) -> None:
    images = [image_factory.single_arch(f"progress/app{n}", tag="1.0") for n in range(3)]
    (tmp_path / "r.bb").write_text(
        "".join(f'SRC_URI += "docker://{i.host}/{i.repository};tag=1.0"\n' for i in images)
    )
    status, output = on_terminal(tmp_path, "update", "r.bb", "-l", "t.json")
    assert status == 0 and "resolving tags" in output, output
    result = piped(tmp_path, "update", "r.bb", "-l", "p.json")
    assert result.returncode == 0 and "resolving tags" not in result.stdout + result.stderr
    status, output = on_terminal(tmp_path, "update", "r.bb", "-l", "j.json", "--json")
    assert status == 0 and "resolving tags" not in output
    assert json.loads(Path(tmp_path / "j.json").read_text())["images"]


@pytest.mark.parametrize("command", ["update", "check", "verify", "sbom", "inventory"])
def test_help_gives_the_exit_statuses(tmp_path, command) -> None:
    result = piped(tmp_path, command, "--help")
    text = " ".join(result.stdout.split())
    assert result.returncode == 0
    for code in ("0 success", "1 the check failed", "2 bad input", "3 a registry", "130 interrupted"):
        assert code in text, text


def test_verify_detail_is_never_cut(tmp_path) -> None:
    key = "reg.example/" + LONG_REPOSITORY + ":1.0"
    digest = "sha256:" + "ab" * 32
    (tmp_path / "lock.json").write_bytes(Lock({key: LockEntry(digest)}).dumps())
    result = piped(tmp_path, "verify", "-l", "lock.json")
    assert result.returncode == 0, result.stderr
    assert key in result.stdout and digest in result.stdout
    assert "no [[signers]] entry of the policy applies to this image" in result.stdout


def test_sbom_progress_on_a_terminal_only(tmp_path) -> None:
    from tests.test_sbom_scale import write_fixture

    deploy = write_fixture(tmp_path)
    status, output = on_terminal(tmp_path, "sbom", "--deploy-dir", str(deploy), "-o", "t.cdx.json")
    assert status == 0 and "SBOM of the build manifests" in output, output
    result = piped(tmp_path, "sbom", "--deploy-dir", str(deploy), "-o", "p.cdx.json")
    assert result.returncode == 0 and "SBOM of the build manifests" not in result.stderr
    assert (tmp_path / "t.cdx.json").read_bytes() == (tmp_path / "p.cdx.json").read_bytes()


def test_inventory_progress_on_a_terminal_only(image_factory, tmp_path) -> None:
    image = image_factory.single_arch("progress/inventory", tag="1.0")
    ref = f"{image.host}/{image.repository}:1.0"
    status, output = on_terminal(tmp_path, "inventory", ref)
    assert status == 0 and f"pulling and reading {ref}" in output, output
    result = piped(tmp_path, "inventory", ref)
    assert result.returncode == 0 and "pulling and reading" not in result.stdout + result.stderr
    status, output = on_terminal(tmp_path, "inventory", ref, "--json")
    assert status == 0 and "pulling and reading" not in output
