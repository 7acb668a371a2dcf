"""The private Sigstore fixture and the OCI artifact pusher: bundles verify offline with
sigstore-python, broken ones fail for the right reason, legacy signatures verify with the key,
and both kinds are found again in the loopback registry through their tags."""

from __future__ import annotations

import base64
import json
import socket
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sigstore.errors import VerificationError

from tests.harness.oci_push import (
    BUNDLE_MEDIA_TYPE,
    EMPTY_MEDIA_TYPE,
    OCI_INDEX,
    OCI_MANIFEST,
    SIGNATURE_ANNOTATION,
    SIMPLESIGNING,
    attach_bundle,
    attach_legacy_signature,
    get_blob,
    get_manifest,
    manifest_descriptor,
    read_bundles,
    read_legacy_signatures,
    referrers_tag,
    signature_tag,
)
from tests.harness.sigstore_fixture import (
    COSIGN_SIGN_PREDICATE,
    INTOTO_PAYLOAD_TYPE,
    TRUSTED_ROOT_MEDIA_TYPE,
    KeyPairSigner,
    PrivateSigstore,
    simple_signing_payload,
    tamper,
    verify_dsse_bundle,
)

IDENTITY, ISSUER = "release@team.example", "https://issuer.team.example"
WORKFLOW = "https://github.com/org/repo/.github/workflows/release.yml@refs/tags/v1.0"
DIGEST = "sha256:" + "3f" * 32


@pytest.fixture(scope="module")
def sigstore(tmp_path_factory: pytest.TempPathFactory) -> PrivateSigstore:
    return PrivateSigstore(tmp_path_factory.mktemp("sigstore"))


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to resolve or connect fails the test (verification must be offline)."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def statement_of(bundle: bytes) -> dict:
    return json.loads(base64.b64decode(json.loads(bundle)["dsseEnvelope"]["payload"]))


def edit(bundle: bytes, change) -> bytes:
    doc = json.loads(bundle)
    change(doc)
    return json.dumps(doc).encode()


def test_bundle_and_trusted_root_have_what_sigstore_python_needs(sigstore) -> None:
    root = json.loads(sigstore.trusted_root_path.read_text())
    assert root["mediaType"] == TRUSTED_ROOT_MEDIA_TYPE
    assert len(root["tlogs"]) == len(root["ctlogs"]) == len(root["certificateAuthorities"]) == 1
    doc = json.loads(sigstore.sign_dsse(DIGEST, COSIGN_SIGN_PREDICATE, IDENTITY, ISSUER))
    assert doc["mediaType"] == BUNDLE_MEDIA_TYPE
    (entry,) = doc["verificationMaterial"]["tlogEntries"]
    assert entry["kindVersion"] == {"kind": "dsse", "version": "0.0.1"}
    assert entry["inclusionPromise"]["signedEntryTimestamp"]
    proof = entry["inclusionProof"]
    assert proof["hashes"] and int(proof["treeSize"]) > int(proof["logIndex"]) > 0
    assert proof["checkpoint"]["envelope"].splitlines()[1] == proof["treeSize"]


def test_valid_bundle_verifies_offline(sigstore, no_network) -> None:
    predicate = {"note": "hello"}
    bundle = sigstore.sign_dsse(DIGEST, COSIGN_SIGN_PREDICATE, IDENTITY, ISSUER, predicate=predicate)
    payload_type, payload = verify_dsse_bundle(sigstore.trusted_root_path, bundle, IDENTITY, ISSUER)
    assert payload_type == INTOTO_PAYLOAD_TYPE
    statement = json.loads(payload)
    assert statement["_type"] == "https://in-toto.io/Statement/v1"
    assert statement["predicateType"] == COSIGN_SIGN_PREDICATE
    assert statement["predicate"] == predicate
    assert [s["digest"] for s in statement["subject"]] == [{"sha256": DIGEST.removeprefix("sha256:")}]


def test_uri_identity_and_later_log_entries_verify(sigstore) -> None:
    for n in range(3):  # each bundle is a new leaf of the same log: different audit paths
        digest = f"sha256:{n:064x}"
        bundle = sigstore.sign_dsse(digest, COSIGN_SIGN_PREDICATE, WORKFLOW, ISSUER)
        _, payload = verify_dsse_bundle(sigstore.trusted_root_path, bundle, WORKFLOW, ISSUER)
        assert json.loads(payload)["subject"][0]["digest"]["sha256"] == digest.removeprefix("sha256:")


def _later(doc: dict) -> None:
    entry = doc["verificationMaterial"]["tlogEntries"][0]
    entry["integratedTime"] = str(int(entry["integratedTime"]) + 1)


def _wrong_path(doc: dict) -> None:
    proof = doc["verificationMaterial"]["tlogEntries"][0]["inclusionProof"]
    proof["hashes"][0] = proof["rootHash"]


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("wrong identity", "Certificate's SANs do not match release@team.example"),
        ("wrong issuer", "Certificate's OIDCIssuer does not match (got 'https://issuer.evil.example'"),
        ("tampered", "DSSE: invalid signature"),
        ("other trust root", "failed to build timestamp certificate chain"),
        ("inclusion promise", "SET: invalid inclusion promise"),
        ("inclusion proof", "inclusion proof contains invalid root hash"),
    ],
)
def test_broken_bundles_are_refused(sigstore, tmp_path: Path, no_network, case: str, message: str) -> None:
    identity, issuer, signer = IDENTITY, ISSUER, sigstore
    if case == "wrong identity":
        identity = "intruder@evil.example"
    elif case == "wrong issuer":
        issuer = "https://issuer.evil.example"
    elif case == "other trust root":
        signer = PrivateSigstore(tmp_path / "other")
    bundle = signer.sign_dsse(DIGEST, COSIGN_SIGN_PREDICATE, identity, issuer)
    if case == "tampered":
        bundle = tamper(bundle)
        assert statement_of(bundle)["subject"][0]["digest"]["sha256"] != DIGEST.removeprefix("sha256:")
    elif case == "inclusion promise":
        bundle = edit(bundle, _later)
    elif case == "inclusion proof":
        bundle = edit(bundle, _wrong_path)
    with pytest.raises(VerificationError) as raised:
        verify_dsse_bundle(sigstore.trusted_root_path, bundle, IDENTITY, ISSUER)
    assert message in str(raised.value)


def _verify_legacy(public_key_pem: bytes, payload: bytes, signature: str) -> None:
    key = serialization.load_pem_public_key(public_key_pem)
    assert isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == "secp256r1"
    key.verify(base64.b64decode(signature), payload, ec.ECDSA(hashes.SHA256()))


def test_legacy_signature_verifies_with_the_public_key(tmp_path: Path) -> None:
    signer, other = KeyPairSigner(tmp_path / "a"), KeyPairSigner(tmp_path / "b")
    payload = simple_signing_payload("registry.example/team/app", DIGEST)
    assert payload == (
        b'{"critical":{"identity":{"docker-reference":"registry.example/team/app"},'
        b'"image":{"docker-manifest-digest":"' + DIGEST.encode() + b'"},'
        b'"type":"cosign container image signature"},"optional":null}'
    )
    signature = signer.sign(payload)
    _verify_legacy(signer.public_key_path.read_bytes(), payload, signature)
    with pytest.raises(InvalidSignature):
        _verify_legacy(other.public_key_path.read_bytes(), payload, signature)
    with pytest.raises(InvalidSignature):
        _verify_legacy(signer.public_key_path.read_bytes(), payload.replace(b"team", b"evil"), signature)


def test_bundles_are_found_through_the_referrers_tag_fallback(sigstore, image_factory) -> None:
    image = image_factory.single_arch("sigstore-fixture/bundle", tag="1.0")
    host, repo = image.host, image.repository
    subject = manifest_descriptor(host, repo, "1.0")
    assert subject == {"mediaType": OCI_MANIFEST, "digest": image.digest, "size": subject["size"]}
    signature = sigstore.sign_dsse(image.digest, COSIGN_SIGN_PREDICATE, IDENTITY, ISSUER)
    attestation = sigstore.sign_dsse(image.digest, "https://slsa.dev/provenance/v1", IDENTITY, ISSUER)
    first = attach_bundle(host, repo, subject, signature)
    second = attach_bundle(host, repo, subject, attestation, predicate_type="https://slsa.dev/provenance/v1")

    tag = "sha256-" + image.digest.removeprefix("sha256:")
    assert referrers_tag(image.digest) == tag
    index = get_manifest(host, repo, tag, accept=OCI_INDEX)
    assert index.media_type == OCI_INDEX
    assert [(m["digest"], m["artifactType"]) for m in index.json()["manifests"]] == [
        (first["digest"], BUNDLE_MEDIA_TYPE),
        (second["digest"], BUNDLE_MEDIA_TYPE),
    ]
    artifact = get_manifest(host, repo, first["digest"])
    doc = artifact.json()
    assert artifact.media_type == OCI_MANIFEST and doc["artifactType"] == BUNDLE_MEDIA_TYPE
    assert doc["subject"] == subject
    assert doc["config"]["mediaType"] == EMPTY_MEDIA_TYPE
    assert get_blob(host, repo, doc["config"]["digest"]) == b"{}"
    assert [x["mediaType"] for x in doc["layers"]] == [BUNDLE_MEDIA_TYPE]

    assert read_bundles(host, repo, image.digest) == [signature, attestation]
    _, payload = verify_dsse_bundle(sigstore.trusted_root_path, signature, IDENTITY, ISSUER)
    assert json.loads(payload)["subject"][0]["digest"]["sha256"] == image.digest.removeprefix("sha256:")
    assert read_bundles(host, repo, "sha256:" + "0" * 64) == []


def test_legacy_signature_is_found_under_the_sig_tag(image_factory, tmp_path: Path) -> None:
    image = image_factory.single_arch("sigstore-fixture/legacy", tag="1.0")
    host, repo = image.host, image.repository
    signer = KeyPairSigner(tmp_path)
    payload = simple_signing_payload(f"{host}/{repo}", image.digest)
    signature = signer.sign(payload)
    attach_legacy_signature(host, repo, image.digest, payload, signature)
    attach_legacy_signature(host, repo, image.digest, payload, signature)  # idempotent

    tag = "sha256-" + image.digest.removeprefix("sha256:") + ".sig"
    assert signature_tag(image.digest) == tag
    manifest = get_manifest(host, repo, tag)
    assert manifest.media_type == OCI_MANIFEST
    (layer,) = manifest.json()["layers"]
    assert layer["mediaType"] == SIMPLESIGNING and layer["annotations"][SIGNATURE_ANNOTATION] == signature
    ((read_payload, read_signature),) = read_legacy_signatures(host, repo, image.digest)
    assert read_payload == payload
    _verify_legacy(signer.public_key_path.read_bytes(), read_payload, read_signature)
    assert json.loads(read_payload)["critical"]["image"]["docker-manifest-digest"] == image.digest
