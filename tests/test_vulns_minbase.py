"""The audit of a real Debian image: mmdebstrap's bookworm minbase (the inventory tests' image) against
OSV records for its source packages whose fixed versions lie above, equal to and below what is installed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.harness.osv import CVSS_HIGH, ecosystem_range, image, record, write_manifest, write_zip
from tests.harness.rootfs import debian_minbase


def cli(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "audit", *map(str, args)], capture_output=True, text=True, timeout=600
    )


def sources_inside(tar: Path, workdir: Path) -> dict[str, tuple[str, str]]:
    """Binary package → (source package, source version), as `dpkg-query` says inside the root."""
    root = workdir / "root"
    root.mkdir(parents=True)
    subprocess.run(["tar", "-xf", str(tar), "-C", str(root)], check=True)
    out = subprocess.run(
        ["chroot", str(root), "dpkg-query", "-W", "-f", "${Package} ${source:Package} ${source:Version}\\n"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return {line.split()[0]: (line.split()[1], line.split()[2]) for line in out.splitlines() if line.strip()}


def test_minbase_findings_are_exactly_the_sources_below_their_fix(tmp_path_factory, image_factory) -> None:
    tar = debian_minbase(tmp_path_factory.getbasetemp() / "rootfs")
    pushed = image_factory.rootfs("inventory/minbase", tar)
    listed = cli("inventory", pushed.reference, "--json")
    assert listed.returncode == 0, listed.stderr
    inventory = json.loads(listed.stdout)[pushed.reference]
    work = tmp_path_factory.mktemp("minbase-vulns")
    truth = sources_inside(tar, work)
    by_source: dict[str, list[str]] = {}
    for binary, (source, _) in sorted(truth.items()):
        by_source.setdefault(source, []).append(binary)
    # sources with several binaries first: above, equal, below, unfixed
    chosen = sorted(by_source, key=lambda s: (-len(by_source[s]), s))[:4]
    above, equal, below, unfixed = chosen
    version = {s: truth[by_source[s][0]][1] for s in chosen}
    records = [
        record(
            "CVE-2026-1001",
            "Debian:12",
            above,
            [ecosystem_range(("introduced", "0"), ("fixed", version[above] + "+zz1"))],
            cvss=CVSS_HIGH,
        ),
        record(
            "CVE-2026-1002",
            "Debian:12",
            equal,
            [ecosystem_range(("introduced", "0"), ("fixed", version[equal]))],
            cvss=CVSS_HIGH,
        ),
        record(
            "CVE-2026-1003",
            "Debian:12",
            below,
            [ecosystem_range(("introduced", "0"), ("fixed", version[below] + "~"))],
            cvss=CVSS_HIGH,
        ),
        record("CVE-2026-1004", "Debian:12", unfixed, [ecosystem_range(("introduced", "0"))]),
        record("CVE-2026-1005", "Debian:11", above, [ecosystem_range(("introduced", "0"))], cvss=CVSS_HIGH),
    ]
    export = write_zip(work / "debian.zip", records)
    db = work / "osv.db"
    assert cli("vulndb", "import", export, "--db", db).returncode == 0
    manifest = write_manifest(
        work / "loader.json", [image("minbase", inventory["os"], inventory["packages"])]
    )
    result = cli("audit", manifest, "--db", db, "--json", "--fail-on", "high")
    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)
    found = {(f["package"], f["id"], f["fixed"], f["failed"]) for f in report["findings"]}
    expected = {(b, "CVE-2026-1001", version[above] + "+zz1", True) for b in by_source[above]}
    expected |= {(b, "CVE-2026-1004", None, False) for b in by_source[unfixed]}  # unknown severity
    assert found == expected
    assert len(expected) >= 3
