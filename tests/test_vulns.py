"""Offline vulnerability audit: OSV records (validated against the OSV schema) imported into the index,
matched per ecosystem with OSV's range rules, aliases merged, VEX triage, the gate, the SBOM."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from sbom import schema
from tests.harness.osv import (
    CVSS4_HIGH,
    CVSS_CRITICAL,
    CVSS_HIGH,
    CVSS_LOW,
    CVSS_MEDIUM,
    ecosystem_range,
    image,
    record,
    schema_errors,
    write_manifest,
    write_zip,
)
from vulns import db as vulndb
from vulns import osv
from vulns.matching import match
from vulns.versions import compare

DEB12 = {"ID": "debian", "VERSION_ID": "12", "PRETTY_NAME": "Debian GNU/Linux 12 (bookworm)"}
ALPINE = {"ID": "alpine", "VERSION_ID": "3.19.1", "PRETTY_NAME": "Alpine Linux v3.19"}
ALMA = {"ID": "almalinux", "VERSION_ID": "9.3", "PRETTY_NAME": "AlmaLinux 9.3 (Shamrock Pampas Cat)"}
SITE = "usr/lib/python3/dist-packages"

DEBIAN_PACKAGES = [
    {"type": "deb", "name": "libssl3", "version": "3.0.11-1~deb12u1", "arch": "amd64", "source": "openssl"},
    {"type": "deb", "name": "libc6", "version": "2.36-9+deb12u4", "arch": "amd64", "source": "glibc"},
    {"type": "deb", "name": "zlib1g", "version": "1:1.2.13.dfsg-1", "arch": "amd64", "source": "zlib"},
    {"type": "deb", "name": "tar", "version": "1.34+dfsg-1.2+b1", "arch": "amd64", "source": "tar"},
    {"type": "deb", "name": "base-files", "version": "12.4+deb12u5", "arch": "amd64"},
    {
        "type": "pypi",
        "name": "Jinja2",
        "version": "3.1.2",
        "database": f"{SITE}/Jinja2-3.1.2.dist-info/METADATA",
    },
    {
        "type": "pypi",
        "name": "requests",
        "version": "2.31.0",
        "database": f"{SITE}/requests-2.31.0.dist-info/METADATA",
    },
]
ALPINE_PACKAGES = [
    {"type": "apk", "name": "libcrypto3", "version": "3.1.4-r1", "arch": "x86_64", "source": "openssl"},
    {"type": "apk", "name": "musl", "version": "1.2.4-r2", "arch": "x86_64", "source": "musl"},
]
ALMA_PACKAGES = [
    {
        "type": "rpm",
        "name": "openssl-libs",
        "version": "3.0.7-24.el9",
        "epoch": "1",
        "arch": "x86_64",
        "source": "openssl",
        "database": "var/lib/rpm/rpmdb.sqlite",
    }
]


def records() -> list[dict]:
    """Every range kind, aliases, withdrawn, several ranges, versions lists; dpkg, apk, rpm, PEP 440."""
    return [
        # fixed above the installed version; the DSA is the same vulnerability (aliases)
        record(
            "CVE-2024-0001",
            "Debian:12",
            "openssl",
            [ecosystem_range(("introduced", "0"), ("fixed", "3.0.13-1~deb12u1"))],
            cvss=CVSS_HIGH,
        ),
        record(
            "DSA-5600-1",
            "Debian:12",
            "openssl",
            [ecosystem_range(("introduced", "0"), ("fixed", "3.0.13-1~deb12u1"))],
            aliases=["CVE-2024-0001"],
        ),
        # fixed equal to the installed version: not affected
        record(
            "CVE-2024-0002",
            "Debian:12",
            "glibc",
            [ecosystem_range(("introduced", "0"), ("fixed", "2.36-9+deb12u4"))],
            cvss=CVSS_CRITICAL,
        ),
        # last_affected = installed: affected, no fix
        record(
            "CVE-2024-0003",
            "Debian:12",
            "glibc",
            [ecosystem_range(("introduced", "2.36-1"), ("last_affected", "2.36-9+deb12u4"))],
        ),
        # two ranges, epochs: the second holds the installed version
        record(
            "CVE-2024-0004",
            "Debian:12",
            "zlib",
            [
                ecosystem_range(("introduced", "0"), ("fixed", "1:1.2.11-1")),
                ecosystem_range(("introduced", "1:1.2.13.dfsg-1"), ("fixed", "1:1.3-1")),
            ],
            cvss=CVSS_MEDIUM,
        ),
        # another release of Debian
        record(
            "CVE-2024-0005",
            "Debian:11",
            "openssl",
            [ecosystem_range(("introduced", "0"))],
            cvss=CVSS_CRITICAL,
        ),
        # withdrawn
        record(
            "DEBIAN-CVE-2024-0006",
            "Debian:12",
            "tar",
            [ecosystem_range(("introduced", "0"))],
            withdrawn="2026-02-01T00:00:00Z",
        ),
        # binNMU (+b1) of the fixed source version: not affected
        record(
            "CVE-2024-0007",
            "Debian:12",
            "tar",
            [ecosystem_range(("introduced", "0"), ("fixed", "1.34+dfsg-1.2"))],
            cvss=CVSS_HIGH,
        ),
        # a versions list and a range, merged by aliases into the CVE; GitHub's own severity
        record(
            "PYSEC-2024-1", "PyPI", "jinja2", versions=["3.1.2", "3.1.3"], aliases=["GHSA-h5c8-rqwp-cp95"]
        ),
        record(
            "GHSA-h5c8-rqwp-cp95",
            "PyPI",
            "Jinja2",
            [ecosystem_range(("introduced", "0"), ("fixed", "3.1.4"))],
            aliases=["CVE-2024-0008"],
            database_specific={"severity": "MODERATE"},
        ),
        # limit: versions at or above it are not in the range
        record(
            "GHSA-2222-3333-4444",
            "PyPI",
            "requests",
            [ecosystem_range(("introduced", "2.0.0"), ("limit", "2.30.0"))],
            cvss=CVSS_CRITICAL,
        ),
        # SEMVER range, CVSS 4.0
        record(
            "GHSA-5555-6666-7777",
            "PyPI",
            "requests",
            [ecosystem_range(("introduced", "2.31.0"), ("fixed", "2.32.0"), kind="SEMVER")],
            cvss=CVSS4_HIGH,
        ),
        # apk: -r1 < -r5, -r2 < -r10
        record(
            "CVE-2024-0009",
            "Alpine:v3.19",
            "openssl",
            [ecosystem_range(("introduced", "0"), ("fixed", "3.1.4-r5"))],
            cvss=CVSS_CRITICAL,
        ),
        record(
            "CVE-2024-0011",
            "Alpine:v3.19",
            "musl",
            [ecosystem_range(("introduced", "0"), ("fixed", "1.2.4-r10"))],
            severity=[{"type": "CVSS_V2", "score": "AV:N/AC:L/Au:N/C:P/I:P/A:P"}],
        ),
        # rpm with epoch
        record(
            "ALSA-2024:0010",
            "AlmaLinux:9",
            "openssl-libs",
            [ecosystem_range(("introduced", "0"), ("fixed", "1:3.0.7-25.el9"))],
            aliases=["CVE-2024-0010"],
            cvss=CVSS_LOW,
        ),
        # a GIT range names commits: not evaluated
        record(
            "OSV-2024-0012",
            "Debian:12",
            "openssl",
            [
                {
                    "type": "GIT",
                    "repo": "https://github.com/openssl/openssl",
                    "events": [{"introduced": "0"}, {"fixed": "abc123"}],
                }
            ],
        ),
    ]


EXPECTED = {
    # (image, package, id, aliases, fixed, severity)
    ("debian-app", "libssl3", "CVE-2024-0001", ("DSA-5600-1",), "3.0.13-1~deb12u1", "high"),
    ("debian-app", "libc6", "CVE-2024-0003", (), None, "unknown"),
    ("debian-app", "zlib1g", "CVE-2024-0004", (), "1:1.3-1", "medium"),
    ("debian-app", "Jinja2", "CVE-2024-0008", ("GHSA-h5c8-rqwp-cp95", "PYSEC-2024-1"), "3.1.4", "medium"),
    ("debian-app", "requests", "GHSA-5555-6666-7777", (), "2.32.0", "high"),
    ("alpine-app", "libcrypto3", "CVE-2024-0009", (), "3.1.4-r5", "critical"),
    ("alpine-app", "musl", "CVE-2024-0011", (), "1.2.4-r10", "high"),
    ("alma-app", "openssl-libs", "CVE-2024-0010", ("ALSA-2024:0010",), "1:3.0.7-25.el9", "low"),
}


def cli(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "audit", *map(str, args)], capture_output=True, text=True, timeout=300
    )


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """An OSV export, its index, and a build manifest of three images (Debian, Alpine, AlmaLinux)."""
    root = tmp_path_factory.mktemp("vulns")
    export = write_zip(root / "all.zip", records())
    manifest = write_manifest(
        root / "loader.json",
        [
            image("debian-app", DEB12, DEBIAN_PACKAGES),
            image("alpine-app", ALPINE, ALPINE_PACKAGES),
            image("alma-app", ALMA, ALMA_PACKAGES),
        ],
    )
    result = cli("vulndb", "import", export, "--db", root / "osv.db")
    assert result.returncode == 0, result.stderr
    return {"root": root, "export": export, "db": root / "osv.db", "manifest": manifest}


def rows(report: dict) -> set[tuple]:
    return {
        (
            f["image"].split(" ")[0].rsplit("/", 1)[-1].split(":")[0],
            f["package"],
            f["id"],
            tuple(f["aliases"]),
            f["fixed"],
            f["severity"],
        )
        for f in report["findings"]
    }


def audit_json(world: dict[str, Path], *args: object) -> tuple[int, dict, str]:
    result = cli("audit", world["manifest"], "--db", world["db"], "--json", *args)
    assert result.returncode in (0, 1), result.stderr
    return result.returncode, json.loads(result.stdout), result.stderr


def test_test_records_follow_the_osv_schema() -> None:
    """The records the tests write are valid OSV, and the schema file can fail."""
    for doc in records():
        assert schema_errors(doc) == [], doc["id"]
    bad = record(
        "CVE-2024-9999",
        "Debian:12",
        "x",
        [ecosystem_range(("introduced", "0"), ("fixed", "1"), ("last_affected", "2"))],
    )
    assert schema_errors(bad)
    assert schema_errors({"id": "CVE-1", "modified": "yesterday"})


def test_audit_finds_exactly_the_expected_findings(world) -> None:
    status, report, stderr = audit_json(world)
    assert status == 0
    assert rows(report) == EXPECTED
    assert report["snapshot"]["records"] == len(records())
    assert report["snapshot"]["withdrawn"] == 1
    assert "days old" in stderr  # the snapshot's age, on stderr only
    libssl = next(f for f in report["findings"] if f["package"] == "libssl3")
    assert libssl["records"] == ["CVE-2024-0001", "DSA-5600-1"]
    assert libssl["source_package"] == "openssl" and libssl["ecosystem"] == "Debian:12"


@pytest.mark.parametrize(
    ("args", "status", "failed"),
    [
        ((), 0, set()),
        (("--fail-on", "critical"), 1, {"CVE-2024-0009"}),
        (
            ("--fail-on", "high"),
            1,
            {"CVE-2024-0001", "GHSA-5555-6666-7777", "CVE-2024-0009", "CVE-2024-0011"},
        ),
        (
            ("--fail-on", "low"),
            1,
            {f[2] for f in EXPECTED} - {"CVE-2024-0003"},
        ),
        (("--fail-on", "low", "--fail-on-unknown"), 1, {f[2] for f in EXPECTED}),
        (
            ("--fail-on", "low", "--fail-on-unknown", "--ignore-unfixed"),
            1,
            {f[2] for f in EXPECTED} - {"CVE-2024-0003"},
        ),
    ],
)
def test_gate_exit_status_and_failing_findings(world, args, status, failed) -> None:
    got, report, stderr = audit_json(world, *args)
    assert got == status, stderr
    assert {f["id"] for f in report["findings"] if f["failed"]} == failed


def test_gate_from_the_policy_file(world) -> None:
    policy = world["root"] / "policy.toml"
    policy.write_text('version = 1\n[vulnerabilities]\nfail_on = "critical"\nignore_unfixed = false\n')
    status, report, _ = audit_json(world, "-p", policy)
    assert status == 1 and {f["id"] for f in report["findings"] if f["failed"]} == {"CVE-2024-0009"}
    status, _, _ = audit_json(world, "-p", policy, "--fail-on", "high")
    assert status == 1
    policy.write_text('version = 1\n[vulnerabilities]\nfail_on = "severe"\n')
    bad = cli("audit", world["manifest"], "--db", world["db"], "-p", policy)
    assert bad.returncode == 2 and "fail_on" in bad.stderr and "Traceback" not in bad.stderr


def test_vex_suppresses_and_lists_stale_triage(world) -> None:
    debian = next(f for f in audit_json(world)[1]["findings"] if f["package"] == "libssl3")
    alpine = next(f for f in audit_json(world)[1]["findings"] if f["package"] == "libcrypto3")
    musl = next(f for f in audit_json(world)[1]["findings"] if f["package"] == "musl")
    cdx = world["root"] / "triage.cdx.json"
    cdx.write_text(
        json.dumps(
            {
                "bomFormat": "CycloneDX",
                "specVersion": "1.6",
                "vulnerabilities": [
                    {
                        "id": "CVE-2024-0009",
                        "analysis": {"state": "not_affected", "justification": "code_not_reachable"},
                        "affects": [{"ref": alpine["bom_ref"]}],
                    },
                    {
                        "id": "CVE-2024-0011",
                        "analysis": {"state": "false_positive"},
                        "affects": [{"ref": musl["purl"]}],
                    },
                    {
                        "id": "CVE-2099-0001",
                        "analysis": {"state": "not_affected", "justification": "code_not_present"},
                        "affects": [{"ref": alpine["bom_ref"]}],
                    },
                ],
            }
        )
    )
    openvex = world["root"] / "triage.openvex.json"
    openvex.write_text(
        json.dumps(
            {
                "@context": "https://openvex.dev/ns/v0.2.0",
                "@id": "https://example.com/vex/1",
                "author": "team",
                "timestamp": "2026-11-01T00:00:00Z",
                "version": 1,
                "statements": [
                    {  # by an alias, the image with the package as subcomponent
                        "vulnerability": {"name": "DSA-5600-1"},
                        "products": [
                            {"@id": debian["image_ref"], "subcomponents": [{"@id": "pkg:deb/debian/libssl3"}]}
                        ],
                        "status": "not_affected",
                        "justification": "vulnerable_code_not_in_execute_path",
                    },
                    {  # a finding of another package: stale
                        "vulnerability": {"name": "CVE-2024-0004"},
                        "products": [{"@id": "pkg:deb/debian/libssl3"}],
                        "status": "not_affected",
                        "justification": "vulnerable_code_not_present",
                    },
                ],
            }
        )
    )
    status, report, _ = audit_json(world, "--vex", cdx, "--vex", openvex, "--fail-on", "high")
    states = {f["id"]: (f["analysis"] or {}).get("state") for f in report["findings"]}
    assert states["CVE-2024-0009"] == "not_affected"
    assert states["CVE-2024-0011"] == "false_positive"
    assert states["CVE-2024-0001"] == "not_affected"
    assert states["CVE-2024-0004"] is None
    assert {f["id"] for f in report["findings"] if f["failed"]} == {"GHSA-5555-6666-7777"}
    assert status == 1
    stale = {(t["vulnerability"], t["source"]) for t in report["stale_triage"]}
    assert stale == {
        ("CVE-2099-0001", "triage.cdx.json: vulnerabilities[2]"),
        ("CVE-2024-0004", "triage.openvex.json: statements[1]"),
    }
    table = cli("audit", world["manifest"], "--db", world["db"], "--vex", cdx, "--vex", openvex)
    assert "not_affected (code_not_reachable)" in table.stdout
    assert "stale triage" in table.stderr and "CVE-2099-0001" in table.stderr


def test_vex_without_justification_is_bad_input(world) -> None:
    vex = world["root"] / "unjustified.json"
    vex.write_text(
        json.dumps(
            {
                "bomFormat": "CycloneDX",
                "vulnerabilities": [{"id": "CVE-1", "analysis": {"state": "not_affected"}}],
            }
        )
    )
    result = cli("audit", world["manifest"], "--db", world["db"], "--vex", vex)
    assert result.returncode == 2 and "unjustified.json" in result.stderr and "justification" in result.stderr


def test_cyclonedx_output_is_valid_deterministic_and_points_into_images(world, tmp_path) -> None:
    first, second = tmp_path / "a.cdx.json", tmp_path / "b.cdx.json"
    for out in (first, second):
        result = cli("audit", world["manifest"], "--db", world["db"], "-o", out)
        assert result.returncode == 0, result.stderr
    assert first.read_bytes() == second.read_bytes()
    doc = json.loads(first.read_text())
    assert schema.validate(doc) is None
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(first.read_text()) is None
    packages = {}
    for container in doc["components"]:
        for inner in container.get("components", []):
            packages[inner["bom-ref"]] = (container["bom-ref"], inner["name"])
    vulns = {(v["id"], packages[v["affects"][0]["ref"]][1]) for v in doc["vulnerabilities"]}
    assert vulns == {(f[2], f[1]) for f in EXPECTED}
    libssl = next(v for v in doc["vulnerabilities"] if v["id"] == "CVE-2024-0001")
    assert [r["id"] for r in libssl["references"]] == ["DSA-5600-1"]
    assert libssl["ratings"][0]["severity"] == "high" and libssl["ratings"][0]["method"] == "CVSSv31"
    props = {p["name"]: p["value"] for p in doc["metadata"]["properties"]}
    assert (
        props["container-lock:vulndb-snapshot"]
        == json.loads(cli("vulndb", "show", "--db", world["db"], "--json").stdout)["id"]
    )
    # --json is byte-identical too
    one, two = (cli("audit", world["manifest"], "--db", world["db"], "--json").stdout for _ in range(2))
    assert one == two


def test_audit_of_the_sbom_equals_the_audit_of_the_manifest(world, tmp_path) -> None:
    sbom_file = tmp_path / "sbom.cdx.json"
    assert cli("sbom", world["manifest"], "-o", sbom_file).returncode == 0
    from_sbom = cli("audit", sbom_file, "--db", world["db"], "--json")
    assert from_sbom.returncode == 0, from_sbom.stderr
    assert json.loads(from_sbom.stdout) == audit_json(world)[1]


def test_sbom_with_db_includes_the_findings(world, tmp_path) -> None:
    plain, audited = tmp_path / "plain.cdx.json", tmp_path / "audited.cdx.json"
    assert cli("sbom", world["manifest"], "-o", plain).returncode == 0
    result = cli("sbom", world["manifest"], "--db", world["db"], "-o", audited)
    assert result.returncode == 0, result.stderr
    doc = json.loads(audited.read_text())
    assert schema.validate(doc) is None
    assert len(doc["vulnerabilities"]) == len(EXPECTED)
    base = json.loads(plain.read_text())
    doc.pop("vulnerabilities")
    doc["metadata"]["properties"] = [p for p in doc["metadata"]["properties"] if "vulndb" not in p["name"]]
    base["metadata"].setdefault("properties", [])
    doc["metadata"].setdefault("properties", [])
    assert doc == base  # the same SBOM plus the findings and the snapshot
    direct = tmp_path / "direct.cdx.json"
    assert cli("audit", world["manifest"], "--db", world["db"], "-o", direct).returncode == 0
    assert direct.read_bytes() == audited.read_bytes()


def test_import_is_reproducible_and_names_bad_records(world, tmp_path) -> None:
    again = tmp_path / "again.db"
    assert cli("vulndb", "import", world["export"], "--db", again).returncode == 0
    assert again.read_bytes() == world["db"].read_bytes()
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "good.json").write_text(json.dumps(records()[0]))
    (broken / "nojson.json").write_text("{not json")
    bad = record("CVE-2024-7777", "Debian:12", "x", [ecosystem_range(("introduced", "0"))])
    bad["affected"][0]["ranges"][0]["events"].append({"fixed": "1", "introduced": "2"})
    (broken / "CVE-2024-7777.json").write_text(json.dumps(bad))
    (broken / "noid.json").write_text(json.dumps({"modified": "2026-01-01T00:00:00Z"}))
    result = cli("vulndb", "import", broken, "--db", tmp_path / "b.db", "--json")
    assert result.returncode == 0, result.stderr
    assert "broken: CVE-2024-7777.json: CVE-2024-7777: affected[0].ranges[0].events[1]" in result.stderr
    assert "broken: nojson.json: record without id: not JSON" in result.stderr
    assert "broken: noid.json: record without id: no 'id'" in result.stderr
    snapshot = json.loads(result.stdout)
    assert snapshot["records"] == 1 and snapshot["skipped"] == 3 and len(snapshot["problems"]) == 3
    assert snapshot["newest_modified"] == "2026-11-30T12:00:00Z"


def test_corrupt_zip_is_bad_input_and_writes_nothing(world, tmp_path) -> None:
    corrupt = tmp_path / "all.zip"
    data = bytearray(world["export"].read_bytes())
    data[200:400] = b"\0" * 200  # inside the first member's compressed data
    corrupt.write_bytes(bytes(data))
    target = tmp_path / "osv.db"
    target.write_bytes(world["db"].read_bytes())
    result = cli("vulndb", "import", corrupt, "--db", target)
    assert result.returncode == 2, result.stderr
    assert "all.zip" in result.stderr and "Traceback" not in result.stderr
    assert target.read_bytes() == world["db"].read_bytes()  # the old index is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["all.zip", "osv.db"]
    notzip = tmp_path / "export.zip"
    notzip.write_text("hello")
    result = cli("vulndb", "import", notzip, "--db", tmp_path / "new.db")
    assert result.returncode == 2 and "not a zip file" in result.stderr
    assert not (tmp_path / "new.db").exists()


@pytest.mark.parametrize(
    ("args", "named", "reason"),
    [
        (("--db", "missing.db"), "missing.db", "no such vulnerability index"),
        (("--db", "{manifest}"), "{manifest}", "not a container-lock vulnerability index"),
        (("--vex", "missing.json"), "missing.json", "no such VEX file"),
    ],
)
def test_bad_input_exits_2_naming_it(world, args, named, reason) -> None:
    """The message names the one bad argument (not just any argument given) and what is wrong with it."""
    args = tuple(a.format(manifest=world["manifest"]) for a in args)
    named = named.format(manifest=world["manifest"])
    if "--db" not in args:
        args = (*args, "--db", str(world["db"]))
    result = cli("audit", world["manifest"], *args)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert f"{named}: {reason}" in result.stderr, result.stderr


def test_max_db_age_is_an_opt_in_gate(world) -> None:
    assert audit_json(world)[0] == 0
    status, _, stderr = audit_json(world, "--max-db-age", "0")
    assert status == 1 and "older than --max-db-age" in stderr
    assert audit_json(world, "--max-db-age", "100000")[0] == 0


def _affected(*ranges, versions=()) -> osv.Affected:
    doc = record("CVE-2024-1", "Debian:12", "x", list(ranges), versions=versions)
    return osv.parse(doc).affected[0]


@pytest.mark.parametrize(
    ("installed", "ranges", "versions", "fixed"),
    [
        ("1.0-1", [ecosystem_range(("introduced", "0"), ("fixed", "1.0-2"))], (), "1.0-2"),
        ("1.0-2", [ecosystem_range(("introduced", "0"), ("fixed", "1.0-2"))], (), False),
        ("0.9", [ecosystem_range(("introduced", "1.0"), ("fixed", "2.0"))], (), False),
        ("1.5", [ecosystem_range(("introduced", "1.0"), ("last_affected", "1.5"))], (), None),
        ("1.6", [ecosystem_range(("introduced", "1.0"), ("last_affected", "1.5"))], (), False),
        ("1.5", [ecosystem_range(("introduced", "1.0"), ("limit", "1.5"))], (), False),
        ("1.4", [ecosystem_range(("introduced", "1.0"), ("limit", "1.5"))], (), None),
        # one range, reintroduced
        (
            "3.1",
            [ecosystem_range(("introduced", "0"), ("fixed", "2.0"), ("introduced", "3.0"), ("fixed", "3.2"))],
            (),
            "3.2",
        ),
        (
            "2.5",
            [ecosystem_range(("introduced", "0"), ("fixed", "2.0"), ("introduced", "3.0"), ("fixed", "3.2"))],
            (),
            False,
        ),
        ("1.0~rc1", [ecosystem_range(("introduced", "1.0~beta"), ("fixed", "1.0"))], (), "1.0"),
        ("7", [], ("5", "7"), None),
        ("6", [], ("5", "7"), False),
    ],
)
def test_range_rules(installed, ranges, versions, fixed) -> None:
    found, notes = match(installed, "deb", _affected(*ranges, versions=versions))
    assert notes == []
    assert (found.fixed if found else False) == fixed


def test_a_range_with_an_unreadable_version_is_noted_not_guessed() -> None:
    found, notes = match(
        "1.0", "pypi", _affected(ecosystem_range(("introduced", "0"), ("fixed", "not a version!")))
    )
    assert found is None and "not evaluated" in notes[0]


def test_db_rejects_files_that_are_not_an_index(tmp_path) -> None:
    fake = tmp_path / "fake.db"
    fake.write_text("SQLite? no")
    with pytest.raises(vulndb.DbError, match=r"fake\.db"):
        vulndb.Index(fake)


def test_zip_member_names_do_not_change_the_index(tmp_path) -> None:
    """Records from a zip and from a directory of the same files give the same records."""
    export = write_zip(tmp_path / "all.zip", records())
    directory = tmp_path / "dir"
    directory.mkdir()
    with zipfile.ZipFile(export) as archive:
        archive.extractall(directory)
    a, _ = vulndb.build([export], tmp_path / "a.db")
    b, _ = vulndb.build([directory], tmp_path / "b.db")
    assert a.records == b.records and a.newest == b.newest and a.id != b.id  # different sources, same content
    ia, ib = vulndb.Index(tmp_path / "a.db"), vulndb.Index(tmp_path / "b.db")
    assert ia.listed("Debian:12", ["openssl"]) == ib.listed("Debian:12", ["openssl"])
    assert ia.order("Debian:12", "openssl").ranks == ib.order("Debian:12", "openssl").ranks  # type: ignore[union-attr]


# Debian versions: [epoch:]upstream[-revision], with ~ (before anything), + and . in both parts.
_upstream = st.from_regex(r"[0-9][0-9a-z.+~]{0,6}", fullmatch=True)
_revision = st.from_regex(r"[0-9a-z+~][0-9a-z.+~]{0,4}", fullmatch=True)


@st.composite
def debian_versions(draw: st.DrawFn) -> str:
    epoch = draw(st.sampled_from(["", "", "1:", "2:"]))
    upstream = draw(_upstream)
    revision = draw(st.one_of(st.just(""), _revision.map(lambda r: f"-{r}")))
    return f"{epoch}{upstream}{revision}"


def _similar(draw: st.DrawFn, first: str) -> str:
    """A second version close to the first (shares a prefix), so equal and near orders are tried."""
    cut = draw(st.integers(0, len(first)))
    rest = draw(st.from_regex(r"[0-9a-z.+~]{0,3}", fullmatch=True))
    return first[:cut] + rest


def dpkg_order(a: str, b: str) -> int:
    def holds(op: str) -> bool:
        result = subprocess.run(["dpkg", "--compare-versions", a, op, b], capture_output=True, check=False)
        assert result.returncode in (0, 1), result.stderr
        return result.returncode == 0

    return -1 if holds("lt") else (0 if holds("eq") else 1)


@settings(max_examples=300, deadline=None)
@given(data=st.data(), first=debian_versions())
def test_debian_order_is_dpkgs(data: st.DataObject, first: str) -> None:
    """The dpkg order used for Debian records equals `dpkg --compare-versions` (epochs, ~, revisions)."""
    second = data.draw(
        st.one_of(debian_versions(), st.just(first), st.composite(lambda draw: _similar(draw, first))())
    )
    valid = subprocess.run(["dpkg", "--validate-version", second], capture_output=True, check=False)
    assume(valid.returncode == 0 and ":" not in second.split(":", 1)[-1] and not second.endswith("-"))
    assert compare("deb", first, second) == dpkg_order(first, second), (first, second)


_pep440 = st.builds(
    lambda epoch, release, pre, post, dev, local: f"{epoch}{release}{pre}{post}{dev}{local}",
    st.sampled_from(["", "", "1!"]),
    st.lists(st.integers(0, 12), min_size=1, max_size=4).map(lambda parts: ".".join(map(str, parts))),
    st.sampled_from(["", "", "a1", "b2", "rc1", "rc10"]),
    st.sampled_from(["", "", ".post1", ".post2"]),
    st.sampled_from(["", "", ".dev0", ".dev3"]),
    st.sampled_from(["", "", "+local.1", "+ubuntu2"]),
)


@settings(max_examples=500, deadline=None)
@given(_pep440, _pep440)
def test_pep440_order_is_packagings(a: str, b: str) -> None:
    """PyPI records are ordered by PEP 440, as packaging orders them."""
    from packaging.version import Version

    expected = -1 if Version(a) < Version(b) else (0 if Version(a) == Version(b) else 1)
    assert compare("pypi", a, b) == expected


@pytest.mark.parametrize(
    ("kind", "lower", "higher"),
    [
        ("apk", "1.2.4-r2", "1.2.4-r10"),
        ("apk", "3.1.4_rc1-r0", "3.1.4-r0"),
        ("rpm", "3.0.7-24.el9", "1:3.0.1-1.el9"),
        ("rpm", "1.0-1.el9", "1.0-1.el9_3"),
        ("semver", "1.2.3-alpha.1", "1.2.3"),
        ("deb", "1.0~rc1-1", "1.0-1"),
    ],
)
def test_other_orders_from_their_libraries(kind: str, lower: str, higher: str) -> None:
    assert compare(kind, lower, higher) == -1 and compare(kind, higher, lower) == 1
    assert compare(kind, lower, lower) == 0


@pytest.mark.parametrize("command", [("audit",), ("vulndb",), ("vulndb", "import"), ("vulndb", "show")])
def test_help_gives_the_exit_statuses(command) -> None:
    result = cli(*command, "--help")
    text = " ".join(result.stdout.split())
    assert result.returncode == 0
    for code in ("0 success", "1 the check failed", "a vulnerability at or above --fail-on", "2 bad input"):
        assert code in text, text


class _Data:
    """The few variables the end-of-build handler reads."""

    def __init__(self, **values: str) -> None:
        self.values = values

    def getVar(self, name: str) -> str | None:
        return self.values.get(name)


class _Completed:
    def getFailures(self) -> int:
        return 0


def test_end_of_build_sbom_includes_the_findings_when_vulndb_is_set(world, tmp_path) -> None:
    """BuildCompleted runs `sbom --deploy-dir … --db ${CONTAINER_LOCK_VULNDB}`: the same bytes as the CLI."""
    from containerlock.build_hooks import sbom as build_sbom

    deploy = tmp_path / "container-lock"
    deploy.mkdir()
    (deploy / "loader.json").write_bytes(world["manifest"].read_bytes())
    target = deploy / "container-images.cdx.json"
    values = {
        "CONTAINER_LOCK_SBOM": "1",
        "CONTAINER_LOCK_DEPLOY_DIR": str(deploy),
        "CONTAINER_LOCK_SBOM_CLI": f"{sys.executable} -m audit",
        "CONTAINER_LOCK_SBOM_FILE": str(target),
    }
    build_sbom.write_sbom(_Completed(), _Data(**values, CONTAINER_LOCK_VULNDB=""))
    assert "vulnerabilities" not in json.loads(target.read_text())
    build_sbom.write_sbom(_Completed(), _Data(**values, CONTAINER_LOCK_VULNDB=str(world["db"])))
    doc = json.loads(target.read_text())
    assert {v["id"] for v in doc["vulnerabilities"]} == {f[2] for f in EXPECTED}
    cli_text = cli("sbom", "--deploy-dir", deploy, "--db", world["db"]).stdout
    assert target.read_text() == cli_text


def test_dpkg_source_version_is_kept_where_it_differs() -> None:
    """`Source: util-linux (2.38.1-5+deb12u3)` (bsdutils has its own epoch): records use the source's."""
    from containerlock.contents import package_db
    from vulns.ecosystems import lookup

    status = (
        b"Package: bsdutils\nStatus: install ok installed\nVersion: 1:2.38.1-5+deb12u3\n"
        b"Architecture: amd64\nSource: util-linux (2.38.1-5+deb12u3)\n\n"
        b"Package: tar\nStatus: install ok installed\nVersion: 1.34+dfsg-1.2+b1\nArchitecture: amd64\n"
    )
    bsdutils, tar = package_db.dpkg(status, "status")
    assert (bsdutils.source, bsdutils.source_version) == ("util-linux", "2.38.1-5+deb12u3")
    assert (tar.source, tar.source_version) == (None, None)
    found = lookup("deb", "bsdutils", bsdutils.version, "util-linux", "debian-12", None, "2.38.1-5+deb12u3")
    assert found is not None and (found.names, found.version) == (("util-linux",), "2.38.1-5+deb12u3")
    binnmu = lookup("deb", "tar", tar.version, None, "debian-12")
    assert binnmu is not None and binnmu.version == "1.34+dfsg-1.2"


def test_vulnerabilities_json_is_what_the_library_writes(world) -> None:
    """The findings written directly (shared parts by the library once) equal cyclonedx-python-lib's
    output for every finding, triaged or not."""
    from vulns import audit, report
    from vulns.findings import Analysis

    result = audit.run(world["db"], [world["manifest"]])
    found = [
        f.triaged(Analysis("not_affected", "code_not_reachable", "the image never runs it")) if n % 2 else f
        for n, f in enumerate(result.findings)
    ]
    assert len(found) == len(EXPECTED)
    from dataclasses import replace

    from vulns.severity import Rating, cvss_rating

    several = (
        cvss_rating("CVSS_V2", "AV:N/AC:L/Au:N/C:P/I:P/A:P"),
        cvss_rating("CVSS_V3", CVSS_LOW),
        cvss_rating("CVSS_V3", "CVSS:3.0/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"),
        cvss_rating("CVSS_V4", CVSS4_HIGH),
        Rating("other", "medium"),
    )
    assert None not in several
    found.append(replace(found[0], vulnerability=replace(found[0].vulnerability, ratings=several)))
    direct = report.vulnerabilities(found)
    assert json.dumps(direct) == json.dumps(report.library_vulnerabilities(found))


def test_records_read_back_from_the_index_are_those_imported() -> None:
    """The index's records are read without checking them again: the same as the checked parse."""
    for doc in records():
        assert osv.trusted(json.loads(json.dumps(doc))) == osv.parse(doc), doc["id"]


@settings(max_examples=300, deadline=None)
@given(
    data=st.data(),
    ranges=st.lists(
        st.lists(
            st.tuples(st.sampled_from(["introduced", "fixed", "last_affected", "limit"]), debian_versions()),
            min_size=1,
            max_size=4,
        ),
        min_size=1,
        max_size=3,
    ),
    zero=st.booleans(),
)
def test_ranges_by_rank_equal_ranges_by_comparison(data, ranges, zero) -> None:
    """The index's per-package order (ranks, a binary search for the installed version) gives the
    same answer as comparing the installed version with each event."""
    from vulns.db import Order, ranked_versions

    built = []
    for events in ranges:
        events = [("introduced", "0" if zero else events[0][1]), *events]
        if any(k == "fixed" for k, _ in events) and any(k == "last_affected" for k, _ in events):
            events = [(k, v) for k, v in events if k != "last_affected"]
        built.append(osv.Range("ECOSYSTEM", tuple(events)))
    affected = osv.Affected("Debian:12", "x", tuple(built), (), ())
    names = [v for r in built for k, v in r.events if (k, v) != ("introduced", "0")]
    events_or_any = st.one_of(st.sampled_from(names), debian_versions()) if names else debian_versions()
    installed = data.draw(events_or_any)  # the events' own versions too
    order = Order("deb", ranked_versions("deb", names))
    by_rank = match(installed, "deb", affected, order.ranks, order.position(installed))
    by_comparison = match(installed, "deb", affected)
    assert by_rank == by_comparison


def test_sources_without_a_usable_record_write_no_index(tmp_path) -> None:
    """An empty index would audit every image as clean: importing nothing usable is bad input."""
    records = tmp_path / "records"
    records.mkdir()
    (records / "broken.json").write_text('{"modified": "2026-11-30T12:00:00Z"}')
    target = tmp_path / "osv.db"
    result = cli("vulndb", "import", records, "--db", target)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "no usable OSV record (1 skipped:" in result.stderr and "broken.json" in result.stderr
    assert "Traceback" not in result.stderr and not target.exists()
