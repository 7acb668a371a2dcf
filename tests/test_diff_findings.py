"""`diff` pairs findings by the flaw, not by the id each side shows (issue 29 item 5).

An SBOM audited before findings were grouped by OSV's `upstream` shows Debian's DSA and
DEBIAN-CVE records as findings of their own; one audited after shows one finding, the CVE, with
those ids among its aliases (CycloneDX `references`). Comparing the two must not report the CVE
as introduced and the DSA as fixed; two CVEs that only share an advisory stay two flaws.
"""

from __future__ import annotations

from changes.compare import compare
from changes.release import Finding, Image, PackageKey, Release

OPENSSL = PackageKey("deb/debian", "openssl", "amd64")
ZLIB = PackageKey("deb/debian", "zlib1g", "amd64")


def _release(name: str, *findings: Finding) -> Release:
    image = Image("reg.example/app", "1.0", "linux/amd64", "sha256:" + "a" * 64, "sha256:" + "a" * 64, (), {})
    image.findings = list(findings)
    return Release(name, "sbom", [image], audited=True, snapshot="s")


def _ids(changes: list) -> list[str]:
    return sorted(c.finding.id for c in changes)


def test_a_cve_shown_by_its_advisory_before_and_by_itself_after_is_still_open() -> None:
    old = _release(
        "old",
        Finding("DSA-9001-1", OPENSSL, "3.0.1-1", "high"),
        Finding("DEBIAN-CVE-2026-31001", OPENSSL, "3.0.1-1", "unknown"),
    )
    new = _release(
        "new",
        Finding(
            "CVE-2026-31001", OPENSSL, "3.0.1-1", "high", aliases=("DEBIAN-CVE-2026-31001", "DSA-9001-1")
        ),
    )
    found = compare(old, new).vulnerabilities
    assert found is not None
    assert (_ids(found.introduced), _ids(found.fixed), _ids(found.still_open)) == ([], [], ["CVE-2026-31001"])
    # And the other way round (a newer SBOM compared with an older one).
    back = compare(new, old).vulnerabilities
    assert back is not None
    assert (_ids(back.introduced), _ids(back.fixed)) == ([], [])


def test_two_cves_of_one_advisory_stay_two_flaws() -> None:
    old = _release(
        "old",
        Finding("CVE-2026-1", OPENSSL, "3.0.1-1", "high", aliases=("DSA-9002-1",)),
        Finding("CVE-2026-2", OPENSSL, "3.0.1-1", "high", aliases=("DSA-9002-1",)),
    )
    new = _release("new", Finding("CVE-2026-2", OPENSSL, "3.0.2-1", "high", aliases=("DSA-9002-1",)))
    found = compare(old, new).vulnerabilities
    assert found is not None
    assert (_ids(found.fixed), _ids(found.still_open), _ids(found.introduced)) == (
        ["CVE-2026-1"],
        ["CVE-2026-2"],
        [],
    )


def test_the_same_id_in_another_package_is_another_finding() -> None:
    old = _release("old", Finding("CVE-2026-3", OPENSSL, "3.0.1-1", "low"))
    new = _release("new", Finding("CVE-2026-3", ZLIB, "1.2-1", "low"))
    found = compare(old, new).vulnerabilities
    assert found is not None
    assert (_ids(found.fixed), _ids(found.introduced), _ids(found.still_open)) == (
        ["CVE-2026-3"],
        ["CVE-2026-3"],
        [],
    )
