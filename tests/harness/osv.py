"""OSV records in the official schema and build manifests with given inventories, for the
vulnerability tests and benchmarks (nothing from the internet)."""

from __future__ import annotations

import hashlib
import json
import zipfile
from collections.abc import Iterable, Sequence
from functools import cache
from pathlib import Path
from typing import Any

from containerlock.contents.inventory import INVENTORY_VERSION
from containerlock.oci.record import RECORD_VERSION
from containerlock.payload.archive import MANIFEST_VERSION

SCHEMA = Path(__file__).resolve().parent.parent / "osv-schema.json"
MODIFIED = "2026-11-30T12:00:00Z"
CVSS_CRITICAL = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"  # 9.8
CVSS_HIGH = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:H"  # 7.5
CVSS_MEDIUM = "CVSS:3.1/AV:N/AC:L/PR:N/UI:R/S:U/C:L/I:L/A:N"  # 5.4
CVSS_LOW = "CVSS:3.1/AV:L/AC:H/PR:H/UI:R/S:U/C:L/I:N/A:N"  # 1.8
CVSS4_HIGH = "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:N/VA:N/SC:N/SI:N/SA:N"


def events(*pairs: tuple[str, str]) -> list[dict[str, str]]:
    return [{kind: version} for kind, version in pairs]


def record(
    vuln_id: str,
    ecosystem: str,
    name: str,
    ranges: Sequence[dict[str, Any]] = (),
    versions: Sequence[str] = (),
    aliases: Sequence[str] = (),
    cvss: str | None = None,
    modified: str = MODIFIED,
    withdrawn: str | None = None,
    extra_affected: Sequence[dict[str, Any]] = (),
    **fields: Any,
) -> dict[str, Any]:
    """A record as osv.dev publishes them."""
    affected: dict[str, Any] = {"package": {"ecosystem": ecosystem, "name": name}}
    if ranges:
        affected["ranges"] = list(ranges)
    if versions:
        affected["versions"] = list(versions)
    doc: dict[str, Any] = {
        "schema_version": "1.6.0",
        "id": vuln_id,
        "modified": modified,
        "published": "2026-01-01T00:00:00Z",
        "summary": f"{vuln_id} in {name}",
        "affected": [affected, *extra_affected],
        "references": [{"type": "ADVISORY", "url": f"https://osv.dev/vulnerability/{vuln_id}"}],
    }
    if aliases:
        doc["aliases"] = list(aliases)
    if cvss:
        doc["severity"] = [{"type": "CVSS_V4" if cvss.startswith("CVSS:4") else "CVSS_V3", "score": cvss}]
    if withdrawn:
        doc["withdrawn"] = withdrawn
    doc.update(fields)
    return doc


def ecosystem_range(*pairs: tuple[str, str], kind: str = "ECOSYSTEM") -> dict[str, Any]:
    return {"type": kind, "events": events(*pairs)}


@cache
def _validator() -> Any:
    import jsonschema

    return jsonschema.Draft202012Validator(
        json.loads(SCHEMA.read_text()), format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )


def schema_errors(doc: dict[str, Any]) -> list[str]:
    """What the OSV schema says is wrong with `doc` (empty: valid)."""
    return [f"{e.json_path}: {e.message}" for e in _validator().iter_errors(doc)]


def write_zip(path: Path, records: Iterable[dict[str, Any]], check: bool = True) -> Path:
    """An export like osv.dev's all.zip: one `<id>.json` per record (validated unless `check` is off)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for doc in records:
            if check:
                assert schema_errors(doc) == [], doc["id"]
            info = zipfile.ZipInfo(f"{doc['id']}.json", date_time=(2026, 1, 1, 0, 0, 0))
            archive.writestr(info, json.dumps(doc, indent=1), zipfile.ZIP_DEFLATED)
    return path


def digest(*parts: object) -> str:
    return "sha256:" + hashlib.sha256(repr(parts).encode()).hexdigest()


def image(
    name: str, os: dict[str, str], packages: Sequence[dict[str, Any]], tag: str = "1.0"
) -> dict[str, Any]:
    """A build manifest's image entry with an inventory of `packages` (type, name, version, …)."""
    layer = digest("layer", name)
    manifest = digest("manifest", name)
    return {
        "version": RECORD_VERSION,
        "reference": f"registry.example:5000/team/{name}",
        "tag": tag,
        "platform": "linux/amd64",
        "manifest": manifest,
        "digest": manifest,
        "config": digest("config", name),
        "layers": [
            {"digest": layer, "size": 1000, "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip"}
        ],
        "file": f"/usr/share/loader/images/{name}.tar.zst",
        "file_sha256": digest("file", name),
        "file_size": 12345,
        "format": "docker-archive",
        "compression": "zst",
        "inventory": {
            "version": INVENTORY_VERSION,
            "os": os,
            "packages": [
                {**p, "database": p.get("database", "var/lib/dpkg/status"), "layer": layer} for p in packages
            ],
            "notes": [],
        },
    }


def write_manifest(path: Path, images: Sequence[dict[str, Any]], name: str = "loader") -> Path:
    """A loader package's build manifest carrying `images`."""
    doc = {
        "version": MANIFEST_VERSION,
        "package": {"name": name, "version": "1.0", "arch": "amd64"},
        "engine": "podman",
        "source_date_epoch": 1700000000,
        "images": list(images),
    }
    path.write_text(json.dumps(doc))
    return path
