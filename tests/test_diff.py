"""`container-lock diff` and `update --diff`: two releases built from real images (a real BitBake
fetch and packaging, `container-lock sbom`, `audit`), every output form checked exactly."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from changes.report import short, size
from containerlock.lock import lockfile
from containerlock.lock.lockfile import Lock, LockEntry
from tests.harness.bitbake import BuildDir
from tests.harness.osv import (
    CVSS_CRITICAL,
    CVSS_HIGH,
    CVSS_LOW,
    CVSS_MEDIUM,
    ecosystem_range,
    record,
    write_zip,
)
from tests.harness.pkgdbs import dpkg_status, os_release
from tests.test_sbom import SBOM_TASKS, pinned

BASE = {
    "etc/os-release": os_release("Debian GNU/Linux 12 (bookworm)", "debian", "12"),
    "usr/share/doc/base.txt": b"the shared base layer of app 1.0 and 1.1\n" * 64,
}
UNCHANGED = [
    {"Package": "base-files", "Version": "12.4+deb12u5", "Architecture": "amd64"},
    {"Package": "zlib1g", "Source": "zlib", "Version": "1:1.2.13.dfsg-1", "Architecture": "amd64"},
]
OLD_PACKAGES = [
    *UNCHANGED,
    {"Package": "curl", "Version": "7.88.1-10+deb12u5", "Architecture": "amd64"},
    {"Package": "libfoo", "Version": "2.0-1", "Architecture": "amd64"},
    {"Package": "libssl3", "Source": "openssl", "Version": "3.0.11-1~deb12u1", "Architecture": "amd64"},
    {"Package": "oldtool", "Version": "1.0-1", "Architecture": "all"},
]
NEW_PACKAGES = [
    *UNCHANGED,
    {"Package": "curl", "Version": "7.88.1-10+deb12u4", "Architecture": "amd64"},  # downgraded
    {"Package": "libfoo", "Version": "1:1.0-1", "Architecture": "amd64"},  # upgraded: the epoch wins
    {"Package": "libssl3", "Source": "openssl", "Version": "3.0.15-1~deb12u1", "Architecture": "amd64"},
    {"Package": "newtool", "Version": "2.0-1", "Architecture": "all"},  # added; oldtool removed
]
# The expected `packages` of the re-pinned app image (docs/diff.md's JSON schema).
APP_PACKAGES = {
    "added": [{"arch": "all", "ecosystem": "deb/debian", "name": "newtool", "new": "2.0-1", "old": None}],
    "changed": [],
    "downgraded": [
        {
            "arch": "amd64",
            "ecosystem": "deb/debian",
            "name": "curl",
            "new": "7.88.1-10+deb12u4",
            "old": "7.88.1-10+deb12u5",
        }
    ],
    "removed": [{"arch": "all", "ecosystem": "deb/debian", "name": "oldtool", "new": None, "old": "1.0-1"}],
    "upgraded": [
        {"arch": "amd64", "ecosystem": "deb/debian", "name": "libfoo", "new": "1:1.0-1", "old": "2.0-1"},
        {
            "arch": "amd64",
            "ecosystem": "deb/debian",
            "name": "libssl3",
            "new": "3.0.15-1~deb12u1",
            "old": "3.0.11-1~deb12u1",
        },
    ],
}


def osv_records() -> list[dict[str, Any]]:
    """openssl fixed by the upgrade, curl brought back by the downgrade, zlib open on both sides,
    oldtool gone with the package."""
    debian = "Debian:12"
    return [
        record(
            "CVE-2026-1001",
            debian,
            "openssl",
            [ecosystem_range(("introduced", "0"), ("fixed", "3.0.15-1~deb12u1"))],
            cvss=CVSS_HIGH,
        ),
        record(
            "CVE-2026-1002",
            debian,
            "curl",
            [ecosystem_range(("introduced", "0"), ("fixed", "7.88.1-10+deb12u5"))],
            cvss=CVSS_CRITICAL,
        ),
        record("CVE-2026-1003", debian, "zlib", [ecosystem_range(("introduced", "0"))], cvss=CVSS_MEDIUM),
        record("CVE-2026-1004", debian, "oldtool", [ecosystem_range(("introduced", "0"))], cvss=CVSS_LOW),
    ]


def cli(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "audit", *map(str, args)], capture_output=True, text=True, timeout=300
    )


def _app(image_factory, tag: str, packages: list[dict[str, str]]):
    top = {"var/lib/dpkg/status": dpkg_status(*packages), "app/version": tag.encode()}
    return image_factory.layered("diff/app", [BASE, top], tag=tag)


def _small(image_factory, repository: str, package: str):
    files = {
        "etc/os-release": BASE["etc/os-release"],
        "var/lib/dpkg/status": dpkg_status({"Package": package, "Version": "1.0-1", "Architecture": "all"}),
    }
    return image_factory.layered(repository, [files])


def _release(build: BuildDir, images: list, dest: Path) -> Path:
    """Fetch and package `images` in one loader recipe; its build manifest copied to `dest`."""
    urls = " ".join(pinned(i) for i in images)
    recipe = build.write_recipe("release-images_1.0", f'inherit podman-loader\nSRC_URI += "{urls}"\n')
    d = build.run(recipe, *SBOM_TASKS)
    deploy = Path(d.getVar("CONTAINER_LOCK_DEPLOY_DIR"))
    shutil.copytree(deploy, dest / "container-lock")
    return dest


@pytest.fixture(scope="module")
def releases(tmp_path_factory: pytest.TempPathFactory, image_factory) -> dict[str, Any]:
    """Release 1: app 1.0, gone, same; release 2: app 1.1 (shared base), same, fresh. Deploy dirs,
    SBOMs, audited SBOMs, the OSV index and lockfiles of both."""
    root = tmp_path_factory.mktemp("diff")
    app_old, app_new = _app(image_factory, "1.0", OLD_PACKAGES), _app(image_factory, "1.1", NEW_PACKAGES)
    gone, fresh = (
        _small(image_factory, "diff/gone", "gonetool"),
        _small(image_factory, "diff/fresh", "freshtool"),
    )
    same = _small(image_factory, "diff/same", "sametool")
    build = BuildDir(root / "build")
    build.set(DL_DIR=str(root / "downloads"), TMPDIR=str(root / "build" / "tmp"))
    world: dict[str, Any] = {"root": root, "app_old": app_old, "app_new": app_new, "fresh": fresh}
    world["gone"], world["same"], world["downloads"] = gone, same, root / "downloads"
    try:
        for side, images in (("old", [app_old, gone, same]), ("new", [app_new, same, fresh])):
            deploy = _release(build, images, root / f"{side}-deploy")
            sbom = root / f"{side}.cdx.json"
            assert cli("sbom", "--deploy-dir", deploy, "-o", sbom).returncode == 0
            world[f"{side}_deploy"], world[f"{side}_sbom"] = deploy, sbom
            entries = {
                f"{i.host}/{i.repository}:{i.tag}": LockEntry(i.digest, {"linux/amd64": i.digest})
                for i in images
            }
            world[f"{side}_lock"] = root / f"{side}-lock.json"
            world[f"{side}_lock"].write_bytes(Lock(entries).dumps())
    finally:
        build.events.close()
    write_zip(root / "osv.zip", osv_records())
    assert cli("vulndb", "import", root / "osv.zip", "--db", root / "osv.db").returncode == 0
    world["db"] = root / "osv.db"
    for side in ("old", "new"):
        audited = root / f"{side}.audited.cdx.json"
        result = cli("audit", world[f"{side}_sbom"], "--db", world["db"], "-o", audited)
        assert result.returncode == 0, result.stderr
        world[f"{side}_audited"] = audited
    return world


def diff_json(*args: object) -> tuple[int, dict[str, Any], str]:
    result = cli("diff", *args, "--json")
    return result.returncode, json.loads(result.stdout) if result.stdout else {}, result.stderr


def _image(image, tag: str | None = None) -> dict[str, Any]:
    platform = image.platforms["linux/amd64"]
    return {
        "digest": platform.manifest_digest,
        "layers": len(platform.layers),
        "packages": 1,
        "pinned_digest": image.digest,
        "platform": "linux/amd64",
        "reference": f"{image.host}/{image.repository}",
        "size": sum(layer.size for layer in platform.layers),
        "tag": tag or image.tag,
    }


def _finding(vuln_id: str, severity: str, image, package: str, version: str, arch: str, fixed=None):
    return {
        "analysis": None,
        "fixed_version": fixed,
        "id": vuln_id,
        "image": {
            "platform": "linux/amd64",
            "reference": f"{image.host}/{image.repository}",
            "tag": image.tag,
        },
        "package": {"arch": arch, "ecosystem": "deb/debian", "name": package, "version": version},
        "severity": severity,
    }


def expected_images(world: dict[str, Any]) -> dict[str, Any]:
    old, new = world["app_old"], world["app_new"]
    return {
        "added": [_image(world["fresh"])],
        "removed": [_image(world["gone"])],
        "repinned": [
            {
                "layers": {
                    "new": 1,
                    "reused": 1,
                    "update_bytes": new.platforms["linux/amd64"].layers[1].size,
                },
                "new": {"digest": new.digest, "pinned_digest": new.digest, "tag": "1.1"},
                "old": {"digest": old.digest, "pinned_digest": old.digest, "tag": "1.0"},
                "packages": APP_PACKAGES,
                "platform": "linux/amd64",
                "reference": f"{new.host}/diff/app",
            }
        ],
        "unchanged": 1,
    }


def expected_vulnerabilities(world: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    old, new = world["app_old"], world["app_new"]
    return {
        "fixed": [
            _finding(
                "CVE-2026-1001", "high", old, "libssl3", "3.0.11-1~deb12u1", "amd64", "3.0.15-1~deb12u1"
            ),
            _finding("CVE-2026-1004", "low", old, "oldtool", "1.0-1", "all"),
        ],
        "introduced": [
            _finding(
                "CVE-2026-1002", "critical", new, "curl", "7.88.1-10+deb12u4", "amd64", "7.88.1-10+deb12u5"
            )
        ],
        "still_open": [_finding("CVE-2026-1003", "medium", new, "zlib1g", "1:1.2.13.dfsg-1", "amd64")],
    }


def test_the_test_images_share_their_base_layer(releases) -> None:
    old, new = (releases[k].platforms["linux/amd64"].layers for k in ("app_old", "app_new"))
    assert old[0].digest == new[0].digest and old[1].digest != new[1].digest


def test_diff_of_two_sboms_is_exact(releases) -> None:
    status, report, stderr = diff_json(releases["old_sbom"], releases["new_sbom"])
    assert status == 0, stderr
    assert report["schema"] == "container-lock/diff/1"
    assert report["images"] == expected_images(releases)
    fresh_layers = releases["fresh"].platforms["linux/amd64"].layers
    ota = releases["app_new"].platforms["linux/amd64"].layers[1].size + sum(
        layer.size for layer in fresh_layers
    )
    assert report["update"] == {"bytes": ota, "new_layers": 1 + len(fresh_layers)}
    assert report["vulnerabilities"] is None
    assert "OLD and NEW carry no findings" in report["vulnerabilities_not_compared"]
    assert report["old"] == {
        "images": 3,
        "kind": "sbom",
        "source": str(releases["old_sbom"]),
        "vulnerability_snapshot": None,
    }


def test_build_manifests_and_deploy_dirs_give_the_same_diff(releases) -> None:
    _, from_sboms, _ = diff_json(releases["old_sbom"], releases["new_sbom"])
    status, from_dirs, stderr = diff_json(releases["old_deploy"], releases["new_deploy"])
    assert status == 0, stderr
    manifest = next((releases["new_deploy"] / "container-lock").glob("*.json"))
    status, mixed, stderr = diff_json(releases["old_sbom"], manifest)
    assert status == 0, stderr
    assert from_dirs["images"] == from_sboms["images"] == mixed["images"]
    assert from_dirs["new"]["kind"] == "build-manifests" and from_dirs["update"] == from_sboms["update"]


def test_vulnerabilities_with_db_and_from_audited_sboms_agree(releases) -> None:
    status, with_db, stderr = diff_json(releases["old_sbom"], releases["new_sbom"], "--db", releases["db"])
    assert status == 0, stderr
    expected = expected_vulnerabilities(releases)
    assert {k: with_db["vulnerabilities"][k] for k in expected} == expected
    status, audited, stderr = diff_json(releases["old_audited"], releases["new_audited"])
    assert status == 0, stderr
    assert {k: audited["vulnerabilities"][k] for k in expected} == expected
    assert "snapshot" in audited["vulnerabilities"]["source"]


def test_fail_on_new_gates_on_introduced_untriaged_findings(releases, tmp_path) -> None:
    args = (releases["old_audited"], releases["new_audited"])
    status, report, stderr = diff_json(*args, "--fail-on-new", "critical")
    assert status == 1 and [f["id"] for f in report["failing"]] == ["CVE-2026-1002"]
    assert "NEW introduces 1 untriaged finding(s) at or above critical" in stderr
    status, report, _ = diff_json(*args, "--fail-on-new", "low")
    assert status == 1 and [f["id"] for f in report["failing"]] == ["CVE-2026-1002"]
    vex = tmp_path / "vex.json"
    vex.write_text(
        json.dumps(
            {
                "@context": "https://openvex.dev/ns/v0.2.0",
                "@id": "https://example.com/vex/1",
                "author": "team",
                "timestamp": "2026-12-01T00:00:00Z",
                "version": 1,
                "statements": [
                    {
                        "vulnerability": {"name": "CVE-2026-1002"},
                        "products": [{"@id": "pkg:deb/debian/curl"}],
                        "status": "not_affected",
                        "justification": "vulnerable_code_not_in_execute_path",
                    }
                ],
            }
        )
    )
    db_args = (releases["old_sbom"], releases["new_sbom"], "--db", releases["db"], "--vex", vex)
    status, report, stderr = diff_json(*db_args, "--fail-on-new", "critical")
    assert status == 0, (stderr, report["vulnerabilities"]["introduced"])
    assert report["vulnerabilities"]["introduced"][0]["analysis"] == "not_affected"
    assert report["failing"] == []


def _new_audited(releases, tmp_path, change) -> Path:
    """The NEW audited SBOM with CVE-2026-1002 (introduced, critical) changed by `change`."""
    doc = json.loads(releases["new_audited"].read_text())
    doc["vulnerabilities"] = [
        v for v in (change(v) if v["id"] == "CVE-2026-1002" else v for v in doc["vulnerabilities"]) if v
    ]
    path = tmp_path / "new.changed.cdx.json"
    path.write_text(json.dumps(doc))
    return path


def test_fail_on_new_judges_still_open_and_unknown_findings_on_their_own(releases, tmp_path) -> None:
    """Still open at or above the level: passes; introduced of unknown severity: fails at any level."""
    # Without the introduced CVE-2026-1002, only CVE-2026-1003 (medium, still open) is at or above low.
    new = _new_audited(releases, tmp_path, lambda v: None)
    status, report, stderr = diff_json(releases["old_audited"], new, "--fail-on-new", "low")
    assert [f["id"] for f in report["vulnerabilities"]["introduced"]] == []
    assert [(f["id"], f["severity"]) for f in report["vulnerabilities"]["still_open"]] == [
        ("CVE-2026-1003", "medium")
    ]
    assert status == 0 and report["failing"] == [], stderr
    # CVE-2026-1002 introduced with no rating: unknown cannot be shown to be below critical.
    new = _new_audited(releases, tmp_path, lambda v: {**v, "ratings": [{"severity": "unknown"}]})
    status, report, stderr = diff_json(releases["old_audited"], new, "--fail-on-new", "critical")
    assert status == 1, stderr
    assert [(f["id"], f["severity"]) for f in report["failing"]] == [("CVE-2026-1002", "unknown")]


def test_markdown_and_summary_name_every_change(releases) -> None:
    args = (releases["old_audited"], releases["new_audited"])
    markdown = cli("diff", *args, "--markdown")
    assert markdown.returncode == 0, markdown.stderr
    text = markdown.stdout
    host = releases["app_new"].host
    new_top = releases["app_new"].platforms["linux/amd64"].layers[1].size
    assert "Images: 1 re-pinned, 1 added, 1 removed, 1 unchanged" in text
    assert f"### `{host}/diff/app` 1.0 → 1.1 (linux/amd64)" in text
    assert f"layers: 1 reused, 1 new ({size(new_top)} to download)" in text
    assert "Packages: 2 upgraded, 1 downgraded, 1 added, 1 removed." in text
    for row in (
        "| curl:amd64 | deb/debian | downgraded | 7.88.1-10+deb12u5 | 7.88.1-10+deb12u4 |",
        "| libfoo:amd64 | deb/debian | upgraded | 2.0-1 | 1:1.0-1 |",
        "| newtool:all | deb/debian | added |  | 2.0-1 |",
        "| oldtool:all | deb/debian | removed | 1.0-1 |  |",
        f"| added | `{host}/diff/fresh:1.0` (linux/amd64) |",
        f"| removed | `{host}/diff/gone:1.0` (linux/amd64) |",
        "2 fixed, 1 introduced, 1 still open",
        f"| CVE-2026-1002 | critical | `{host}/diff/app:1.1` (linux/amd64) | curl:amd64 | "
        "7.88.1-10+deb12u4 |",
    ):
        assert row in text, row
    gated = cli("diff", *args, "--markdown", "--fail-on-new", "high")
    assert gated.returncode == 1
    assert "| 7.88.1-10+deb12u5 | **fails the gate** |" in gated.stdout
    assert "**1 introduced finding(s) at or above the gate.**" in gated.stdout
    summary = cli("diff", *args)
    assert summary.returncode == 0, summary.stderr
    for line in (
        "1 re-pinned, 1 added, 1 removed, 1 unchanged",
        "downgraded",
        "CVE-2026-1002",
        "oldtool:all",
    ):
        assert line in summary.stdout, line
    assert "\x1b[" not in summary.stdout  # piped: no escape sequences


def test_markdown_is_exact(releases) -> None:
    args = (releases["old_audited"], releases["new_audited"])
    _, report, _ = diff_json(*args)
    host = releases["app_new"].host
    old, new, fresh, gone = (releases[k] for k in ("app_old", "app_new", "fresh", "gone"))
    top = new.platforms["linux/amd64"].layers[1].size
    fresh_layers = fresh.platforms["linux/amd64"].layers
    ota = top + sum(layer.size for layer in fresh_layers)
    app, was = (f"`{host}/diff/app:{tag}` (linux/amd64)" for tag in ("1.1", "1.0"))
    layers = f"{1 + len(fresh_layers)} new layers"
    expected = f"""## Container images

Images: 1 re-pinned, 1 added, 1 removed, 1 unchanged; a device downloads {size(ota)} ({layers}).

| change | image | digest |
| --- | --- | --- |
| added | `{host}/diff/fresh:1.0` (linux/amd64) | `{short(fresh.digest)}` |
| removed | `{host}/diff/gone:1.0` (linux/amd64) | `{short(gone.digest)}` |

### `{host}/diff/app` 1.0 → 1.1 (linux/amd64)

`{short(old.digest)}` → `{short(new.digest)}`; layers: 1 reused, 1 new ({size(top)} to download)

Packages: 2 upgraded, 1 downgraded, 1 added, 1 removed.

| package | ecosystem | change | old | new |
| --- | --- | --- | --- | --- |
| curl:amd64 | deb/debian | downgraded | 7.88.1-10+deb12u5 | 7.88.1-10+deb12u4 |
| libfoo:amd64 | deb/debian | upgraded | 2.0-1 | 1:1.0-1 |
| libssl3:amd64 | deb/debian | upgraded | 3.0.11-1~deb12u1 | 3.0.15-1~deb12u1 |
| newtool:all | deb/debian | added |  | 2.0-1 |
| oldtool:all | deb/debian | removed | 1.0-1 |  |

## Vulnerabilities

2 fixed, 1 introduced, 1 still open (from {report["vulnerabilities"]["source"]}).

Introduced:

| id | severity | image | package | version | fixed in | triage |
| --- | --- | --- | --- | --- | --- | --- |
| CVE-2026-1002 | critical | {app} | curl:amd64 | 7.88.1-10+deb12u4 | 7.88.1-10+deb12u5 |  |

Fixed:

| id | severity | image | package | version | fixed in | triage |
| --- | --- | --- | --- | --- | --- | --- |
| CVE-2026-1001 | high | {was} | libssl3:amd64 | 3.0.11-1~deb12u1 | 3.0.15-1~deb12u1 |  |
| CVE-2026-1004 | low | {was} | oldtool:all | 1.0-1 |  |  |
"""
    result = cli("diff", *args, "--markdown")
    assert result.returncode == 0, result.stderr
    assert result.stdout == expected


def test_output_is_deterministic(releases) -> None:
    args = (releases["old_audited"], releases["new_audited"])
    for form in ("--json", "--markdown"):
        first, second = cli("diff", *args, form), cli("diff", *args, form)
        assert first.returncode == 0 and first.stdout == second.stdout


def test_lockfiles_compare_images_only(releases) -> None:
    status, report, stderr = diff_json(releases["old_lock"], releases["new_lock"])
    assert status == 0, stderr
    old, new = releases["app_old"], releases["app_new"]
    assert [(i["reference"], i["tag"]) for i in report["images"]["added"]] == [
        (f"{new.host}/diff/fresh", "1.0")
    ]
    assert [(i["reference"], i["tag"]) for i in report["images"]["removed"]] == [
        (f"{new.host}/diff/gone", "1.0")
    ]
    (repin,) = report["images"]["repinned"]
    assert (repin["old"]["digest"], repin["new"]["digest"]) == (old.digest, new.digest)
    assert repin["packages"] is None and report["update"] is None
    assert report["vulnerabilities_not_compared"] == "lockfiles list images only"


@pytest.mark.parametrize(
    ("make", "args", "message"),
    [
        (
            lambda r, t: _write(t / "x.json", {"hello": "world"}),
            ("{x}", "{new_sbom}"),
            "not a CycloneDX SBOM",
        ),
        (lambda r, t: _write(t / "x.json", {"spdxVersion": "SPDX-2.3"}), ("{x}", "{new_sbom}"), "SPDX"),
        (lambda r, t: _spec(r["old_sbom"], t / "x.json", "1.5"), ("{x}", "{new_sbom}"), "CycloneDX 1.5"),
        (lambda r, t: (t / "x.json").write_text("<bom/>"), ("{x}", "{new_sbom}"), "XML"),
        (lambda r, t: (t / "x.json").write_text("{"), ("{x}", "{new_sbom}"), "not valid JSON"),
        (lambda r, t: None, ("{x}", "{new_sbom}"), "no such file"),
        (
            lambda r, t: _write(
                t / "x.json",
                {
                    "bomFormat": "CycloneDX",
                    "specVersion": "1.6",
                    "components": [
                        {
                            "type": "container",
                            "properties": [{"name": "container-lock:platform", "value": "linux/amd64"}],
                            "components": ["junk"],
                        }
                    ],
                },
            ),
            ("{x}", "{new_sbom}"),
            "a CycloneDX document container-lock cannot read",
        ),
        (lambda r, t: None, ("{old_lock}", "{new_sbom}"), "is a lockfile"),
        (lambda r, t: None, ("{old_lock}", "{new_lock}", "--db", "{db}"), "lockfiles list images only"),
        (lambda r, t: None, ("{old_sbom}", "{new_sbom}", "--fail-on-new", "high"), "cannot be compared"),
        (lambda r, t: None, ("{old_sbom}", "{new_sbom}", "--json", "--markdown"), "give one of them"),
        (lambda r, t: None, ("{old_sbom}", "{new_sbom}", "--db", "{x}"), "x.json"),
        (
            lambda r, t: _write(t / "x.json", {"bomFormat": "CycloneDX", "specVersion": "1.6"}),
            ("{x}", "{new_sbom}"),
            "without container-lock image components",
        ),
    ],
)
def test_bad_input_exits_2_naming_it(releases, tmp_path, make, args, message) -> None:
    make(releases, tmp_path)
    values = {**{k: v for k, v in releases.items() if isinstance(v, Path)}, "x": tmp_path / "x.json"}
    result = cli("diff", *(a.format(**values) for a in args))
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert message in result.stderr and "Traceback" not in result.stderr


def _write(path: Path, doc: Any) -> None:
    path.write_text(json.dumps(doc))


def _spec(source: Path, dest: Path, version: str) -> None:
    doc = json.loads(source.read_text())
    doc["specVersion"] = version
    dest.write_text(json.dumps(doc))


def test_update_diff_reads_the_new_digest_from_dl_dir_without_downloading_layers(
    releases, image_factory, registry, tmp_path
) -> None:
    """`update --diff` after a tag moved: the same package diff as the SBOMs give; every layer was
    in the build's DL_DIR, so the registry serves no layer blob."""
    old, new = releases["app_old"], releases["app_new"]
    stable = image_factory.retag(old, "diff/app", "stable")
    lock = tmp_path / "lock.json"
    lock.write_bytes(
        Lock({stable.reference: LockEntry(stable.digest, {"linux/amd64": stable.digest})}).dumps()
    )
    image_factory.retag(new, "diff/app", "stable")
    fresh = releases["fresh"]
    recipe = tmp_path / "layer" / "recipes" / "images_1.0.bb"
    recipe.parent.mkdir(parents=True)
    recipe.write_text(
        f'SRC_URI = "docker://{stable.host}/diff/app;tag=stable docker://{fresh.host}/diff/fresh;tag=1.0"\n'
    )
    images = (old, new, fresh)
    layers = {layer.digest for image in images for layer in image.platforms["linux/amd64"].layers}
    mark = registry.mark()
    result = cli(
        "update", recipe.parent.parent, "-l", lock, "--diff", "--json", "--dl-dir", releases["downloads"]
    )
    assert result.returncode == 0, result.stderr
    assert [g.digest for g in registry.blob_gets(mark) if g.digest in layers] == []
    report = json.loads(result.stdout)
    assert lockfile.load(lock).entries[stable.reference].digest == new.digest
    assert report["diff"]["images"]["added"] == [_image(fresh)]  # a new pin: read too
    (repin,) = report["diff"]["images"]["repinned"]
    assert repin["packages"] == APP_PACKAGES
    assert repin["layers"] == {
        "new": 1,
        "reused": 1,
        "update_bytes": new.platforms["linux/amd64"].layers[1].size,
    }
    assert (repin["old"]["tag"], repin["new"]["tag"]) == ("stable", "stable")


def test_update_diff_downloads_into_its_cache_once(releases, image_factory, registry, tmp_path) -> None:
    """Without --dl-dir the layers go to the user's cache: a second diff downloads none."""
    old, new = releases["app_old"], releases["app_new"]
    layers = {layer.digest for image in (old, new) for layer in image.platforms["linux/amd64"].layers}
    counts = []
    for _ in range(2):
        stable = image_factory.retag(old, "diff/app", "cached")
        lock = tmp_path / "lock.json"
        lock.write_bytes(
            Lock({stable.reference: LockEntry(stable.digest, {"linux/amd64": stable.digest})}).dumps()
        )
        image_factory.retag(new, "diff/app", "cached")
        mark = registry.mark()
        env_cache = tmp_path / "cache"
        result = subprocess.run(
            [sys.executable, "-m", "audit", "update", "-l", str(lock), "--diff", "--markdown"],
            capture_output=True,
            text=True,
            timeout=300,
            env={**os.environ, "XDG_CACHE_HOME": str(env_cache)},
        )
        assert result.returncode == 0, result.stderr
        assert "| curl:amd64 | deb/debian | downgraded |" in result.stdout
        counts.append(len({g.digest for g in registry.blob_gets(mark) if g.digest in layers}))
    assert counts == [3, 0]
