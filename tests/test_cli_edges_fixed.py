"""Fail closed at every edge (issue 29): ordinary conditions that were internal errors (exit 4), gates
that passed having seen nothing, a file an import replaced, messages that sent the user the wrong way.

Each case runs the CLI as a subprocess and checks the exit status, that the message names the path or
option, that there is no traceback and that the input files are byte-identical afterwards. Files
that cannot be read need a user that permissions apply to: as root, the CLI runs as the build user
`clbuild` (the system python3 with the venv's packages: the venv's interpreter lives under /root).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from containerlock.lock.lockfile import Lock, LockEntry
from containerlock.payload.archive import MANIFEST_VERSION
from tests.harness.osv import ecosystem_range, image, record, write_manifest, write_zip

D1 = "sha256:" + "1" * 64
UNREACHABLE = "127.0.0.1:9"
BUILD_USER = os.environ.get("CONTAINER_LOCK_BUILD_USER", "clbuild")
SITE = Path(sys.prefix, "lib", f"python{sys.version_info.major}.{sys.version_info.minor}", "site-packages")
BOOT = (
    f"import site, sys; site.addsitedir({str(SITE)!r}); sys.argv[0] = 'container-lock'; "
    "from audit.cli import main; main()"
)
DEB12 = {"ID": "debian", "VERSION_ID": "12", "PRETTY_NAME": "Debian GNU/Linux 12 (bookworm)"}
PACKAGES = [{"type": "deb", "name": "tar", "version": "1.34+dfsg-1.2+b1", "arch": "amd64", "source": "tar"}]


def run(cwd: Path, *args: object, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "audit", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=300,
        env={**os.environ, **(env or {})},
    )


def run_unprivileged(cwd: Path, *args: object) -> subprocess.CompletedProcess[str]:
    """The CLI as a user that file permissions apply to (the build user when this is root)."""
    if os.geteuid() != 0:
        return run(cwd, *args)
    python = "/usr/bin/python3"
    version = subprocess.run([python, "-c", "import sys; print(sys.version_info[:2])"], capture_output=True)
    assert version.stdout.decode().strip() == str(sys.version_info[:2]), (
        "system python3 differs from the venv's"
    )
    return subprocess.run(
        ["runuser", "-u", BUILD_USER, "--", python, "-c", BOOT, *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=300,
    )


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every path under `root` and the bytes of its readable files (None: a directory or unreadable)."""
    found: dict[str, bytes | None] = {}
    for path in sorted(root.rglob("*")):
        try:
            found[str(path.relative_to(root))] = path.read_bytes() if path.is_file() else None
        except OSError:
            found[str(path.relative_to(root))] = None
    return found


def assert_bad_input(result: subprocess.CompletedProcess[str], *named: str) -> None:
    """Exit 2, no traceback, and the message names each of `named`."""
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert "internal error" not in result.stderr
    for text in named:
        assert text in result.stderr, result.stderr


@pytest.fixture
def world(tmp_path: Path) -> Path:
    """Recipes, a build manifest of nothing and one of an image with packages, an OSV index, foreign
    documents (a lockfile, an SPDX document, `{}`, a JSON array) and an SBOM without images."""
    (tmp_path / "layer").mkdir()
    (tmp_path / "layer" / "r.bb").write_text(f'SRC_URI = "docker://{UNREACHABLE}/team/a;tag=1"\n')
    (tmp_path / "pinned").mkdir()
    (tmp_path / "pinned" / "p.bb").write_text(
        f'SRC_URI = "docker://{UNREACHABLE}/team/a;tag=1;digest={D1}"\n'
    )
    package = {"name": "demo-images", "version": "1.0", "arch": "amd64"}
    empty = {"version": MANIFEST_VERSION, "package": package, "engine": "podman", "images": []}
    (tmp_path / "empty-manifest.json").write_text(json.dumps(empty))
    write_manifest(tmp_path / "loader.json", [image("app", DEB12, PACKAGES)])
    export = write_zip(
        tmp_path / "all.zip",
        [record("DSA-1-1", "Debian:12", "tar", [ecosystem_range(("introduced", "0"), ("fixed", "1.35-1"))])],
    )
    assert run(tmp_path, "vulndb", "import", export, "--db", "osv.db").returncode == 0
    (tmp_path / "lock.json").write_bytes(Lock({f"{UNREACHABLE}/team/a:1": LockEntry(D1)}).dumps())
    (tmp_path / "spdx.json").write_text('{"spdxVersion": "SPDX-2.3", "SPDXID": "SPDXRef-DOCUMENT"}\n')
    (tmp_path / "empty.json").write_text("{}\n")
    (tmp_path / "array.json").write_text("[1, 2]\n")
    sbom = run(tmp_path, "sbom", "empty-manifest.json", "-o", "no-images.cdx.json")
    assert sbom.returncode == 0, sbom.stderr
    return tmp_path


@pytest.fixture
def shared(world: Path) -> Iterator[Path]:
    """`world` copied where the build user can reach it (pytest's own directory is root's only)."""
    root = Path(tempfile.mkdtemp(prefix="cl-edges-", dir="/tmp"))
    try:
        os.chmod(root, 0o755)
        shutil.copytree(world, root, dirs_exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(root, BUILD_USER)
            for path in root.rglob("*"):
                shutil.chown(path, BUILD_USER)
        yield root
    finally:
        for path in root.rglob("*"):  # chmod 000 directories back, so they can be removed
            if path.is_dir():
                os.chmod(path, 0o755)
        shutil.rmtree(root)


def hide(path: Path, mode: int = 0) -> None:
    """Make `path` unreadable (mode 000) or read-only (0o555) to the build user: root owns it."""
    if os.geteuid() == 0:
        shutil.chown(path, "root")
    os.chmod(path, mode)


# 1. Internal errors on ordinary conditions: exit 2 naming the path -----------------------------

UNWRITABLE = [
    (["sbom", "empty-manifest.json", "-o", "/proc/x.json"], "/proc/x.json"),
    (["audit", "loader.json", "--db", "osv.db", "-o", "/proc/x.json"], "/proc/x.json"),
    (["vulndb", "import", "all.zip", "--db", "/proc/v.db"], "/proc/v.db"),
]


@pytest.mark.parametrize(("args", "path"), UNWRITABLE, ids=[" ".join(a) for a, _ in UNWRITABLE])
def test_an_output_that_cannot_be_created_is_bad_input_naming_it(world, args, path) -> None:
    before = snapshot(world)
    result = run(world, *args)
    assert_bad_input(result, f"{path}: cannot write")
    assert "/proc/." not in result.stderr  # not the temporary file beside it
    assert snapshot(world) == before


def test_update_into_a_directory_that_cannot_hold_files_writes_nothing(image_factory, tmp_path) -> None:
    pushed = image_factory.single_arch("edges/app", tag="1.0")
    (tmp_path / "r.bb").write_text(f'SRC_URI = "docker://{pushed.host}/{pushed.repository};tag=1.0"\n')
    result = run(tmp_path, "update", "r.bb", "-l", "/proc/lock.json", "--timeout", "30")
    assert_bad_input(result, "/proc/lock.json: cannot write the lockfile")
    # --image in the form `inventory` takes (docker://host/path:tag) is accepted
    ref = f"docker://{pushed.host}/{pushed.repository}:1.0"
    result = run(tmp_path, "update", "r.bb", "-l", "lock.json", "--image", ref, "--timeout", "30")
    assert result.returncode == 0, result.stderr
    assert (
        f"{pushed.host}/{pushed.repository}:1.0" in json.loads((tmp_path / "lock.json").read_text())["images"]
    )


def test_a_read_only_directory_is_bad_input_naming_the_path_given(shared) -> None:
    (shared / "ro-dir").mkdir()
    hide(shared / "ro-dir", 0o555)
    before = snapshot(shared)
    for args, path, what in (
        (["sbom", "empty-manifest.json", "-o", "ro-dir/x.json"], "ro-dir/x.json", "SBOM"),
        (["vulndb", "import", "all.zip", "--db", "ro-dir/v.db"], "ro-dir/v.db", "vulnerability index"),
        (["audit", "loader.json", "--db", "osv.db", "-o", "ro-dir/x.json"], "ro-dir/x.json", "SBOM"),
    ):
        result = run_unprivileged(shared, *args)
        assert_bad_input(result, f"{path}: cannot write the {what} (Permission denied")
        assert snapshot(shared) == before


def test_unreadable_recipes_and_manifests_are_bad_input_naming_them(shared) -> None:
    (shared / "layer" / "sub").mkdir()
    (shared / "layer" / "sub" / "s.bb").write_text(f'SRC_URI = "docker://{UNREACHABLE}/team/b;tag=1"\n')
    hide(shared / "layer" / "sub")
    (shared / "layer2").mkdir()
    (shared / "layer2" / "s.bb").write_text(f'SRC_URI = "docker://{UNREACHABLE}/team/b;tag=1"\n')
    hide(shared / "layer2" / "s.bb")
    deploy = shared / "deploy" / "container-lock"
    deploy.mkdir(parents=True)
    shutil.copy(shared / "empty-manifest.json", deploy / "a.json")
    shutil.copy(shared / "loader.json", deploy / "b.json")
    hide(deploy / "b.json")
    shutil.copy(shared / "loader.json", shared / "hidden.json")
    hide(shared / "hidden.json")
    before = snapshot(shared)
    for args, named in (
        (["update", "layer", "-l", "new.json", "--timeout", "5"], "layer/sub: cannot be read"),
        (["check", "layer"], "layer/sub: cannot be read"),
        (["update", "layer2", "-l", "new.json", "--timeout", "5"], "layer2/s.bb: cannot be read"),
        (["check", "layer2"], "layer2/s.bb: cannot be read"),
        (["sbom", "--deploy-dir", "deploy"], "deploy/container-lock/b.json: cannot be read"),
        (["diff", "deploy", "loader.json"], "deploy/container-lock/b.json: cannot be read"),
        (["inventory", "hidden.json"], "hidden.json: cannot be read"),
    ):
        assert_bad_input(run_unprivileged(shared, *args), named)
        assert snapshot(shared) == before


BAD_NUMBERS = [
    (["update", "layer", "--timeout", "inf"], "'--timeout'", {}),
    (["update", "layer", "--timeout", "nan"], "'--timeout'", {}),
    (["inventory", f"{UNREACHABLE}/team/a:1", "--timeout", "nan"], "'--timeout'", {}),
    (["verify", "layer", "--timeout", "inf"], "'--timeout'", {}),
    (["update", "layer", "--timeout", "9" * 30], "'--timeout'", {}),
    (["verify", "layer", "--timeout", "9" * 30], "'--timeout'", {}),
    (["inventory", f"{UNREACHABLE}/team/a:1", "--timeout", "9" * 30], "'--timeout'", {}),
    (["audit", "loader.json", "--db", "osv.db", "--max-db-age", "nan"], "'--max-db-age'", {}),
    (["audit", "loader.json", "--db", "osv.db", "--max-db-age", "1e309"], "'--max-db-age'", {}),
    (["inventory", f"{UNREACHABLE}/team/a:1", "--platform", ""], "--platform ''", {}),
    (["update", "layer", "--image", ""], "--image ''", {}),
    (["sbom", "empty-manifest.json", "--source-date-epoch", "99999999999999"], "'--source-date-epoch'", {}),
    (
        ["sbom", "empty-manifest.json"],
        "SOURCE_DATE_EPOCH (from the environment",
        {"SOURCE_DATE_EPOCH": "banana"},
    ),
    (
        ["sbom", "empty-manifest.json"],
        "SOURCE_DATE_EPOCH (from the environment",
        {"SOURCE_DATE_EPOCH": "1e99"},
    ),
]


@pytest.mark.parametrize(
    ("args", "named", "env"), BAD_NUMBERS, ids=[" ".join(a) + str(e) for a, _, e in BAD_NUMBERS]
)
def test_numbers_out_of_range_are_refused_where_they_are_read(world, args, named, env) -> None:
    before = snapshot(world)
    result = run(world, *args, env=env)
    assert_bad_input(result, named)
    assert "registry" not in result.stderr
    if env:
        assert "--source-date-epoch" not in result.stderr  # the environment is named, not the option
    assert snapshot(world) == before


WRONG_LOCKS = [
    ("no-images.cdx.json", "this is a CycloneDX document, not a container-lock lockfile"),
    ("loader.json", "this is a container-lock build manifest, not a container-lock lockfile"),
    ("empty.json", 'not a container-lock lockfile (no "images")'),
]


@pytest.mark.parametrize(("document", "named"), WRONG_LOCKS, ids=[d for d, _ in WRONG_LOCKS])
@pytest.mark.parametrize(
    "command",
    [
        ["check", "layer"],
        ["update", "layer", "--timeout", "5"],
        ["verify", "layer", "--timeout", "5"],
        ["sbom", "empty-manifest.json"],
    ],
    ids=lambda c: c[0],
)
def test_a_document_given_as_the_lockfile_is_named_as_what_it_is(world, command, document, named) -> None:
    """An SBOM has "version": 1 too: it was read as an empty lock (check passed, update re-resolved)."""
    before = snapshot(world)
    result = run(world, *command, "-l", document)
    assert_bad_input(result, f"{document}: {named}")
    assert snapshot(world) == before


@pytest.mark.parametrize("command", ["update", "check", "verify"])
def test_a_path_that_is_no_recipe_is_bad_input(world, command) -> None:
    (world / "notes.txt").write_text("docker://example.org/team/a;tag=1\n")
    before = snapshot(world)
    result = run(world, command, "notes.txt", "-l", "lock.json")
    assert_bad_input(result, "notes.txt: not a recipe")
    assert snapshot(world) == before


def test_a_dl_dir_that_cannot_be_written_is_bad_input(shared) -> None:
    (shared / "downloads").mkdir()
    hide(shared / "downloads", 0o555)
    before = snapshot(shared)
    result = run_unprivileged(shared, "update", "layer", "-l", "lock.json", "--diff", "--dl-dir", "downloads")
    assert_bad_input(result, "--dl-dir downloads: not writable")
    assert snapshot(shared) == before


@pytest.mark.parametrize("foreign", ["array.json", "empty.json", "spdx.json", "lock.json"])
def test_merge_into_a_document_that_is_not_cyclonedx_is_refused(world, foreign) -> None:
    before = snapshot(world)
    result = run(world, "sbom", "empty-manifest.json", "--merge", foreign, "-o", "out.json")
    assert_bad_input(result, f"{foreign}: this is ", "not a CycloneDX JSON document")
    assert snapshot(world) == before


# 2. Silent passes --------------------------------------------------------------------------------


def test_audit_of_an_sbom_without_images_is_not_a_pass(world) -> None:
    before = snapshot(world)
    for args in (["--fail-on", "low"], []):
        result = run(world, "audit", "no-images.cdx.json", "--db", "osv.db", *args)
        assert_bad_input(result, "nothing to audit: no-images.cdx.json")
        assert "passed" not in result.stdout + result.stderr
    assert_bad_input(run(world, "audit", "empty-manifest.json", "--db", "osv.db"), "nothing to audit")
    assert snapshot(world) == before
    assert run(world, "audit", "loader.json", "--db", "osv.db").returncode == 0  # packages: it audits


def test_verify_and_check_that_judged_nothing_fail_when_the_policy_requires_something(world) -> None:
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    pem = key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    (world / "cosign.pub").write_bytes(pem)
    (world / "signed.toml").write_text('version = 1\n[[signers]]\nimages = ["*"]\nkey = "cosign.pub"\n')
    (world / "nothing").mkdir()
    (world / "nothing" / "n.bb").write_text('SUMMARY = "no image here"\n')
    empty_lock = world / "empty-lock.json"
    empty_lock.write_bytes(Lock().dumps())
    before = snapshot(world)
    result = run(world, "verify", "nothing", "-l", "empty-lock.json", "-p", "signed.toml")
    assert_bad_input(result, "nothing to verify", "signatures")
    assert_bad_input(run(world, "check", "nothing", "-p", "signed.toml"), "nothing to check", "signatures")
    provenance = run(world, "verify", "nothing", "-l", "empty-lock.json", "--provenance")
    assert_bad_input(provenance, "nothing to verify", "provenance")
    # nothing required: nothing judged is no failure, and it is said
    relaxed = run(world, "verify", "nothing", "-l", "empty-lock.json")
    assert relaxed.returncode == 0 and "nothing to verify" in relaxed.stdout, relaxed.stderr
    assert run(world, "check", "nothing").returncode == 0
    assert snapshot(world) == before


def test_sbom_of_a_named_lockfile_that_does_not_exist_is_bad_input(world) -> None:
    before = snapshot(world)
    result = run(world, "sbom", "empty-manifest.json", "-l", "missing.json", "-o", "out.json")
    assert_bad_input(result, "missing.json: no such lockfile")
    assert snapshot(world) == before


def test_update_and_update_check_agree_when_every_reference_is_pinned(world) -> None:
    for layer in ("pinned", "nothing-here"):
        (world / "nothing-here").mkdir(exist_ok=True)
        result = run(world, "update", layer, "-l", "new.json")
        assert result.returncode == 0 and "not needed" in result.stdout, result.stdout + result.stderr
        assert not (world / "new.json").exists()
        check = run(world, "update", layer, "-l", "new.json", "--check")
        assert check.returncode == 0 and "not needed" in check.stdout, check.stdout + check.stderr
    # no PATHS and no lockfile: nothing to re-resolve is bad input, not a pass
    assert_bad_input(run(world, "update", "-l", "new.json", "--check"), "new.json: no such lockfile")


# 3. Nothing lost ---------------------------------------------------------------------------------


@pytest.mark.parametrize("target", ["lock.json", "spdx.json", "empty-manifest.json"])
def test_vulndb_import_does_not_replace_a_file_that_is_not_an_index(world, target) -> None:
    before = snapshot(world)
    result = run(world, "vulndb", "import", "all.zip", "--db", target)
    assert_bad_input(result, f"{target}: exists and is not a vulnerability index")
    assert snapshot(world) == before
    again = run(world, "vulndb", "import", "all.zip", "--db", "osv.db")  # an index it wrote: replaced
    assert again.returncode == 0, again.stderr


# 4. Messages that send the user the right way ----------------------------------------------------

KINDS = [
    ("lock.json", "this is a container-lock lockfile"),
    ("spdx.json", "this is an SPDX document"),
    ("empty.json", "this is an empty JSON object"),
]


@pytest.mark.parametrize(("document", "kind"), KINDS, ids=[d for d, _ in KINDS])
@pytest.mark.parametrize(
    "command", [["inventory"], ["audit", "--db", "osv.db"], ["sbom"]], ids=lambda c: c[0]
)
def test_a_document_of_another_kind_is_named_as_what_it_is(world, command, document, kind) -> None:
    result = run(world, command[0], document, *command[1:])
    assert_bad_input(result, f"{document}: {kind}")
    assert "manifest version" not in result.stderr and "rebuild the loader package" not in result.stderr


def test_sbom_of_a_deploy_dir_that_does_not_exist_says_so(world) -> None:
    result = run(world, "sbom", "--deploy-dir", "./missing")
    assert_bad_input(result, "missing: no such directory")
    assert "build a loader recipe" not in result.stderr


def test_a_trusted_root_that_is_not_one_is_named_without_pydantics_report(world) -> None:
    (world / "root.json").write_text("garbage\n")
    result = run(world, "verify", "layer", "-l", "lock.json", "--trusted-root", "root.json")
    assert_bad_input(result, "root.json: not a Sigstore trusted root (Invalid JSON")
    assert "validation error" not in result.stderr and "pydantic" not in result.stderr
    (world / "root.json").write_text("{}\n")
    result = run(world, "verify", "layer", "-l", "lock.json", "--trusted-root", "root.json")
    assert_bad_input(result, "root.json: not a Sigstore trusted root (mediaType: Field required")
