"""The valid documents every command's minimal invocation reads: recipes, a lockfile, a policy, a
Sigstore trusted root, build manifests, a deploy dir, OSV records, a VEX, a CycloneDX document to
merge into; and the foreign ones a slot may be handed by mistake (an SPDX document, `{}`, `[]`).

All made here, without a registry: the images live at a registry that is down
(`127.0.0.1:<closed port>`), so the commands that must ask one exit 3.
"""

from __future__ import annotations

import json
import shutil
import socket
from pathlib import Path

from containerlock.lock.lockfile import Lock, LockEntry
from tests.harness.osv import ecosystem_range, image, record, write_manifest, write_zip
from tests.harness.sigstore_fixture import PrivateSigstore

DEB12 = {"ID": "debian", "VERSION_ID": "12", "PRETTY_NAME": "Debian GNU/Linux 12 (bookworm)"}
OLD_PACKAGES = [
    {"type": "deb", "name": "libssl3", "version": "3.0.11-1~deb12u1", "arch": "amd64", "source": "openssl"},
    {"type": "deb", "name": "base-files", "version": "12.4+deb12u5", "arch": "amd64"},
]
NEW_PACKAGES = [
    {"type": "deb", "name": "libssl3", "version": "3.0.13-1~deb12u1", "arch": "amd64", "source": "openssl"},
    {"type": "deb", "name": "base-files", "version": "12.4+deb12u5", "arch": "amd64"},
]
DIGEST = "sha256:" + "1" * 64

SPDX = {
    "spdxVersion": "SPDX-2.3",
    "SPDXID": "SPDXRef-DOCUMENT",
    "name": "not-cyclonedx",
    "dataLicense": "CC0-1.0",
    "documentNamespace": "https://example.com/spdx/edges",
    "creationInfo": {"created": "2026-01-01T00:00:00Z", "creators": ["Tool: edges"]},
    "packages": [],
}
CYCLONEDX_BASE = {"bomFormat": "CycloneDX", "specVersion": "1.6", "version": 1, "components": []}


def closed_port() -> int:
    """A 127.0.0.1 port nothing listens on (bound, then closed): connections are refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def osv_records() -> list[dict]:
    """One Debian record that the old manifest's libssl3 is affected by and the new one fixes."""
    fixed = ecosystem_range(("introduced", "0"), ("fixed", "3.0.13-1~deb12u1"))
    return [
        record(
            "CVE-2024-0001",
            "Debian:12",
            "openssl",
            [fixed],
            cvss="CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:H",
        )
    ]


def vex(ref: str) -> dict:
    """CycloneDX VEX: the team's triage of the one finding."""
    analysis = {"state": "not_affected", "justification": "code_not_reachable"}
    statement = {"id": "CVE-2024-0001", "analysis": analysis, "affects": [{"ref": ref}]}
    return {"bomFormat": "CycloneDX", "specVersion": "1.6", "version": 1, "vulnerabilities": [statement]}


def build(root: Path, registry: str) -> dict[str, Path]:
    """Write the valid documents under `root` (relative names are what the invocations use).

    The documents that only the CLI itself makes (the index, an SBOM) are left to the caller:
    `needs_cli()` lists the command lines that make them.
    """
    root.mkdir(parents=True, exist_ok=True)
    ref = f"{registry}/team/a"
    layer = root / "layer"
    layer.mkdir()
    (layer / "a_1.0.bb").write_text(f'SRC_URI = "docker://{ref};tag=1"\n')
    (root / "lock.json").write_bytes(Lock({f"{ref}:1": LockEntry(DIGEST, {"linux/amd64": DIGEST})}).dumps())
    sigstore = PrivateSigstore(root / ".sigstore")
    shutil.copyfile(sigstore.trusted_root_path, root / "root.json")
    shutil.rmtree(root / ".sigstore")
    (root / "policy.toml").write_text(
        "version = 1\n"
        "[[signers]]\n"
        f'images = ["{registry}/team/*"]\n'
        'issuer = "https://issuer.example"\n'
        'identity = "https://example.com/release"\n'
    )
    write_manifest(root / "old.json", [image("app", DEB12, OLD_PACKAGES)], name="loader")
    write_manifest(root / "new.json", [image("app", DEB12, NEW_PACKAGES, tag="1.1")], name="loader")
    deploy = root / "deploy"
    deploy.mkdir()
    shutil.copyfile(root / "new.json", deploy / "loader.json")
    osv_dir = root / "osv"
    osv_dir.mkdir()
    for doc in osv_records():
        (osv_dir / f"{doc['id']}.json").write_text(json.dumps(doc, indent=1))
    write_zip(root / "osv.zip", osv_records())
    (root / "vex.json").write_text(json.dumps(vex("pkg:deb/debian/libssl3@3.0.11-1~deb12u1?arch=amd64")))
    (root / "base.cdx.json").write_text(json.dumps(CYCLONEDX_BASE))
    (root / "spdx.json").write_text(json.dumps(SPDX))
    return {p.name: p for p in root.iterdir()}


def needs_cli() -> list[list[str]]:
    """The command lines (run in the world's directory) that make the index and the SBOM."""
    return [
        ["vulndb", "import", "osv", "--db", "osv.db"],
        ["sbom", "old.json", "-o", "old.cdx.json"],
    ]
