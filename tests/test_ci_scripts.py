"""What `.ci/demo` and `.ci/run` (CI: `.ci/test`) do to a machine, observed by running them.

The scripts run from a copy of `.ci/` with a PATH that holds only recording stand-ins: apt-get,
sudo, useradd, tee, locale-gen, python3 (which makes a stand-in .venv), … record their
arguments and change nothing; `bash` records which script it runs, then runs it. A command the
scripts call that is not listed here is "not found", so the scripts fail rather than touch the
host. The demo must install only what it uses and must not create the build user, its sudoers
entry or the Isar/OE host tools; the test command still must (the same observation of it shows
that these checks see them).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.harness.bitbake import REPO

# What tests/demo.py uses: the loopback registry, skopeo, podman with runc, zstd (podman-loader's
# payload), and python3-venv for .venv.
DEMO_PACKAGES = {"skopeo", "docker-registry", "zstd", "podman", "runc", "busybox-static", "python3-venv"}
# Host tools of the real-build tiers (a sample of .ci/setup-isar's and .ci/setup-oe's lists).
BUILD_TIER_PACKAGES = {
    "mmdebstrap",
    "sbuild",
    "schroot",
    "qemu-system-x86",
    "qemu-user-static",
    "gawk",
    "gcc",
    "chrpath",
}
# Commands that change users, groups, sudoers or the system locale.
ACCOUNT_COMMANDS = {"useradd", "usermod", "groupadd", "adduser", "addgroup", "visudo", "locale-gen"}
# Real tools the scripts may run (they read or write only inside the copied checkout).
REAL_TOOLS = ("dirname", "grep", "touch", "cat")
# Recording stand-ins, with what each prints or returns where the scripts look at it.
STAND_INS = {
    "sudo": "",
    "apt-get": "",
    "dpkg-query": "exit 1",  # nothing is installed
    "pgrep": "exit 1",  # no docker-registry service running
    "locale": "",  # no locales generated
    "locale-gen": "",
    "sed": "",
    "tee": "",
    "chmod": "",
    "useradd": "",
    "usermod": "",
    "groupadd": "",
    "adduser": "",
    "visudo": "",
    "mount": "",  # binfmt_misc, where it is not mounted yet
    "sh": "",  # `sh -c "cat qemu-*.conf > …/binfmt_misc/register"`
    # `id -u` → the uid the test chooses; `id -u USER` → no such user.
    "id": '[ "$#" -eq 1 ] && [ "$1" = -u ] && { echo "$CL_FAKE_UID"; exit 0; }; exit 1',
    # `python3 -m venv .venv` → a .venv of stand-ins (`python -c "import …"` fails: not installed).
    "python3": (
        '[ "$1 $2" = "-m venv" ] || exit 1\n'
        '/bin/mkdir -p "$3/bin"\n'
        'for tool in python pip ruff oelint-adv; do /bin/cp "$CL_STAND_IN" "$3/bin/$tool"; done\n'
    ),
    "python": '[ "$1" = -c ] && exit 1; exit 0',
}
_RECORD = """#!/bin/bash
# Recording stand-in: appends its name and arguments to $CL_CALLS.
printf '%s\\037' "$0" "$@" >>"$CL_CALLS"
printf '\\036' >>"$CL_CALLS"
while IFS= read -r _; do :; done  # drain stdin (`echo … | sudo tee FILE`)
case "${0##*/}" in
"""

# `bash` records the script it runs, then runs it with the real bash.
_BASH = """#!/bin/bash
printf '%s\\037' "$0" "$@" >>"$CL_CALLS"
printf '\\036' >>"$CL_CALLS"
exec /bin/bash "$@"
"""


@dataclass
class Run:
    """One script run: exit status, output, and every command the stand-ins saw (argv lists)."""

    returncode: int
    output: str
    calls: list[list[str]]

    def commands(self) -> list[list[str]]:
        """The calls with `sudo` and `VAR=value` prefixes taken off, names without directories."""
        result = []
        for argv in self.calls:
            argv = [os.path.basename(argv[0]), *argv[1:]]
            while argv and (argv[0] == "sudo" or "=" in argv[0]):
                argv = argv[1:]
            if argv:
                result.append([os.path.basename(argv[0]), *argv[1:]])
        return result

    def installed(self) -> set[str]:
        """Packages passed to `apt-get install`."""
        return {
            arg
            for argv in self.commands()
            if argv[:1] == ["apt-get"] and "install" in argv
            for arg in argv[argv.index("install") + 1 :]
            if not arg.startswith("-")
        }

    def scripts(self) -> set[str]:
        """The .ci scripts run through `bash`."""
        return {argv[1] for argv in self.commands() if argv[0] == "bash" and len(argv) > 1}

    def ran(self, name: str) -> list[list[str]]:
        return [argv for argv in self.commands() if argv[0] == name]


def _stand_in_body(extra: dict[str, str]) -> str:
    cases = "".join(f"{name}) {body}\n;;\n" for name, body in {**STAND_INS, **extra}.items() if body)
    return _RECORD + cases + "esac\nexit 0\n"


def run_ci(tmp_path: Path, script: str, uid: int) -> Run:
    """Run `bash .ci/<script>` from a copy of the checkout's .ci/ with only stand-ins on PATH."""
    checkout = tmp_path / "checkout"
    shutil.copytree(REPO / ".ci", checkout / ".ci")
    (checkout / "pyproject.toml").write_text("")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    stand_in = tmp_path / "stand-in"
    stand_in.write_text(_stand_in_body({}))
    stand_in.chmod(0o755)
    for name in STAND_INS:
        if name != "python":  # only inside the stand-in .venv
            shutil.copy(stand_in, bin_dir / name)
    for tool in REAL_TOOLS:
        (bin_dir / tool).symlink_to(shutil.which(tool) or f"/usr/bin/{tool}")
    (bin_dir / "bash").write_text(_BASH)
    (bin_dir / "bash").chmod(0o755)
    calls = tmp_path / "calls"
    calls.write_text("")
    env = {
        "PATH": str(bin_dir),
        "HOME": str(tmp_path),
        "CL_CALLS": str(calls),
        "CL_FAKE_UID": str(uid),
        "CL_STAND_IN": str(stand_in),
    }
    result = subprocess.run(
        [str(bin_dir / "bash"), f".ci/{script}"],
        cwd=checkout,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    records = [r.split("\x1f")[:-1] for r in calls.read_text().split("\x1e") if r]
    return Run(result.returncode, result.stdout + result.stderr, records)


@pytest.mark.parametrize("uid", [0, 1000], ids=["root", "user"])
def test_demo_installs_only_what_the_demo_uses(tmp_path: Path, uid: int) -> None:
    run = run_ci(tmp_path, "demo", uid)
    assert run.returncode == 0, run.output
    assert run.installed() == DEMO_PACKAGES
    assert not {".ci/setup", ".ci/setup-isar", ".ci/setup-oe"} & run.scripts()
    assert [argv[0] for argv in run.commands() if argv[0] in ACCOUNT_COMMANDS] == []
    assert [argv for argv in run.ran("tee") if any("/etc/" in arg for arg in argv)] == []
    assert ["pip", "install", "-q", "-e", ".[test]"] in run.commands()
    assert run.commands()[-1] == ["python", "-m", "tests.demo"]  # and then the demo itself


@pytest.mark.parametrize("uid", [0, 1000], ids=["root", "user"])
def test_ci_still_installs_every_tier(tmp_path: Path, uid: int) -> None:
    """`.ci/run` (CI) → `.ci/test` → `.ci/setup`: the demo's tools, dockerd, the real-build tiers."""
    run = run_ci(tmp_path, "run", uid)
    assert run.returncode == 0, run.output
    assert {".ci/setup", ".ci/setup-isar", ".ci/setup-oe"} <= run.scripts()
    assert DEMO_PACKAGES | {"docker.io", "pigz"} | BUILD_TIER_PACKAGES <= run.installed()
    assert ["useradd", "--create-home", "--shell", "/bin/bash", "clbuild"] in run.commands()
    assert any(arg == "/etc/sudoers.d/clbuild" for argv in run.ran("tee") for arg in argv)
    assert ["pip", "install", "-q", "-e", ".[test]"] in run.commands()
    assert [argv[0] for argv in run.commands()][-4:] == ["ruff", "ruff", "oelint-adv", "python"]
    assert run.commands()[-1] == ["python", "-m", "pytest"]
