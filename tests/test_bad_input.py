"""Bad input, property-based: every case is a clear error of the documented kind, never a crash."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from containerlock.fetch import mirror
from containerlock.lock import lockfile
from containerlock.lock.lockfile import LockfileError
from containerlock.lock.policy import RULES, SEVERITIES, PolicyError, parse
from containerlock.oci.platform import Platform, PlatformError
from containerlock.oci.reference import InvalidReference, parse_url
from containerlock.oci.store import BlobStore

URL_ALPHABET = st.sampled_from([*list("abcAZ09.-_:/;=@[]%$ {}\\\n\t"), "..", "sha256:", "tag=", "digest="])
# Every reference error tells the user what to write instead (or why the URL cannot be used).
FIX_HINTS = ("write ", "expected", "known:", "not valid", "not supported", "names no image", "segment")
FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(st.lists(URL_ALPHABET, max_size=40).map("".join))
def test_any_url_is_either_a_safe_reference_or_a_clear_error(tail: str) -> None:
    try:
        ref = parse_url("docker://" + tail)
    except InvalidReference as err:
        message = str(err)  # says what is wrong and what to write instead
        assert "Traceback" not in message
        assert any(hint in message for hint in FIX_HINTS), message
        return
    assert "/" not in ref.fs_name and ":" not in ref.fs_name and ".." not in ref.fs_name.split("+")
    again = parse_url(ref.url())
    assert (again.name, again.tag, again.digest) == (ref.name, ref.tag, ref.digest)


@FAST
@given(st.text(max_size=30))
def test_any_platform_string(text: str) -> None:
    try:
        platform = Platform.parse(text)
    except PlatformError as err:
        assert "os/architecture" in str(err)
        return
    assert "/" not in platform.fs_name


JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.text(max_size=10)
    | st.sampled_from(["sha256:" + "a" * 64, 1]),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=12), children, max_size=3)
    ),
    max_leaves=12,
)


@FAST
@given(st.one_of(JSON, st.fixed_dictionaries({"version": st.just(1), "images": JSON})))
def test_any_lockfile_content_is_a_lock_or_a_named_error(doc: object) -> None:
    try:
        lock = lockfile.parse(json.dumps(doc), "lock.json")
    except LockfileError as err:
        assert str(err).startswith("lock.json")
        return
    assert lockfile.parse(lock.dumps().decode(), "lock.json").dumps() == lock.dumps()


@FAST
@given(st.text(max_size=200))
def test_any_lockfile_text(text: str) -> None:
    try:
        lock = lockfile.parse(text, "lock.json")
    except LockfileError as err:
        assert str(err).startswith("lock.json")
        assert str(err).count("lock.json") == 1  # no repeated prefix
        return
    assert lockfile.parse(lock.dumps().decode(), "lock.json") == lock  # what parses, round-trips


@FAST
@given(
    st.text(
        alphabet=st.sampled_from(list('version=1[rules]unpinned"error"\nsigners[[]]images*key=issuer')),
        max_size=120,
    )
)
def test_any_policy_text_is_a_policy_or_a_named_error(text: str) -> None:
    try:
        policy = parse(text, "policy.toml")
    except PolicyError as err:
        assert str(err).startswith("policy.toml")
        return
    # What parses is a usable policy: known rules with known severities, signers that say who.
    assert set(policy.severities) <= set(RULES)
    assert set(policy.severities.values()) <= set(SEVERITIES)
    for signer in policy.signers:
        assert signer.key or (
            (signer.issuer or signer.issuer_regex) and (signer.identity or signer.identity_regex)
        )


@FAST
@given(st.lists(st.tuples(st.text(min_size=1, max_size=40), st.binary(max_size=64)), max_size=4))
def test_mirror_tarballs_accept_only_verified_blobs(tmp_path_factory, members) -> None:
    work = tmp_path_factory.mktemp("mirror")
    tarball = work / "m.tar"
    with tarfile.open(tarball, "w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    store = BlobStore(work / "store")
    with pytest.raises(mirror.MirrorError):
        mirror.import_into(tarball, store)
    outside = [p for p in work.rglob("*") if p.is_file() and p != tarball and "store" not in p.parts]
    assert outside == []


@pytest.mark.parametrize(
    ("args", "files", "complaint"),
    [
        (["check", "missing-dir"], {}, "missing-dir: no such file or directory"),
        (
            ["update", "layer", "--lockfile", "lock.json", "--check"],
            {"lock.json": '{"version": 1, "images": {'},
            "lock.json:1:",
        ),
        (["check", "layer", "--policy", "p.toml"], {"p.toml": "version = 2\n"}, "'version = 1' is required"),
        (["sbom", "m.json"], {"m.json": "[]"}, "not a container-lock build manifest"),
        (["sbom"], {}, "give either build manifest files or --deploy-dir"),
        (["update", "layer", "-D", "NOVALUE"], {}, "-D NOVALUE: write NAME=VALUE"),
        (["verify", "layer", "--policy", "p.toml"], {"p.toml": '[[signers]]\nissuer="x"\n'}, "version"),
    ],
)
def test_cli_bad_input_is_exit_2_without_traceback(tmp_path: Path, args, files, complaint) -> None:
    (tmp_path / "layer").mkdir()
    (tmp_path / "layer" / "r.bb").write_text('SRC_URI = "docker://reg.example/a;tag=1"\n')
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    result = subprocess.run(
        [sys.executable, "-m", "audit", *args], capture_output=True, text=True, cwd=tmp_path, timeout=120
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert complaint in result.stderr and "Traceback" not in result.stderr
