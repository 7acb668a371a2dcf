"""Records shaped like the real distribution exports, which link an advisory to its CVE through
`upstream` (OSV schema 1.7), not `aliases`: one flaw is one finding, shown by its CVE, and the
team's triage and the gate name it by any of its ids.

The records are made up (package names, versions, ids); their SHAPE is copied from:
- DSA / DLA: osv.dev's Debian converter (google/osv.dev, vulnfeeds/tools/debian/debian_converter/
  convert_debian.py): `summary` "<source> - security update", empty `aliases` and `related`,
  `upstream` the CVEs and their DEBIAN-CVE records, one ECOSYSTEM range `introduced 0` (+ `fixed`)
  per release, an ADVISORY reference, no severity;
- DEBIAN-CVE: osv.dev's security-tracker converter (google/osv.dev, vulnfeeds/cmd/debian, its
  main_test.go): `upstream: [CVE-X]`, `details`, a top-level CVSS_V3 severity, per release an
  affected entry with `ecosystem_specific: {"urgency": …}`, the tracker as ADVISORY;
- USN: Canonical's OSV export (canonical/ubuntu-security-notices, osv/usn/USN-2330-1.json):
  `schema_version` 1.7.0, `upstream` the UBUNTU-CVE records of every CVE it fixes, a purl with
  `arch=source&distro=…`, a range and a `versions` list, `ecosystem_specific` binaries and
  availability;
- ALPINE-CVE: osv.dev's Alpine records (`schema_version` 1.7.x, `upstream: [CVE-X]`, `details`
  and no `summary`, the package purl `arch=source`).
A `versions` list without ranges is in DEBIAN-CVE-2026-31003.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.harness.osv import CVSS_HIGH, CVSS_MEDIUM, image, schema_errors, write_manifest, write_zip
from vulns import osv
from vulns.findings import _groups

DEB11 = {"ID": "debian", "VERSION_ID": "11", "PRETTY_NAME": "Debian GNU/Linux 11 (bullseye)"}
DEB12 = {"ID": "debian", "VERSION_ID": "12", "PRETTY_NAME": "Debian GNU/Linux 12 (bookworm)"}
ALPINE = {"ID": "alpine", "VERSION_ID": "3.19.1", "PRETTY_NAME": "Alpine Linux v3.19"}
MODIFIED = "2026-11-30T12:00:00Z"
TRACKER = "https://security-tracker.debian.org/tracker/"


def _range(fixed: str | None) -> list[dict[str, Any]]:
    events: list[dict[str, str]] = [{"introduced": "0"}]
    if fixed:
        events.append({"fixed": fixed})
    return [{"type": "ECOSYSTEM", "events": events}]


def debian_advisory(adv_id: str, upstream: list[str], fixes: dict[str, str]) -> dict[str, Any]:
    """A DSA or DLA as osv.dev's Debian converter writes it."""
    return {
        "id": adv_id,
        "summary": "frobnicate - security update",
        "details": "Several vulnerabilities were discovered in frobnicate.\n",
        "published": "2026-11-20T00:00:00Z",
        "modified": MODIFIED,
        "affected": [
            {"package": {"ecosystem": f"Debian:{release}", "name": "frobnicate"}, "ranges": _range(fixed)}
            for release, fixed in fixes.items()
        ],
        "aliases": [],
        "related": [],
        "upstream": upstream,
        "references": [
            {"type": "ADVISORY", "url": f"https://www.debian.org/security/2026/{adv_id.lower()[:8]}"}
        ],
    }


def debian_cve(cve: str, cvss: str | None, entries: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """A DEBIAN-CVE record as osv.dev's security-tracker converter writes it."""
    doc: dict[str, Any] = {
        "id": f"DEBIAN-{cve}",
        "upstream": [cve],
        "modified": MODIFIED,
        "published": "2026-11-01T00:00:00Z",
        "details": f"{cve}: a flaw in frobnicate's parser.",
        "affected": [
            {"package": {"ecosystem": f"Debian:{release}", "name": "frobnicate"}, **entry}
            for release, entry in entries.items()
        ],
        "references": [{"type": "ADVISORY", "url": TRACKER + cve}],
    }
    if cvss:
        doc["severity"] = [{"type": "CVSS_V3", "score": cvss}]
    return doc


def urgency(level: str, fixed: str | None = None, versions: list[str] | None = None) -> dict[str, Any]:
    entry: dict[str, Any] = {"ecosystem_specific": {"urgency": level}}
    if versions is None:
        entry["ranges"] = _range(fixed)
    else:
        entry["versions"] = versions
    return entry


def records() -> list[dict[str, Any]]:
    return [
        # one CVE: the DSA (bookworm), the DLA (bullseye) and the tracker's record
        debian_advisory("DSA-9001-1", ["CVE-2026-31001", "DEBIAN-CVE-2026-31001"], {"12": "2.4.1-3+deb12u1"}),
        debian_advisory("DLA-4101-1", ["CVE-2026-31001", "DEBIAN-CVE-2026-31001"], {"11": "2.3.0-1+deb11u2"}),
        debian_cve(
            "CVE-2026-31001",
            CVSS_HIGH,
            {
                "11": urgency("not yet assigned", "2.3.0-1+deb11u2"),
                "12": urgency("not yet assigned", "2.4.1-3+deb12u1"),
                "13": urgency("not yet assigned", "2.5.0-1"),
            },
        ),
        # one DSA fixing two CVEs
        debian_advisory(
            "DSA-9002-1",
            ["CVE-2026-31002", "CVE-2026-31003", "DEBIAN-CVE-2026-31002", "DEBIAN-CVE-2026-31003"],
            {"12": "2.4.1-3+deb12u2"},
        ),
        debian_cve("CVE-2026-31002", CVSS_MEDIUM, {"12": urgency("medium", "2.4.1-3+deb12u2")}),
        debian_cve("CVE-2026-31003", None, {"12": urgency("unimportant", versions=["2.4.1-2", "2.4.1-3"])}),
        {
            "schema_version": "1.7.3",
            "id": "ALPINE-CVE-2026-31004",
            "upstream": ["CVE-2026-31004"],
            "modified": MODIFIED,
            "published": "2026-11-02T00:00:00Z",
            "details": "zorp before 1.8.2-r1 reads past a buffer.",
            "affected": [
                {
                    "package": {
                        "ecosystem": "Alpine:v3.19",
                        "name": "zorp",
                        "purl": "pkg:apk/alpine/zorp?arch=source",
                    },
                    "ranges": _range("1.8.2-r1"),
                }
            ],
            "references": [
                {"type": "ADVISORY", "url": "https://security.alpinelinux.org/vuln/CVE-2026-31004"}
            ],
        },
    ]


def usn_records() -> list[dict[str, Any]]:
    """A USN fixing two CVEs and Ubuntu's records of them (Canonical's export)."""
    usn = {
        "schema_version": "1.7.0",
        "id": "USN-7001-1",
        "summary": "frobnicate vulnerabilities",
        "details": "Two flaws were fixed in frobnicate. (CVE-2026-31005, CVE-2026-31006)\n",
        "aliases": [],
        "upstream": ["UBUNTU-CVE-2026-31005", "UBUNTU-CVE-2026-31006"],
        "related": [],
        "published": "2026-11-21T10:00:00.123456Z",
        "modified": MODIFIED,
        "affected": [
            {
                "package": {
                    "ecosystem": "Ubuntu:24.04:LTS",
                    "name": "frobnicate",
                    "purl": "pkg:deb/ubuntu/frobnicate@2.4.1-3ubuntu0.1?arch=source&distro=noble",
                },
                "ranges": _range("2.4.1-3ubuntu0.1"),
                "versions": ["2.4.1-2", "2.4.1-3"],
                "ecosystem_specific": {
                    "binaries": [{"binary_name": "libfrob1", "binary_version": "2.4.1-3ubuntu0.1"}],
                    "availability": "No subscription required",
                },
            }
        ],
        "references": [{"type": "ADVISORY", "url": "https://ubuntu.com/security/notices/USN-7001-1"}],
    }
    cves = [
        {
            "schema_version": "1.7.0",
            "id": f"UBUNTU-{cve}",
            "upstream": [cve],
            "modified": MODIFIED,
            "details": f"{cve} in frobnicate.",
            "severity": [{"type": "Ubuntu", "score": "medium"}],
            "affected": usn["affected"],
        }
        for cve in ("CVE-2026-31005", "CVE-2026-31006")
    ]
    return [usn, *cves]


# (image, package, id, aliases, records, fixed, severity) — before: 8 findings, each record its own
# (DSA-9001-1, DEBIAN-CVE-2026-31001, DSA-9002-1, DEBIAN-CVE-2026-31002, DEBIAN-CVE-2026-31003,
# DLA-4101-1, DEBIAN-CVE-2026-31001, ALPINE-CVE-2026-31004).
EXPECTED = {
    (
        "deb12-app",
        "libfrob1",
        "CVE-2026-31001",
        ("DEBIAN-CVE-2026-31001", "DSA-9001-1"),
        ("DEBIAN-CVE-2026-31001", "DSA-9001-1"),
        "2.4.1-3+deb12u1",
        "high",
    ),
    (
        "deb12-app",
        "libfrob1",
        "CVE-2026-31002",
        ("DEBIAN-CVE-2026-31002", "DSA-9002-1"),
        ("DEBIAN-CVE-2026-31002", "DSA-9002-1"),
        "2.4.1-3+deb12u2",
        "medium",
    ),
    (
        "deb12-app",
        "libfrob1",
        "CVE-2026-31003",
        ("DEBIAN-CVE-2026-31003", "DSA-9002-1"),
        ("DEBIAN-CVE-2026-31003", "DSA-9002-1"),
        "2.4.1-3+deb12u2",
        "unknown",
    ),
    (
        "deb11-app",
        "libfrob1",
        "CVE-2026-31001",
        ("DEBIAN-CVE-2026-31001", "DLA-4101-1"),
        ("DEBIAN-CVE-2026-31001", "DLA-4101-1"),
        "2.3.0-1+deb11u2",
        "high",
    ),
    (
        "alpine-app",
        "zorp-libs",
        "CVE-2026-31004",
        ("ALPINE-CVE-2026-31004",),
        ("ALPINE-CVE-2026-31004",),
        "1.8.2-r1",
        "unknown",
    ),
}


def cli(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "audit", *map(str, args)], capture_output=True, text=True, timeout=300
    )


def _frob(version: str) -> dict[str, str]:
    return {"type": "deb", "name": "libfrob1", "version": version, "arch": "amd64", "source": "frobnicate"}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("upstream")
    export = write_zip(root / "all.zip", records())
    zorp = {"type": "apk", "name": "zorp-libs", "version": "1.8.2-r0", "arch": "x86_64", "source": "zorp"}
    manifest = write_manifest(
        root / "loader.json",
        [
            image("deb12-app", DEB12, [_frob("2.4.1-3")]),
            image("deb11-app", DEB11, [_frob("2.3.0-1+deb11u1")]),
            image("alpine-app", ALPINE, [zorp]),
        ],
    )
    result = cli("vulndb", "import", export, "--db", root / "osv.db")
    assert result.returncode == 0, result.stderr
    return {"root": root, "db": root / "osv.db", "manifest": manifest}


def audit_json(world: dict[str, Path], *args: object) -> tuple[int, dict[str, Any], str]:
    result = cli("audit", world["manifest"], "--db", world["db"], "--json", *args)
    assert result.returncode in (0, 1), result.stderr
    return result.returncode, json.loads(result.stdout), result.stderr


def _image(finding: dict[str, Any]) -> str:
    return finding["image"].split(" ")[0].rsplit("/", 1)[-1].split(":")[0]


def rows(report: dict[str, Any]) -> set[tuple[Any, ...]]:
    return {
        (
            _image(f),
            f["package"],
            f["id"],
            tuple(f["aliases"]),
            tuple(f["records"]),
            f["fixed"],
            f["severity"],
        )
        for f in report["findings"]
    }


def test_the_records_follow_the_osv_schema() -> None:
    for doc in [*records(), *usn_records()]:
        assert schema_errors(doc) == [], doc["id"]
        assert osv.trusted(json.loads(json.dumps(doc))) == osv.parse(doc), doc["id"]
    assert osv.parse(records()[0]).upstream == ("CVE-2026-31001", "DEBIAN-CVE-2026-31001")


def test_one_flaw_is_one_finding_shown_by_its_cve(world) -> None:
    status, report, stderr = audit_json(world)
    assert status == 0, stderr
    assert rows(report) == EXPECTED
    assert report["summary"]["findings"] == 5 and report["notes"] == []


def test_vex_and_the_gate_name_a_finding_by_its_cve(world) -> None:
    status, report, _ = audit_json(world, "--fail-on", "high")
    assert status == 1
    assert sorted((_image(f), f["id"]) for f in report["findings"] if f["failed"]) == [
        ("deb11-app", "CVE-2026-31001"),
        ("deb12-app", "CVE-2026-31001"),
    ]
    vex = world["root"] / "triage.openvex.json"
    vex.write_text(
        json.dumps(
            {
                "@context": "https://openvex.dev/ns/v0.2.0",
                "@id": "https://example.com/vex/upstream",
                "author": "team",
                "timestamp": "2026-12-01T00:00:00Z",
                "version": 1,
                "statements": [
                    {
                        "vulnerability": {"name": "CVE-2026-31001"},
                        "products": [{"@id": "pkg:deb/debian/libfrob1"}],
                        "status": "not_affected",
                        "justification": "vulnerable_code_not_in_execute_path",
                    },
                    {  # the DSA of two CVEs names both
                        "vulnerability": {"name": "DSA-9002-1"},
                        "products": [{"@id": "pkg:deb/debian/libfrob1"}],
                        "status": "under_investigation",
                    },
                ],
            }
        )
    )
    status, report, stderr = audit_json(world, "--fail-on", "high", "--vex", vex)
    assert status == 0, stderr
    states = {(_image(f), f["id"]): (f["analysis"] or {}).get("state") for f in report["findings"]}
    assert states == {
        ("deb12-app", "CVE-2026-31001"): "not_affected",
        ("deb11-app", "CVE-2026-31001"): "not_affected",
        ("deb12-app", "CVE-2026-31002"): "in_triage",
        ("deb12-app", "CVE-2026-31003"): "in_triage",
        ("alpine-app", "CVE-2026-31004"): None,
    }
    assert report["stale_triage"] == []


def test_an_advisory_of_several_cves_is_counted_in_each() -> None:
    """The USN names Ubuntu's record of each CVE it fixes: two findings, not one, and not three."""
    parsed = [osv.parse(doc) for doc in usn_records()]
    found = [(sorted(r.id for r in group), sorted(ids)) for group, ids in _groups(parsed)]
    assert found == [
        (["UBUNTU-CVE-2026-31005", "USN-7001-1"], ["CVE-2026-31005", "UBUNTU-CVE-2026-31005", "USN-7001-1"]),
        (["UBUNTU-CVE-2026-31006", "USN-7001-1"], ["CVE-2026-31006", "UBUNTU-CVE-2026-31006", "USN-7001-1"]),
    ]
    # The USN alone (Ubuntu's CVE records not imported): still one finding per CVE.
    alone = [(sorted(r.id for r in group), sorted(ids)) for group, ids in _groups(parsed[:1])]
    assert alone == [
        (["USN-7001-1"], ["CVE-2026-31005", "UBUNTU-CVE-2026-31005", "USN-7001-1"]),
        (["USN-7001-1"], ["CVE-2026-31006", "UBUNTU-CVE-2026-31006", "USN-7001-1"]),
    ]


def test_a_dsa_without_its_debian_cve_record_is_still_one_finding() -> None:
    """DEBIAN-CVE-X neither matched nor in the index: DSA-N `upstream: [CVE-X, DEBIAN-CVE-X]` is CVE-X."""
    dsa = osv.parse(records()[0])
    assert [(sorted(r.id for r in g), sorted(ids)) for g, ids in _groups([dsa])] == [
        (["DSA-9001-1"], ["CVE-2026-31001", "DEBIAN-CVE-2026-31001", "DSA-9001-1"])
    ]
    # ...and with the DEBIAN-CVE record known (from the index) but not matching this version
    tracker = osv.parse(records()[2])
    assert [sorted(ids) for _, ids in _groups([dsa], {tracker.id: tracker})] == [
        ["CVE-2026-31001", "DEBIAN-CVE-2026-31001", "DSA-9001-1"]
    ]


def test_package_bom_refs_say_what_they_are(world) -> None:
    """`<image bom-ref>#package:<purl>` (was `…#pkg:pkg:deb/…`); VEX naming the old form still applies."""
    _, report, _ = audit_json(world)
    for finding in report["findings"]:
        assert finding["bom_ref"] == f"{finding['image_ref']}#package:{finding['purl']}"
        assert "pkg:pkg:" not in finding["bom_ref"]
    alpine = next(f for f in report["findings"] if f["package"] == "zorp-libs")
    old_ref = alpine["bom_ref"].replace("#package:", "#pkg:")
    vex = world["root"] / "old-ref.cdx.json"
    vex.write_text(
        json.dumps(
            {
                "bomFormat": "CycloneDX",
                "specVersion": "1.6",
                "vulnerabilities": [
                    {
                        "id": "CVE-2026-31004",
                        "analysis": {"state": "false_positive"},
                        "affects": [{"ref": old_ref}],
                    }
                ],
            }
        )
    )
    _, report, _ = audit_json(world, "--vex", vex)
    assert report["stale_triage"] == []
    found = next(f for f in report["findings"] if f["package"] == "zorp-libs")
    assert found["analysis"]["state"] == "false_positive"


def test_an_sbom_with_old_bom_refs_still_pairs_with_a_new_one(world, tmp_path) -> None:
    """A release's SBOM written before the bom-ref change diffs cleanly against one written after."""
    new = tmp_path / "new.cdx.json"
    assert cli("sbom", world["manifest"], "-o", new).returncode == 0
    text = new.read_text()
    assert "#package:pkg:" in text
    old = tmp_path / "old.cdx.json"
    old.write_text(text.replace("#package:pkg:", "#pkg:pkg:"))
    audited = {}
    for name, path in (("old", old), ("new", new)):
        audited[name] = tmp_path / f"{name}.audited.cdx.json"
        result = cli("audit", path, "--db", world["db"], "-o", audited[name])
        assert result.returncode == 0, result.stderr
    result = cli("diff", audited["old"], audited["new"], "--json")
    assert result.returncode == 0, result.stderr
    diff = json.loads(result.stdout)
    assert diff["images"]["unchanged"] == 3 and diff["images"]["repinned"] == []
    assert diff["vulnerabilities"]["fixed"] == diff["vulnerabilities"]["introduced"] == []
    assert len(diff["vulnerabilities"]["still_open"]) == 5
