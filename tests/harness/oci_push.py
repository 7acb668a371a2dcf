"""Push and read OCI artifacts on a plain-HTTP, no-auth registry with urllib only.

Made for Debian's docker-registry 2.8, which has no referrers API: cosign v3 bundles are
published as OCI 1.1 artifact manifests plus the referrers tag fallback (`sha256-<hex>` → an
index listing them); legacy cosign signatures as the `sha256-<hex>.sig` image.
"""

from __future__ import annotations

import base64
import hashlib
import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

BUNDLE_MEDIA_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
COSIGN_SIGN_PREDICATE = "https://sigstore.dev/cosign/sign/v1"
EMPTY_MEDIA_TYPE = "application/vnd.oci.empty.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
SIMPLESIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
CERTIFICATE_ANNOTATION = "dev.sigstore.cosign/certificate"
MANIFEST_ACCEPT = ", ".join((OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST))

DSSE_LAYER = "application/vnd.dsse.envelope.v1+json"
Descriptor = dict[str, Any]
# host → (user, password) for registries that need a login (htpasswd): sent as Basic auth.
CREDENTIALS: dict[str, tuple[str, str]] = {}


class RegistryError(Exception):
    """A registry answered with an HTTP error; `status` and the response body are kept."""

    def __init__(self, method: str, url: str, status: int, body: str) -> None:
        super().__init__(f"{method} {url}: HTTP {status}: {body[:500]}")
        self.status = status


@dataclass(frozen=True)
class Manifest:
    """A manifest or index as served: media type (Content-Type), raw bytes, digest of the bytes."""

    media_type: str
    data: bytes
    digest: str

    def json(self) -> dict[str, Any]:
        return json.loads(self.data)


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def referrers_tag(digest: str) -> str:
    """The referrers tag fallback for `digest`: `sha256-<hex>`."""
    return digest.replace(":", "-")


def signature_tag(digest: str) -> str:
    """cosign's legacy signature tag for `digest`: `sha256-<hex>.sig`."""
    return referrers_tag(digest) + ".sig"


def _request(
    method: str, url: str, data: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    headers = dict(headers or {})
    host = url.split("/")[2]
    if host in CREDENTIALS:
        token = base64.b64encode(":".join(CREDENTIALS[host]).encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=30) as response:
            return response.status, dict(response.headers.items()), response.read()
    except urllib.error.HTTPError as err:
        body = err.read().decode(errors="replace")
        raise RegistryError(method, url, err.code, body) from None


# -- writing -----------------------------------------------------------------------------------


def push_blob(host: str, repo: str, data: bytes) -> str:
    """Upload a blob (POST an upload session, then one PUT ?digest=); returns its digest."""
    digest = sha256_digest(data)
    _, headers, _ = _request("POST", f"http://{host}/v2/{repo}/blobs/uploads/", data=b"")
    location = headers["Location"]
    if location.startswith("/"):
        location = f"http://{host}{location}"
    sep = "&" if "?" in location else "?"
    _request(
        "PUT",
        f"{location}{sep}digest={digest}",
        data=data,
        headers={"Content-Type": "application/octet-stream"},
    )
    return digest


def push_manifest(host: str, repo: str, reference: str, manifest_bytes: bytes, media_type: str) -> str:
    """PUT a manifest or index under a tag or digest; returns the digest of `manifest_bytes`."""
    digest = sha256_digest(manifest_bytes)
    _, headers, _ = _request(
        "PUT",
        f"http://{host}/v2/{repo}/manifests/{reference}",
        data=manifest_bytes,
        headers={"Content-Type": media_type},
    )
    served = headers.get("Docker-Content-Digest")
    if served and served != digest:
        raise RuntimeError(f"registry stored {served}, expected {digest}")
    return digest


def _encode(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode()


def _blob_descriptor(host: str, repo: str, data: bytes, media_type: str) -> Descriptor:
    return {"mediaType": media_type, "digest": push_blob(host, repo, data), "size": len(data)}


def _put(host: str, repo: str, reference: str | None, doc: dict[str, Any]) -> Descriptor:
    data = _encode(doc)
    digest = push_manifest(host, repo, reference or sha256_digest(data), data, doc["mediaType"])
    return {"mediaType": doc["mediaType"], "digest": digest, "size": len(data)}


def attach_bundle(
    host: str,
    repo: str,
    subject: Descriptor,
    bundle: bytes,
    predicate_type: str = COSIGN_SIGN_PREDICATE,
) -> Descriptor:
    """Attach a Sigstore bundle to `subject` as cosign v3 does; returns the artifact's descriptor.

    The artifact manifest (artifactType = bundle media type, empty config, one bundle layer,
    `subject`) is pushed by digest, then added to the `sha256-<hex>` fallback index.
    """
    empty = {**_blob_descriptor(host, repo, b"{}", EMPTY_MEDIA_TYPE), "data": "e30="}
    annotations = {
        "dev.sigstore.bundle.content": "dsse-envelope",
        "dev.sigstore.bundle.predicateType": predicate_type,
    }
    artifact = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": BUNDLE_MEDIA_TYPE,
        "config": empty,
        "layers": [_blob_descriptor(host, repo, bundle, BUNDLE_MEDIA_TYPE)],
        "subject": {k: subject[k] for k in ("mediaType", "digest", "size")},
        "annotations": annotations,
    }
    descriptor = _put(host, repo, None, artifact)
    existing = referrers_index(host, repo, subject["digest"])
    manifests = [m for m in existing.get("manifests", []) if m["digest"] != descriptor["digest"]]
    manifests.append({**descriptor, "artifactType": BUNDLE_MEDIA_TYPE, "annotations": annotations})
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}
    _put(host, repo, referrers_tag(subject["digest"]), index)
    return descriptor


def attach_legacy_signature(
    host: str, repo: str, digest: str, payload: bytes, signature: str, certificate: str | None = None
) -> Descriptor:
    """Add a layer to cosign's `sha256-<hex>.sig` image: `payload`, annotated with the signature.

    Existing signature layers are kept (cosign appends); returns the new manifest's descriptor.
    """
    annotations = {SIGNATURE_ANNOTATION: signature}
    if certificate:
        annotations[CERTIFICATE_ANNOTATION] = certificate
    layer = {**_blob_descriptor(host, repo, payload, SIMPLESIGNING), "annotations": annotations}
    return _append_layer(host, repo, signature_tag(digest), layer)


def attach_legacy_attestation(
    host: str, repo: str, digest: str, envelope: bytes, predicate_type: str, certificate: str | None = None
) -> Descriptor:
    """Add a DSSE envelope layer to cosign's `sha256-<hex>.att` image, as `cosign attest` (without
    the new bundle format) does: annotated with the predicate type (and the certificate, keyless)."""
    annotations = {SIGNATURE_ANNOTATION: "", "predicateType": predicate_type}
    if certificate:
        annotations[CERTIFICATE_ANNOTATION] = certificate
    layer = {**_blob_descriptor(host, repo, envelope, DSSE_LAYER), "annotations": annotations}
    return _append_layer(host, repo, referrers_tag(digest) + ".att", layer)


def _append_layer(host: str, repo: str, tag: str, layer: Descriptor) -> Descriptor:
    """cosign's legacy artifact images: an image under `tag` whose layers are appended to."""
    try:
        layers = [x for x in get_manifest(host, repo, tag).json()["layers"] if x != layer]
    except RegistryError as err:
        if err.status != 404:
            raise
        layers = []
    layers.append(layer)
    config = {  # what cosign writes: an image config whose diff IDs are the payload digests
        "architecture": "",
        "created": "0001-01-01T00:00:00Z",
        "history": [{"created": "0001-01-01T00:00:00Z"}] * len(layers),
        "os": "",
        "rootfs": {"type": "layers", "diff_ids": [x["digest"] for x in layers]},
        "config": {},
    }
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": _blob_descriptor(host, repo, _encode(config), OCI_CONFIG),
        "layers": layers,
    }
    return _put(host, repo, tag, manifest)


# -- reading -----------------------------------------------------------------------------------


def get_manifest(host: str, repo: str, reference: str, accept: str = MANIFEST_ACCEPT) -> Manifest:
    """GET a manifest by tag or digest; checks the served bytes against a requested digest."""
    _, headers, data = _request(
        "GET", f"http://{host}/v2/{repo}/manifests/{reference}", headers={"Accept": accept}
    )
    digest = sha256_digest(data)
    if reference.startswith("sha256:") and digest != reference:
        raise RuntimeError(f"registry served {digest} for {reference}")
    return Manifest(headers.get("Content-Type", ""), data, digest)


def get_blob(host: str, repo: str, digest: str) -> bytes:
    """GET a blob and check its digest."""
    _, _, data = _request("GET", f"http://{host}/v2/{repo}/blobs/{digest}")
    if sha256_digest(data) != digest:
        raise RuntimeError(f"blob {digest} served with other content")
    return data


def manifest_descriptor(host: str, repo: str, reference: str) -> Descriptor:
    """The descriptor (media type, digest, size) of a pushed manifest, for use as a `subject`."""
    manifest = get_manifest(host, repo, reference)
    return {"mediaType": manifest.media_type, "digest": manifest.digest, "size": len(manifest.data)}


def referrers_index(host: str, repo: str, digest: str) -> dict[str, Any]:
    """The `sha256-<hex>` fallback index for `digest`, or `{}` when there is none."""
    try:
        return get_manifest(host, repo, referrers_tag(digest), accept=OCI_INDEX).json()
    except RegistryError as err:
        if err.status == 404:
            return {}
        raise


def read_bundles(host: str, repo: str, digest: str) -> list[bytes]:
    """Every bundle attached to `digest`, found through the tag fallback (as a verifier would)."""
    bundles = []
    for entry in referrers_index(host, repo, digest).get("manifests", []):
        if entry.get("artifactType") != BUNDLE_MEDIA_TYPE:
            continue
        artifact = get_manifest(host, repo, entry["digest"]).json()
        if artifact.get("subject", {}).get("digest") != digest:
            continue
        bundles += [
            get_blob(host, repo, x["digest"])
            for x in artifact["layers"]
            if x["mediaType"] == BUNDLE_MEDIA_TYPE
        ]
    return bundles


def read_legacy_signatures(host: str, repo: str, digest: str) -> list[tuple[bytes, str]]:
    """(payload, base64 signature) pairs from the `sha256-<hex>.sig` image, or `[]`."""
    try:
        manifest = get_manifest(host, repo, signature_tag(digest)).json()
    except RegistryError as err:
        if err.status == 404:
            return []
        raise
    return [
        (get_blob(host, repo, x["digest"]), x["annotations"][SIGNATURE_ANNOTATION])
        for x in manifest["layers"]
        if x["mediaType"] == SIMPLESIGNING and SIGNATURE_ANNOTATION in x.get("annotations", {})
    ]
