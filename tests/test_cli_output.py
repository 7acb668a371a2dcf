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


@pytest.fixture
def vulnerable(tmp_path) -> Path:
    """A build manifest of one Debian image with a vulnerable openssl, and an OSV export
    (`osv.zip`) saying so, in tmp_path; the manifest's path."""
    from tests.harness.osv import CVSS_HIGH, ecosystem_range, image, record, write_manifest, write_zip

    debian = {"ID": "debian", "VERSION_ID": "12"}
    package = {"type": "deb", "name": "libssl3", "version": "3.0.11-1", "arch": "amd64", "source": "openssl"}
    fixed = ecosystem_range(("introduced", "0"), ("fixed", "3.0.15-1"))
    write_zip(
        tmp_path / "osv.zip", [record("CVE-2026-9001", "Debian:12", "openssl", [fixed], cvss=CVSS_HIGH)]
    )
    return write_manifest(tmp_path / "loader.json", [image("app", debian, [package])])


@pytest.fixture
def progress_world(image_factory, tmp_path, vulnerable) -> dict[str, object]:
    """Inputs for every command that shows progress: a recipe of two images (one of which moved
    since the lock was written), build manifests, an OSV export."""
    from tests.test_sbom_scale import write_fixture

    old = image_factory.single_arch("nocolor/app", tag="old")
    moved = image_factory.retag(old, "nocolor/app", "stable")
    other = image_factory.single_arch("nocolor/other", tag="1.0")
    lock = Lock({moved.reference: LockEntry(old.digest, {"linux/amd64": old.digest})})
    (tmp_path / "moved.json").write_bytes(lock.dumps())
    image_factory.retag(other, "nocolor/app", "stable")
    (tmp_path / "r.bb").write_text(
        f'SRC_URI = "docker://{moved.host}/nocolor/app;tag=stable docker://{other.host}/nocolor/other;tag=1.0"\n'
    )
    deploy = write_fixture(tmp_path / "sbom")
    return {"cwd": tmp_path, "deploy": deploy, "manifest": vulnerable, "ref": other.reference}


def test_no_color_on_a_terminal_prints_no_escape_sequence(progress_world) -> None:
    """NO_COLOR: not one ESC byte from any command that shows progress (no cursor control either);
    the progress is a plain line on standard error instead."""
    w = progress_world
    cwd = w["cwd"]
    runs = [
        (("update", "r.bb", "-l", "new.json"), "resolving tags"),
        (("update", "r.bb", "-l", "moved.json", "--diff", "--dl-dir", "."), "reading the re-pinned images"),
        (("sbom", "--deploy-dir", str(w["deploy"]), "-o", "out.cdx.json"), "SBOM of the build manifests"),
        (("inventory", str(w["ref"])), "pulling and reading"),
        (("vulndb", "import", "osv.zip", "--db", "osv.db"), "importing OSV records"),
        (("audit", str(w["manifest"]), "--db", "osv.db"), "auditing packages"),
    ]
    for args, shown in runs:
        status, output = on_terminal(cwd, *args, env={"NO_COLOR": "1"})
        assert status == 0, (args, output)
        assert shown in output, (args, output)
        assert "\x1b" not in output, (args, repr(output))


def _repin_line(stdout: str, reference: str) -> str:
    (line,) = [line for line in stdout.splitlines() if line.startswith(reference) and "→" in line]
    return line


def test_piped_diffs_show_whole_digests(progress_world, tmp_path) -> None:
    """`diff` and `update --diff` piped: each re-pinned image's old → new digests whole (64 hex)."""
    old, new = "sha256:" + "a1" * 32, "sha256:" + "b2" * 32
    ref = "reg.example/" + LONG_REPOSITORY
    (tmp_path / "old.json").write_bytes(Lock({f"{ref}:1.0": LockEntry(old)}).dumps())
    (tmp_path / "new.json").write_bytes(Lock({f"{ref}:1.0": LockEntry(new)}).dumps())
    result = piped(tmp_path, "diff", "old.json", "new.json")
    assert result.returncode == 0, result.stderr
    assert f"{old} → {new}" in _repin_line(result.stdout, ref), result.stdout
    cwd = progress_world["cwd"]
    before = json.loads((cwd / "moved.json").read_text())["images"]
    ((key, entry),) = before.items()
    result = piped(cwd, "update", "r.bb", "-l", "moved.json", "--diff", "--dl-dir", ".")
    assert result.returncode == 0, result.stderr
    after = json.loads((cwd / "moved.json").read_text())["images"][key]["digest"]
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", after) and after != entry["digest"]
    assert f"{entry['digest']} → {after}" in _repin_line(result.stdout, key.rsplit(":", 1)[0]), result.stdout


def _closed_port() -> int:
    """A port on 127.0.0.1 with nothing listening (bound, then released)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("check", [False, True])
def test_failed_update_json_says_why_on_stderr(tmp_path, check) -> None:
    """A registry that is down: exit 3, the JSON names the error, and so does standard error."""
    registry = f"127.0.0.1:{_closed_port()}"
    (tmp_path / "r.bb").write_text(f'SRC_URI = "docker://{registry}/team/app;tag=1.0"\n')
    result = piped(tmp_path, "update", "r.bb", "-l", "lock.json", "--json", *(["--check"] if check else []))
    assert result.returncode == 3, result.stderr
    (change,) = json.loads(result.stdout)["changes"]
    assert change["status"] == "error" and "connection refused" in change["error"]
    assert change["error"] in result.stderr, result.stderr
    verdict = "could not be checked" if check else "not written: no reference could be resolved"
    assert f"lock.json: {verdict}" in result.stderr, result.stderr
    assert not (tmp_path / "lock.json").exists() and not (tmp_path / "lock.json.lock").exists()


def test_audit_report_on_stdout_status_on_stderr(tmp_path, vulnerable) -> None:
    """The report (table and its summary line naming the snapshot) on standard output, the same
    bytes every run; the snapshot's age and the gate's verdict on standard error."""
    assert piped(tmp_path, "vulndb", "import", "osv.zip", "--db", "osv.db").returncode == 0
    runs = [
        piped(tmp_path, "audit", str(vulnerable), "--db", "osv.db", "--fail-on", "high") for _ in range(2)
    ]
    result = runs[0]
    assert result.returncode == 1, result.stderr
    assert runs[1].stdout == result.stdout
    summary = re.compile(
        r"^1 findings in 1 images \(0 triaged not affected\); snapshot \S+, 1 records, ", re.M
    )
    assert summary.search(result.stdout) and not summary.search(result.stderr), result
    assert "CVE-2026-9001" in result.stdout
    for status in ("vulnerability snapshot ", "days old", "failed: 1 findings at or above high"):
        assert status in result.stderr and status not in result.stdout, (status, result)


def _commands(command, path: tuple[str, ...] = ()):
    """(path, command) of the tree's every command with options of its own (the root's --version)."""
    import click

    if any(isinstance(p, click.Option) for p in command.params):
        yield path, command
    for name, sub in getattr(command, "commands", {}).items():
        yield from _commands(sub, (*path, name))


def _synopsis() -> dict[tuple[str, ...], str]:
    """docs/cli.md's synopsis (its first code block): command path → its lines, joined."""
    from audit.cli import cli

    text = (Path(__file__).parent.parent / "docs" / "cli.md").read_text()
    block = text.split("```\n", 2)[1]
    entries: dict[tuple[str, ...], str] = {}
    path: tuple[str, ...] = ()
    for line in block.splitlines():
        if line.startswith("container-lock"):
            words, group, path = line.split()[1:], cli, ()
            while words and words[0] in getattr(group, "commands", {}):
                group = group.commands[words[0]]
                path, words = (*path, words.pop(0)), words
        entries[path] = entries.get(path, "") + " " + line
    return entries


def test_the_synopsis_names_every_option() -> None:
    """Every option of every command (long name) in its docs/cli.md synopsis, every option there
    an option of the command, every short form explained."""
    import click

    from audit.cli import cli

    doc = " ".join((Path(__file__).parent.parent / "docs" / "cli.md").read_text().split())
    entries = _synopsis()
    option = re.compile(r"(?<![\w-])--?[A-Za-z][\w-]*")
    checked = set()
    for path, command in _commands(cli):
        name = " ".join(("container-lock", *path))
        assert path in entries, f"docs/cli.md: no synopsis line for `{name}`"
        options = [p for p in command.params if isinstance(p, click.Option)]  # and -h/--help
        given = set(option.findall(entries[path]))
        for param in options:
            long = [o for o in param.opts if o.startswith("--")]
            for spelling in long:
                assert spelling in given, f"docs/cli.md: `{name}` synopsis lacks {spelling}"
            for short in (o for o in param.opts if not o.startswith("--")):
                explained = f"`{short}` for `{long[0]}`"
                assert explained in doc, f"docs/cli.md: short form {short} not explained ({explained})"
        names = {"-h", "--help", *(o for p in options for o in p.opts)}
        assert given <= names, f"docs/cli.md: `{name}` synopsis names {given - names}, not its options"
        checked.add(path)
    assert {("update",), ("verify",), ("sbom",), ("vulndb", "import"), ("vulndb", "show"), ()} <= checked


def test_the_writers_flock_file_is_empty_and_safe_to_delete(long_world) -> None:
    """`<lockfile>.lock` (docs/lock.md): made by a writer only, empty, made again after deletion."""
    cwd, _image = long_world
    assert piped(cwd, "update", "r.bb", "-l", "lock.json", "--check").returncode == 1
    assert not (cwd / "lock.json.lock").exists()  # --check writes nothing, not even this
    assert piped(cwd, "update", "r.bb", "-l", "lock.json").returncode == 0
    written = (cwd / "lock.json").read_bytes()
    assert (cwd / "lock.json.lock").read_bytes() == b""
    (cwd / "lock.json.lock").unlink()
    result = piped(cwd, "update", "r.bb", "-l", "lock.json")
    assert result.returncode == 0, result.stderr
    assert (cwd / "lock.json").read_bytes() == written and (cwd / "lock.json.lock").read_bytes() == b""
    doc = " ".join((Path(__file__).parent.parent / "docs" / "lock.md").read_text().split())
    assert "### `<lockfile>.lock`" in doc and "safe to delete when no build" in doc and ".gitignore" in doc
