"""Push OCI artifacts to a plain-HTTP registry with urllib: cosign-style bundles and legacy signatures."""

from __future__ import annotations

import hashlib
import json
import urllib.request

BUNDLE_MEDIA_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
EMPTY_MEDIA_TYPE = "application/vnd.oci.empty.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
SIMPLESIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def push_blob(host: str, repo: str, data: bytes) -> dict:
    """Upload a blob (monolithic POST + PUT); returns its descriptor core."""
    start = urllib.request.Request(f"http://{host}/v2/{repo}/blobs/uploads/", method="POST", data=b"")
    with urllib.request.urlopen(start) as response:
        location = response.headers["Location"]
    if location.startswith("/"):
        location = f"http://{host}{location}"
    sep = "&" if "?" in location else "?"
    put = urllib.request.Request(
        f"{location}{sep}digest={_digest(data)}",
        method="PUT",
        data=data,
        headers={"Content-Type": "application/octet-stream"},
    )
    urllib.request.urlopen(put).close()
    return {"digest": _digest(data), "size": len(data)}


def push_manifest(host: str, repo: str, reference: str, manifest: dict) -> dict:
    """PUT a manifest or index under a tag (or its digest); returns its descriptor."""
    data = json.dumps(manifest, separators=(",", ":")).encode()
    media_type = manifest["mediaType"]
    req = urllib.request.Request(
        f"http://{host}/v2/{repo}/manifests/{reference}",
        method="PUT",
        data=data,
        headers={"Content-Type": media_type},
    )
    urllib.request.urlopen(req).close()
    return {"mediaType": media_type, "digest": _digest(data), "size": len(data)}


def subject_descriptor(media_type: str, digest: str, size: int) -> dict:
    return {"mediaType": media_type, "digest": digest, "size": size}


def attach_bundle(host: str, repo: str, subject: dict, bundle: bytes) -> dict:
    """A cosign v3 bundle as an OCI 1.1 artifact, published with the referrers tag fallback."""
    empty = {**push_blob(host, repo, b"{}"), "mediaType": EMPTY_MEDIA_TYPE}
    layer = {**push_blob(host, repo, bundle), "mediaType": BUNDLE_MEDIA_TYPE}
    artifact = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": BUNDLE_MEDIA_TYPE,
        "config": empty,
        "layers": [layer],
        "subject": subject,
        "annotations": {"dev.sigstore.bundle.predicateType": "https://sigstore.dev/cosign/sign/v1"},
    }
    descriptor = push_manifest(
        host, repo, _digest(json.dumps(artifact, separators=(",", ":")).encode()), artifact
    )
    tag = subject["digest"].replace(":", "-")
    existing = referrers_index(host, repo, subject["digest"])
    manifests = [m for m in existing.get("manifests", []) if m["digest"] != descriptor["digest"]]
    manifests.append({**descriptor, "artifactType": BUNDLE_MEDIA_TYPE})
    push_manifest(host, repo, tag, {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests})
    return descriptor


def referrers_index(host: str, repo: str, digest: str) -> dict:
    """The fallback-tag index for `digest`, or an empty one."""
    req = urllib.request.Request(
        f"http://{host}/v2/{repo}/manifests/{digest.replace(':', '-')}", headers={"Accept": OCI_INDEX}
    )
    try:
        with urllib.request.urlopen(req) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError:
        return {}


def attach_legacy_signature(
    host: str, repo: str, digest: str, payload: bytes, signature: str, certificate: str | None = None
) -> dict:
    """cosign's `sha256-<hex>.sig` image: a simple-signing payload layer annotated with the signature."""
    empty_config = {**push_blob(host, repo, b"{}"), "mediaType": "application/vnd.oci.image.config.v1+json"}
    layer = {
        **push_blob(host, repo, payload),
        "mediaType": SIMPLESIGNING,
        "annotations": {
            "dev.cosignproject.cosign/signature": signature,
            **({"dev.sigstore.cosign/certificate": certificate} if certificate else {}),
        },
    }
    manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": empty_config, "layers": [layer]}
    return push_manifest(host, repo, digest.replace(":", "-") + ".sig", manifest)
