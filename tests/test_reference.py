"""docker:// URL parsing: upstream Isar syntax, normalisation, and clear errors for bad input."""

from __future__ import annotations

import pytest

from containerlock.oci.platform import (
    BuildArches,
    Platform,
    PlatformError,
    choose_platform,
    select_descriptor,
)
from containerlock.oci.reference import InvalidReference, parse_url, redact

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("url", "name", "tag", "digest"),
    [
        ("docker://127.0.0.1:5000/app;tag=1.2", "127.0.0.1:5000/app", "1.2", None),
        (
            f"docker://reg.example:5000/team/app;digest={DIGEST};tag=v1",
            "reg.example:5000/team/app",
            "v1",
            DIGEST,
        ),
        ("docker://quay.io/libpod/alpine;tag=3.10.2", "quay.io/libpod/alpine", "3.10.2", None),
        ("docker://alpine", "docker.io/library/alpine", "latest", None),
        ("docker://someone/tool;tag=2", "docker.io/someone/tool", "2", None),
        ("docker://localhost/app;tag=x", "localhost/app", "x", None),
        ("docker://[::1]:5000/app;tag=x", "[::1]:5000/app", "x", None),
    ],
)
def test_valid_urls_normalise(url: str, name: str, tag: str, digest: str | None) -> None:
    ref = parse_url(url)
    assert (ref.name, ref.tag, ref.digest) == (name, tag, digest)
    assert ":" not in ref.fs_name and "/" not in ref.fs_name


def test_fs_names_do_not_collide_across_port_and_path() -> None:
    names = {
        parse_url(u).fs_name
        for u in ("docker://h:5000/a/b", "docker://h/a/b", "docker://h:5000/a.b", "docker://h:5000/a-b")
    }
    assert len(names) == 4


def test_url_with_digest_round_trips() -> None:
    ref = parse_url("docker://127.0.0.1:5000/app;tag=1")
    pinned = parse_url(ref.url(DIGEST))
    assert (pinned.name, pinned.tag, pinned.digest) == (ref.name, "1", DIGEST)


@pytest.mark.parametrize(
    ("url", "complaint"),
    [
        ("docker://", "names no image"),
        ("docker://127.0.0.1:5000", "no image"),
        ("docker://h.example/app;digest=sha256:1234", "malformed"),
        ("docker://h.example/app;digest=md5:" + "a" * 32, "malformed"),
        ("docker://h.example/app;tga=1", "unknown parameter"),
        ("docker://h.example/a/../b", "'..'"),
        ("docker://h.example/App", "lower-case"),
        ("docker://h.example/app;tag=-bad", "tag"),
        ("docker://user:secret@h.example/app", "auth.json"),
        ("docker://h.example/app;tag", "no value"),
        ("http://h.example/app", "scheme"),
        ("docker://bad_host.example/app", "registry"),
        ("docker://h.example:99999/app", "registry"),
    ],
)
def test_bad_urls_are_rejected_with_the_reason(url: str, complaint: str) -> None:
    with pytest.raises(InvalidReference, match=complaint) as err:
        parse_url(url)
    assert "secret" not in str(err.value)


def test_redact_hides_userinfo() -> None:
    assert "secret" not in redact("docker://user:secret@h.example/app;tag=1")


@pytest.mark.parametrize(
    ("package_arch", "expected"),
    [
        ("amd64", "linux/amd64"),
        ("arm64", "linux/arm64"),
        ("armhf", "linux/arm/v7"),
        ("armel", "linux/arm/v6"),
        ("i386", "linux/386"),
        ("riscv64", "linux/riscv64"),
    ],
)
def test_platform_from_package_arch(package_arch: str, expected: str) -> None:
    assert str(choose_platform(BuildArches(package_arch=package_arch)).platform) == expected


def test_isar_takes_the_device_arch_not_the_arch_all_rewrite() -> None:
    """Isar sets PACKAGE_ARCH to the build host's arch for DPKG_ARCH = "all" in cross builds."""
    choice = choose_platform(BuildArches(package_arch="amd64", distro_arch="armhf", pn="app"))
    assert str(choice.platform) == "linux/arm/v7"
    assert "DISTRO_ARCH = armhf" in choice.reason and "PACKAGE_ARCH = amd64" in choice.reason


@pytest.mark.parametrize(("pn", "expected"), [("app-compat", "linux/arm/v7"), ("app-native", "linux/amd64")])
def test_isar_compat_and_native_variants_keep_their_package_arch(pn: str, expected: str) -> None:
    package_arch = "armhf" if pn.endswith("-compat") else "amd64"
    choice = choose_platform(BuildArches(package_arch=package_arch, distro_arch="arm64", pn=pn))
    assert str(choice.platform) == expected
    assert f"PACKAGE_ARCH = {package_arch} of {pn}" == choice.reason


def test_platform_override_and_oe_target_arch() -> None:
    override = BuildArches(package_arch="all", distro_arch="amd64", override="linux/arm/v5")
    assert str(choose_platform(override).platform) == "linux/arm/v5"
    oe = choose_platform(BuildArches(package_arch="cortexa57", target_arch="aarch64"))
    assert (str(oe.platform), oe.reason) == ("linux/arm64", "TARGET_ARCH = aarch64")


@pytest.mark.parametrize(
    "arches",
    [
        BuildArches(package_arch="all"),
        BuildArches(package_arch="sparc"),
        BuildArches(),
        BuildArches(package_arch="amd64", distro_arch="all"),  # Isar: DISTRO_ARCH decides
        BuildArches(package_arch="amd64", distro_arch="sparc"),
    ],
)
def test_unknown_arch_is_an_error_not_amd64(arches: BuildArches) -> None:
    with pytest.raises(PlatformError, match="CONTAINER_PLATFORM"):
        choose_platform(arches)


def test_arm64_matches_with_or_without_v8_variant() -> None:
    entries = [{"digest": "a", "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}}]
    assert select_descriptor(entries, Platform("linux", "arm64"))["digest"] == "a"


def test_missing_platform_lists_what_the_index_offers() -> None:
    entries = [{"digest": "a", "platform": {"os": "linux", "architecture": "amd64"}}]
    with pytest.raises(PlatformError, match=r"no linux/arm/v7 image; it offers: linux/amd64"):
        select_descriptor(entries, Platform("linux", "arm", "v7"))
