"""Find and verify the signatures of pinned images: cosign v3 bundles and legacy `.sig` images.

Bundles (OCI 1.1 artifacts, `application/vnd.dev.sigstore.bundle.v0.3+json`) are found with
the referrers API or, for registries without it, the `sha256-<hex>` tag fallback; they are
verified offline by sigstore-python against a trusted root, then the in-toto statement must
name the pinned digest and have cosign's signing predicate type (an attestation alone is not
a signature). Legacy `sha256-<hex>.sig` images made with a key are verified against the key
given by the policy; keyless legacy signatures are reported as present but not verifiable.
"""

from __future__ import annotations

import base64
import hashlib
import json
import tempfile
import tomllib
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ObjectIdentifier, RFC822Name, SubjectAlternativeName, UniformResourceIdentifier

from containerlock.policy import Signer

from .registry import RegistryError, skopeo_raw

BUNDLE_MEDIA_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
SIMPLESIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
COSIGN_SIGN_PREDICATE = "https://sigstore.dev/cosign/sign/v1"
INTOTO = "application/vnd.in-toto+json"
_ISSUER_OIDS = (ObjectIdentifier("1.3.6.1.4.1.57264.1.8"), ObjectIdentifier("1.3.6.1.4.1.57264.1.1"))


@dataclass(frozen=True)
class Evidence:
    """One signature found for one digest, and what came of checking it."""

    digest: str  # the digest that was signed (the pin, or a platform manifest of it)
    kind: str  # "bundle" | "legacy"
    verified: bool
    signer: str | None
    detail: str
    source: str  # bundle/signature manifest digest


def _manifest(name: str, reference: str, timeout: float) -> bytes | None:
    """The raw manifest bytes of `name` + `reference`, or None if there is none."""
    try:
        return skopeo_raw(["inspect", "--raw", f"docker://{name}{reference}"], timeout)
    except RegistryError as err:
        if "does not exist" in str(err):
            return None
        raise


def _insecure_registries() -> set[str]:
    found: set[str] = set()
    for path in (Path.home() / ".config/containers/registries.conf", Path("/etc/containers/registries.conf")):
        try:
            doc = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError):
            continue
        found |= {r.get("location", "") for r in doc.get("registry", []) if r.get("insecure")}
    return found


def _referrers_api(name: str, digest: str) -> list[dict] | None:
    """Referrers from the OCI 1.1 API (anonymous), or None if the registry has none to offer."""
    host, repo = name.split("/", 1)
    schemes = ("https", "http") if host in _insecure_registries() else ("https",)
    for scheme in schemes:
        req = urllib.request.Request(
            f"{scheme}://{host}/v2/{repo}/referrers/{digest}",
            headers={"Accept": "application/vnd.oci.image.index.v1+json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=20) as response:
                return json.loads(response.read()).get("manifests", [])
        except (urllib.error.URLError, OSError, ValueError):
            continue
    return None


def bundle_descriptors(name: str, digest: str, timeout: float) -> list[dict]:
    """Descriptors of bundle artifacts that refer to `digest`."""
    found = _referrers_api(name, digest)
    if found is None:
        index = _manifest(name, ":" + digest.replace(":", "-"), timeout)
        found = json.loads(index).get("manifests", []) if index else []
    return [m for m in found if m.get("artifactType") == BUNDLE_MEDIA_TYPE]


def _layers(name: str, reference: str, timeout: float) -> dict[str, bytes]:
    """The layer blobs of `name` + `reference` (`@digest` or `:tag`), by digest, via `skopeo copy … dir:`."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "artifact"
        skopeo_raw(["copy", "--preserve-digests", f"docker://{name}{reference}", f"dir:{out}"], timeout)
        manifest = json.loads((out / "manifest.json").read_text())
        return {
            layer["digest"]: (out / layer["digest"].split(":", 1)[1]).read_bytes()
            for layer in manifest.get("layers", [])
        }


def _cert_identity(cert) -> tuple[str, str]:
    san = cert.extensions.get_extension_for_class(SubjectAlternativeName).value
    names = san.get_values_for_type(RFC822Name) + san.get_values_for_type(UniformResourceIdentifier)
    issuer = ""
    for oid in _ISSUER_OIDS:
        try:
            raw = cert.extensions.get_extension_for_oid(oid).value.value
        except Exception:
            continue
        issuer = raw[2:].decode() if oid.dotted_string.endswith(".8") else raw.decode()
        break
    return (names[0] if names else ""), issuer


def check_bundle(
    bundle_bytes: bytes, digest: str, signers: tuple[Signer, ...], trusted_root: Path | None, offline: bool
) -> tuple[bool, str | None, str]:
    """Verify one bundle: sigstore-python, then subject digest and predicate type, then the signers."""
    from sigstore.errors import Error as SigstoreError
    from sigstore.models import Bundle, TrustedRoot
    from sigstore.verify import Verifier
    from sigstore.verify.policy import UnsafeNoOp

    try:
        bundle = Bundle.from_json(bundle_bytes)
        if trusted_root is not None:
            verifier = Verifier(trusted_root=TrustedRoot.from_file(str(trusted_root)))
        else:
            verifier = Verifier.production(offline=offline)
        payload_type, payload = verifier.verify_dsse(bundle, UnsafeNoOp())
    except (SigstoreError, ValueError) as err:
        return False, None, f"bundle does not verify: {err}"
    if payload_type != INTOTO:
        return False, None, f"payload type {payload_type} is not an in-toto statement"
    statement = json.loads(payload)
    subjects = {s.get("digest", {}).get("sha256") for s in statement.get("subject", [])}
    if digest.split(":", 1)[1] not in subjects:
        return False, None, f"the signed statement is about another digest, not {digest}"
    if statement.get("predicateType") != COSIGN_SIGN_PREDICATE:
        return (
            False,
            None,
            (f"an attestation ({statement.get('predicateType')}), not a signature ({COSIGN_SIGN_PREDICATE})"),
        )
    identity, issuer = _cert_identity(bundle.signing_certificate)
    for signer in signers:
        if signer.accepts(issuer, identity):
            return True, signer.describe(), f"signed by {identity} (issuer {issuer})"
    return False, None, f"signed by {identity} (issuer {issuer}), which no required signer accepts"


def check_legacy(
    layers: dict[str, bytes], manifest: dict, name: str, digest: str, signers: tuple[Signer, ...], base: Path
) -> tuple[bool, str | None, str]:
    """A `.sig` image: the simple-signing payload must name `digest` and be signed by a policy key."""
    keyed = [s for s in signers if s.key]
    for layer in manifest.get("layers", []):
        if layer.get("mediaType") != SIMPLESIGNING:
            continue
        payload = layers[layer["digest"]]
        annotations = layer.get("annotations", {})
        signature = annotations.get("dev.cosignproject.cosign/signature", "")
        if "dev.sigstore.cosign/certificate" in annotations and not keyed:
            return False, None, "keyless legacy signature present, not verifiable offline"
        claimed = json.loads(payload).get("critical", {}).get("image", {}).get("docker-manifest-digest")
        if claimed != digest:
            return False, None, f"the signature names {claimed}, not {digest}"
        for signer in keyed:
            key_path = Path(signer.key) if Path(signer.key).is_absolute() else base / signer.key
            key = serialization.load_pem_public_key(key_path.read_bytes())
            try:
                assert isinstance(key, ec.EllipticCurvePublicKey)
                key.verify(base64.b64decode(signature), payload, ec.ECDSA(hashes.SHA256()))
                return True, signer.describe(), f"signed with {key_path.name}"
            except (InvalidSignature, ValueError, AssertionError):
                continue
        return False, None, "legacy signature present, but no policy key verifies it"
    return False, None, "no simple-signing payload in the .sig image"


def find_and_verify(
    name: str,
    digests: list[str],
    signers: tuple[Signer, ...],
    trusted_root: Path | None,
    offline: bool,
    policy_dir: Path,
    timeout: float = 60.0,
) -> list[Evidence]:
    """Evidence for the pinned digest and, for an index, its platform manifests."""
    found: list[Evidence] = []
    for digest in digests:
        for descriptor in bundle_descriptors(name, digest, timeout):
            layers = _layers(name, "@" + descriptor["digest"], timeout)
            for blob in layers.values():
                if not blob.lstrip().startswith(b"{"):
                    continue
                ok, signer, detail = check_bundle(blob, digest, signers, trusted_root, offline)
                found.append(
                    Evidence(
                        digest, "bundle", ok, signer, detail, "sha256:" + hashlib.sha256(blob).hexdigest()
                    )
                )
        sig_tag = ":" + digest.replace(":", "-") + ".sig"
        legacy = _manifest(name, sig_tag, timeout)
        if legacy is not None:
            sig_digest = "sha256:" + hashlib.sha256(legacy).hexdigest()  # over the registry's bytes
            layers = _layers(name, sig_tag, timeout)
            ok, signer, detail = check_legacy(layers, json.loads(legacy), name, digest, signers, policy_dir)
            found.append(Evidence(digest, "legacy", ok, signer, detail, sig_digest))
    return found
