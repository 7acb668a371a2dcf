"""The signature reader against vectors the real producers made (cosign, public-good and staging
Sigstore), not the suite's own Sigstore: see tests/fixtures/cosign-vectors/README.md.

Each vector is fed to the functions `container-lock verify` uses, and through the CLI against the
loopback registry, offline with the vector's own trust root; each must be accepted for its own
digest and signer, and refused with one byte changed, another digest, identity, key or root.
"""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from audit.provenance import SLSA_V02, SLSA_V1, _legacy, judge
from audit.signatures import SIMPLESIGNING, check_bundle, check_legacy, open_bundle
from containerlock.lock.lockfile import Lock, LockEntry
from containerlock.lock.policy import Signer
from containerlock.lock.provenance import Rule
from tests.harness.oci_push import (
    OCI_MANIFEST,
    attach_bundle,
    attach_legacy_attestation,
    attach_legacy_signature,
)

VECTORS = Path(__file__).parent / "fixtures" / "cosign-vectors"
COSIGN, CIMAGE = VECTORS / "cosign", VECTORS / "containers-image"
CONFORMANCE = VECTORS / "sigstore-conformance" / "rekor2-dsse-happy-path"

PGI_ROOT = COSIGN / "trusted_root_pgi.json"  # public-good, from cosign's testdata
STAGING_ROOT = CONFORMANCE / "trusted_root.json"  # staging, from sigstore-conformance

# cosign's OCI attestation bundle (public-good Fulcio + Rekor)
ATT_BUNDLE = COSIGN / "oci-attestation.sigstore.json"
ATT_DIGEST = "sha256:732112270d7e59418a8c080b134b24cabd67d250d0d0147a97ed95ba5c280aa4"
ATT_IDENTITY, ATT_ISSUER = "cody@soyland.com", "https://github.com/login/oauth"
COSIGN_ATTESTATION = "https://cosign.sigstore.dev/attestation/v1"

# sigstore-conformance's staging Rekor v2 DSSE bundle (SLSA provenance v1, GitHub Actions)
SLSA_BUNDLE = CONFORMANCE / "bundle.sigstore.json"
SLSA_DIGEST = "sha256:a0cfc71271d6e278e57cd332ff957c3f7043fdda354c4cbb190a30d56efa01bf"
SLSA_IDENTITY = (
    "https://github.com/sigstore-conformance/extremely-dangerous-public-oidc-beacon/"
    ".github/workflows/extremely-dangerous-oidc-beacon.yml@refs/heads/main"
)
SLSA_ISSUER = "https://token.actions.githubusercontent.com"
SLSA_BUILDER = "https://github.com/sigstore-conformance/rekor2-dsse-hashedrekord-regen"

# cosign's key-signed DSSE envelopes (verify-blob-attestation test); the subject is this blob
BLOB_DIGEST = "sha256:" + hashlib.sha256(b"some-payload").hexdigest()
OTHER_SUBJECT = "sha256:0da559c2f127230a1fabcfbb20d5db8dba765923c6efc6f483165119c4c2c5d4"

UNRELATED = "sha256:" + "0" * 64


def keyless(identity: str, issuer: str) -> tuple[Signer, ...]:
    return (Signer(images=("*",), issuer=issuer, identity=identity),)


def keyed(path: Path) -> tuple[Signer, ...]:
    return (Signer(images=("*",), key=str(path)),)


def digest_of(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def flip_byte(data: bytes, index: int) -> bytes:
    """`data` with the byte at `index` changed (the low bit flipped)."""
    return data[:index] + bytes([data[index] ^ 1]) + data[index + 1 :]


def change_bundle_payload(bundle: bytes) -> bytes:
    """The bundle with one byte of its signed DSSE payload changed (a space inside a JSON string)."""
    doc = json.loads(bundle)
    payload = base64.b64decode(doc["dsseEnvelope"]["payload"])
    doc["dsseEnvelope"]["payload"] = base64.b64encode(
        flip_byte(payload, payload.index(b"https") + 2)
    ).decode()
    return json.dumps(doc).encode()


def change_bundle_signature(bundle: bytes) -> bytes:
    """The bundle with one byte of its DSSE signature changed."""
    doc = json.loads(bundle)
    sig = base64.b64decode(doc["dsseEnvelope"]["signatures"][0]["sig"])
    doc["dsseEnvelope"]["signatures"][0]["sig"] = base64.b64encode(flip_byte(sig, len(sig) - 1)).decode()
    return json.dumps(doc).encode()


# ---- legacy `.sig` images (containers/image's cosign-made signatures) ----------------------------


def sigstore_json(path: Path) -> tuple[str, bytes, dict[str, str]]:
    """(layer media type, layer blob, annotations) of a containers/image `sigstore-json` file."""
    raw = path.read_bytes()
    header = b"\x00sigstore-json\n"
    assert raw.startswith(header), path
    doc = json.loads(raw[len(header) :])
    return doc["mimeType"], base64.b64decode(doc["payload"]), doc["annotations"]


def sig_image(path: Path, payload: bytes | None = None) -> tuple[dict[str, bytes], dict]:
    """The `.sig` image cosign pushed, rebuilt from one stored layer: (blobs by digest, manifest)."""
    media_type, blob, annotations = sigstore_json(path)
    blob = blob if payload is None else payload
    digest = "sha256:" + hashlib.sha256(blob).hexdigest()
    layer = {"mediaType": media_type, "digest": digest, "size": len(blob), "annotations": annotations}
    return {digest: blob}, {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "layers": [layer]}


VALID_SIG = CIMAGE / "dir-img-cosign-valid" / "signature-1"
VALID_DIGEST = digest_of(CIMAGE / "dir-img-cosign-valid" / "manifest.json")
REKOR_SIG = CIMAGE / "dir-img-cosign-key-rekor-valid" / "signature-1"
REKOR_DIGEST = digest_of(CIMAGE / "dir-img-cosign-key-rekor-valid" / "manifest.json")
FULCIO_SIG = CIMAGE / "dir-img-cosign-fulcio-rekor-valid" / "signature-1"


def test_legacy_vectors_sign_the_digest_of_their_manifest() -> None:
    """The vectors are what they claim: the payloads name the sha256 of the stored manifests."""
    for sig, digest in ((VALID_SIG, VALID_DIGEST), (REKOR_SIG, REKOR_DIGEST), (FULCIO_SIG, REKOR_DIGEST)):
        media_type, payload, _ = sigstore_json(sig)
        assert media_type == SIMPLESIGNING
        assert json.loads(payload)["critical"]["image"]["docker-manifest-digest"] == digest


@pytest.mark.parametrize(
    ("sig", "digest", "key"),
    [
        (VALID_SIG, VALID_DIGEST, "cosign.pub"),
        (REKOR_SIG, REKOR_DIGEST, "cosign2.pub"),  # with a Rekor bundle annotation
    ],
    ids=["cosign-valid", "cosign-key-rekor-valid"],
)
def test_cosign_legacy_signature_verifies_with_its_key(sig: Path, digest: str, key: str) -> None:
    layers, manifest = sig_image(sig)
    check = check_legacy(layers, manifest, digest, keyed(CIMAGE / key), CIMAGE)
    assert check.verified, check
    assert check.detail == f"signed with {key}" and check.signer == f"key {CIMAGE / key}"


@pytest.mark.parametrize(
    ("sig", "digest", "key"),
    [(VALID_SIG, VALID_DIGEST, "cosign2.pub"), (REKOR_SIG, REKOR_DIGEST, "cosign.pub")],
    ids=["cosign-valid", "cosign-key-rekor-valid"],
)
def test_cosign_legacy_signature_refused_with_another_key(sig: Path, digest: str, key: str) -> None:
    layers, manifest = sig_image(sig)
    check = check_legacy(layers, manifest, digest, keyed(CIMAGE / key), CIMAGE)
    assert check.failure == "invalid signature"
    assert check.detail == "legacy signature present, but no policy key verifies it"


def test_cosign_legacy_signature_by_an_unknown_key_is_refused() -> None:
    layers, manifest = sig_image(CIMAGE / "unknown-cosign-key.signature")
    check = check_legacy(layers, manifest, VALID_DIGEST, keyed(CIMAGE / "cosign.pub"), CIMAGE)
    assert check.failure == "invalid signature"


def test_cosign_legacy_signature_for_another_digest_is_refused() -> None:
    layers, manifest = sig_image(VALID_SIG)
    check = check_legacy(layers, manifest, REKOR_DIGEST, keyed(CIMAGE / "cosign.pub"), CIMAGE)
    assert check.failure == "other digest"
    assert check.detail == f"the signature names {VALID_DIGEST}, not {REKOR_DIGEST}"


def test_cosign_legacy_signature_with_one_payload_byte_changed_is_refused() -> None:
    _, payload, _ = sigstore_json(VALID_SIG)
    changed = flip_byte(payload, payload.index(b"cosign-signed"))  # the docker-reference, not the digest
    assert json.loads(changed)["critical"]["image"]["docker-manifest-digest"] == VALID_DIGEST
    layers, manifest = sig_image(VALID_SIG, payload=changed)
    check = check_legacy(layers, manifest, VALID_DIGEST, keyed(CIMAGE / "cosign.pub"), CIMAGE)
    assert check.failure == "invalid signature"


def test_cosign_legacy_signature_with_one_signature_byte_changed_is_refused() -> None:
    layers, manifest = sig_image(VALID_SIG)
    annotations = manifest["layers"][0]["annotations"]
    signature = base64.b64decode(annotations["dev.cosignproject.cosign/signature"])
    annotations["dev.cosignproject.cosign/signature"] = base64.b64encode(
        flip_byte(signature, len(signature) - 1)
    ).decode()
    check = check_legacy(layers, manifest, VALID_DIGEST, keyed(CIMAGE / "cosign.pub"), CIMAGE)
    assert check.failure == "invalid signature"


def test_cosign_keyless_legacy_signature_is_not_verifiable_offline() -> None:
    layers, manifest = sig_image(FULCIO_SIG)
    assert "dev.sigstore.cosign/certificate" in manifest["layers"][0]["annotations"]
    check = check_legacy(layers, manifest, REKOR_DIGEST, keyless("someone@example.com", ATT_ISSUER), CIMAGE)
    assert check.failure == "not verifiable" and not check.verified


# ---- cosign v3 bundles (public-good and staging) -------------------------------------------------


def test_cosign_bundle_verifies_offline_with_the_public_good_root() -> None:
    statement, check = open_bundle(
        ATT_BUNDLE.read_bytes(), keyless(ATT_IDENTITY, ATT_ISSUER), PGI_ROOT, offline=True
    )
    assert check.verified, check
    assert check.detail == f"signed by {ATT_IDENTITY} (issuer {ATT_ISSUER})"
    assert statement is not None and statement["predicateType"] == COSIGN_ATTESTATION
    assert [s["digest"]["sha256"] for s in statement["subject"]] == [ATT_DIGEST.split(":")[1]]


def test_cosign_bundle_identity_regex_signer_accepts_it() -> None:
    signers = (
        Signer(images=("*",), issuer_regex=r"https://github\.com/.*", identity_regex=r".*@soyland\.com"),
    )
    statement, check = open_bundle(ATT_BUNDLE.read_bytes(), signers, PGI_ROOT, offline=True)
    assert statement is not None and check.verified


def test_cosign_attestation_bundle_is_not_a_signature() -> None:
    """Verified, about the right digest, but an attestation: never counted as cosign's signature."""
    check = check_bundle(
        ATT_BUNDLE.read_bytes(), ATT_DIGEST, keyless(ATT_IDENTITY, ATT_ISSUER), PGI_ROOT, True
    )
    assert check.failure == "attestation only"
    assert COSIGN_ATTESTATION in check.detail


@pytest.mark.parametrize(
    ("signers", "digest", "failure"),
    [
        (keyless(ATT_IDENTITY, ATT_ISSUER), UNRELATED, "other digest"),
        (keyless("someone-else@soyland.com", ATT_ISSUER), ATT_DIGEST, "wrong identity"),
        (keyless(ATT_IDENTITY, "https://accounts.google.com"), ATT_DIGEST, "wrong issuer"),
    ],
    ids=["other-digest", "wrong-identity", "wrong-issuer"],
)
def test_cosign_bundle_refused_for_another_digest_identity_or_issuer(signers, digest, failure) -> None:
    check = check_bundle(ATT_BUNDLE.read_bytes(), digest, signers, PGI_ROOT, True)
    assert check.failure == failure


@pytest.mark.parametrize(
    ("bundle", "root"),
    [
        (change_bundle_payload(ATT_BUNDLE.read_bytes()), PGI_ROOT),
        (change_bundle_signature(ATT_BUNDLE.read_bytes()), PGI_ROOT),
        (ATT_BUNDLE.read_bytes(), STAGING_ROOT),  # a public-good bundle under the staging root
        (change_bundle_payload(SLSA_BUNDLE.read_bytes()), STAGING_ROOT),
        (change_bundle_signature(SLSA_BUNDLE.read_bytes()), STAGING_ROOT),
        (SLSA_BUNDLE.read_bytes(), PGI_ROOT),  # a staging bundle under the public-good root
    ],
    ids=[
        "cosign-payload-byte",
        "cosign-signature-byte",
        "cosign-staging-root",
        "staging-payload-byte",
        "staging-signature-byte",
        "staging-public-good-root",
    ],
)
def test_real_bundle_with_one_byte_changed_or_another_root_does_not_verify(bundle: bytes, root: Path) -> None:
    signers = keyless(ATT_IDENTITY, ATT_ISSUER) + keyless(SLSA_IDENTITY, SLSA_ISSUER)
    statement, check = open_bundle(bundle, signers, root, offline=True)
    assert statement is None and check.failure == "invalid signature"
    assert check.detail.startswith("bundle does not verify: ")


def test_staging_slsa_v1_bundle_verifies_and_its_facts_are_read() -> None:
    statement, check = open_bundle(
        SLSA_BUNDLE.read_bytes(), keyless(SLSA_IDENTITY, SLSA_ISSUER), STAGING_ROOT, offline=True
    )
    assert statement is not None and check.verified, check
    attestation = judge(statement, SLSA_DIGEST, "bundle", "sha256:src", check.signer or "", None)
    assert attestation is not None and attestation.failure is None
    assert attestation.facts is not None
    assert attestation.facts.predicate_type == SLSA_V1
    assert attestation.facts.builder_id == SLSA_BUILDER
    assert attestation.facts.build_type == SLSA_BUILDER
    assert attestation.facts.signer == f"{SLSA_IDENTITY} (issuer {SLSA_ISSUER})"


def test_staging_slsa_v1_bundle_judged_by_the_rule_and_the_digest() -> None:
    statement, check = open_bundle(
        SLSA_BUNDLE.read_bytes(), keyless(SLSA_IDENTITY, SLSA_ISSUER), STAGING_ROOT, offline=True
    )
    assert statement is not None
    other_builder = Rule(images=("*",), builder_id=("https://github.com/slsa-framework/builder",))
    refused = judge(statement, SLSA_DIGEST, "bundle", "sha256:src", check.signer or "", other_builder)
    assert refused is not None and refused.failure == "builder not allowed"
    assert f"built by {SLSA_BUILDER}" in refused.detail
    elsewhere = judge(statement, UNRELATED, "bundle", "sha256:src", check.signer or "", None)
    assert elsewhere is not None and elsewhere.failure == "other digest"
    refused_identity = check_bundle(
        SLSA_BUNDLE.read_bytes(), SLSA_DIGEST, keyless(SLSA_IDENTITY + "x", SLSA_ISSUER), STAGING_ROOT, True
    )
    assert refused_identity.failure == "wrong identity"


def test_cosign_attestation_predicate_is_listed_not_judged() -> None:
    statement, check = open_bundle(
        ATT_BUNDLE.read_bytes(), keyless(ATT_IDENTITY, ATT_ISSUER), PGI_ROOT, offline=True
    )
    assert statement is not None
    attestation = judge(statement, ATT_DIGEST, "bundle", "sha256:src", check.signer or "", None)
    assert attestation is not None and attestation.failure == "unknown predicate"
    assert attestation.facts is None


# ---- legacy `.att` DSSE envelopes (cosign's key-signed envelopes) --------------------------------

BLOB_PUB = COSIGN / "attest-blob.pub"
SLSA_ENVELOPE = COSIGN / "blob-slsa-provenance.dsse.json"
V02 = {"predicateType": SLSA_V02}


def test_cosign_dsse_envelope_verifies_with_its_key_and_its_facts_are_read() -> None:
    attestation = _legacy(SLSA_ENVELOPE.read_bytes(), V02, BLOB_DIGEST, keyed(BLOB_PUB), COSIGN, None)
    assert attestation is not None and attestation.failure is None, attestation
    assert attestation.facts is not None
    assert (attestation.facts.predicate_type, attestation.facts.builder_id, attestation.facts.build_type) == (
        SLSA_V02,
        "2",
        "x",
    )
    assert attestation.facts.digest == BLOB_DIGEST and attestation.facts.signer == f"key {BLOB_PUB}"
    assert attestation.source == digest_of(SLSA_ENVELOPE)


@pytest.mark.parametrize(
    ("envelope", "key", "digest", "failure"),
    [
        (SLSA_ENVELOPE.read_bytes(), CIMAGE / "cosign.pub", BLOB_DIGEST, "untrusted signer"),
        (SLSA_ENVELOPE.read_bytes(), BLOB_PUB, UNRELATED, "other digest"),
        ((COSIGN / "blob-empty-subject.dsse.json").read_bytes(), BLOB_PUB, BLOB_DIGEST, "other digest"),
    ],
    ids=["another-key", "other-digest", "no-subject"],
)
def test_cosign_dsse_envelope_refused(envelope: bytes, key: Path, digest: str, failure: str) -> None:
    attestation = _legacy(envelope, V02, digest, keyed(key), COSIGN, None)
    assert attestation is not None and attestation.failure == failure and attestation.facts is None


@pytest.mark.parametrize("part", ["payload", "sig"])
def test_cosign_dsse_envelope_with_one_byte_changed_is_refused(part: str) -> None:
    doc = json.loads(SLSA_ENVELOPE.read_bytes())
    if part == "payload":
        payload = base64.b64decode(doc["payload"])
        doc["payload"] = base64.b64encode(flip_byte(payload, payload.index(b"builder") + 1)).decode()
    else:
        sig = base64.b64decode(doc["signatures"][0]["sig"])
        doc["signatures"][0]["sig"] = base64.b64encode(flip_byte(sig, len(sig) - 1)).decode()
    attestation = _legacy(json.dumps(doc).encode(), V02, BLOB_DIGEST, keyed(BLOB_PUB), COSIGN, None)
    assert attestation is not None and attestation.facts is None
    assert attestation.failure == "untrusted signer"  # no policy key verifies the changed envelope
    assert attestation.detail == "no policy key verifies the envelope"


def test_cosign_dsse_envelope_with_two_subjects_names_both() -> None:
    envelope = (COSIGN / "blob-multiple-subjects.dsse.json").read_bytes()
    for digest in (BLOB_DIGEST, OTHER_SUBJECT):
        attestation = _legacy(envelope, V02, digest, keyed(BLOB_PUB), COSIGN, None)
        assert attestation is not None and attestation.failure is None and attestation.facts is not None
        assert attestation.facts.digest == digest
    refused = _legacy(envelope, V02, UNRELATED, keyed(BLOB_PUB), COSIGN, None)
    assert refused is not None and refused.failure == "other digest"


# ---- the same vectors through `container-lock verify` and the loopback registry -----------------


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "audit", *args], capture_output=True, text=True, timeout=300)


def run_verify(work: Path, host: str, pins: dict[str, str], policy: str, root: Path) -> dict[str, dict]:
    """`verify --provenance --json` over a lock pinning `pins` (repository → digest): report by repo."""
    lock = work / "lock.json"
    lock.write_bytes(Lock({f"{host}/{repo}:1.0": LockEntry(digest) for repo, digest in pins.items()}).dumps())
    (work / "policy.toml").write_text(policy)
    result = cli(
        "verify",
        "--lockfile",
        str(lock),
        "--policy",
        str(work / "policy.toml"),
        "--trusted-root",
        str(root),
        "--provenance",
        "--json",
    )
    assert result.returncode in (0, 1), result.stderr
    return {i["reference"].split("/", 1)[1].rsplit(":", 1)[0]: i for i in json.loads(result.stdout)["images"]}


def signer_block(images: list[str], **fields: str) -> str:
    body = "".join(f'{k} = "{v}"\n' for k, v in fields.items())
    return f"[[signers]]\nimages = {json.dumps(images)}\n{body}"


@pytest.fixture(scope="module")
def public_good_report(tmp_path_factory, registry) -> dict[str, dict]:
    """Real legacy signatures, the cosign bundle and a cosign DSSE envelope, attached as cosign
    attaches them, verified by the CLI with the public-good root."""
    work, host = tmp_path_factory.mktemp("cosign-vectors"), registry.host
    for repo, sig in (
        ("vectors/legacy", VALID_SIG),
        ("vectors/legacy-unknown-key", CIMAGE / "unknown-cosign-key.signature"),
    ):
        _, payload, annotations = sigstore_json(sig)
        attach_legacy_signature(
            host, repo, VALID_DIGEST, payload, annotations["dev.cosignproject.cosign/signature"]
        )
    for repo in ("vectors/bundle", "vectors/bundle-other-identity"):
        subject = {"mediaType": OCI_MANIFEST, "digest": ATT_DIGEST, "size": 1}
        attach_bundle(host, repo, subject, ATT_BUNDLE.read_bytes(), predicate_type=COSIGN_ATTESTATION)
    attach_legacy_attestation(host, "vectors/att", BLOB_DIGEST, SLSA_ENVELOPE.read_bytes(), SLSA_V02)
    policy = (
        'version = 1\n[rules]\nunsigned = "deny"\n'
        + signer_block(
            [f"{host}/vectors/legacy", f"{host}/vectors/legacy-unknown-key"], key=str(CIMAGE / "cosign.pub")
        )
        + signer_block([f"{host}/vectors/bundle"], issuer=ATT_ISSUER, identity=ATT_IDENTITY)
        + signer_block([f"{host}/vectors/bundle-other-identity"], issuer=ATT_ISSUER, identity="x@soyland.com")
        + signer_block([f"{host}/vectors/att"], key=str(BLOB_PUB))
    )
    pins = {
        "vectors/legacy": VALID_DIGEST,
        "vectors/legacy-unknown-key": VALID_DIGEST,
        "vectors/bundle": ATT_DIGEST,
        "vectors/bundle-other-identity": ATT_DIGEST,
        "vectors/att": BLOB_DIGEST,
    }
    return run_verify(work, host, pins, policy, PGI_ROOT)


def details(item: dict) -> str:
    return " | ".join(e["detail"] for e in item["evidence"])


def test_cli_verifies_a_real_cosign_legacy_signature(public_good_report) -> None:
    item = public_good_report["vectors/legacy"]
    assert item["status"] == "verified" and item["signed_digests"] == [VALID_DIGEST]
    assert "signed with cosign.pub" in details(item)


def test_cli_refuses_a_real_cosign_legacy_signature_by_another_key(public_good_report) -> None:
    item = public_good_report["vectors/legacy-unknown-key"]
    assert item["status"] == "invalid signature"
    assert "no policy key verifies it" in details(item)


def test_cli_verifies_the_real_cosign_bundle_but_counts_it_as_an_attestation(public_good_report) -> None:
    item = public_good_report["vectors/bundle"]
    assert item["status"] == "attestation only"
    assert f"an attestation ({COSIGN_ATTESTATION}), not a signature" in details(item)
    (attestation,) = item["provenance"]["attestations"]
    assert (
        attestation["failure"] == "unknown predicate" and attestation["predicate_type"] == COSIGN_ATTESTATION
    )


def test_cli_refuses_the_real_cosign_bundle_for_another_identity(public_good_report) -> None:
    item = public_good_report["vectors/bundle-other-identity"]
    assert item["status"] == "wrong identity"
    assert f"signed by {ATT_IDENTITY} (issuer {ATT_ISSUER}), which no required signer accepts" in details(
        item
    )
    (attestation,) = item["provenance"]["attestations"]
    assert attestation["failure"] == "untrusted signer"


def test_cli_verifies_a_real_cosign_dsse_envelope_as_provenance(public_good_report) -> None:
    item = public_good_report["vectors/att"]
    assert item["provenance"]["status"] == "verified"
    (attestation,) = item["provenance"]["attestations"]
    assert attestation["facts"]["builder_id"] == "2" and attestation["facts"]["predicate_type"] == SLSA_V02
    assert attestation["source"] == digest_of(SLSA_ENVELOPE)


def test_cli_judges_the_real_staging_slsa_v1_bundle(tmp_path, registry) -> None:
    host = registry.host
    subject = {"mediaType": OCI_MANIFEST, "digest": SLSA_DIGEST, "size": 1}
    for repo in ("vectors/slsa", "vectors/slsa-other-builder"):
        attach_bundle(host, repo, subject, SLSA_BUNDLE.read_bytes(), predicate_type=SLSA_V1)
    policy = (
        "version = 1\n"
        + signer_block([f"{host}/vectors/slsa*"], issuer=SLSA_ISSUER, identity=SLSA_IDENTITY)
        + f'[[provenance]]\nimages = ["{host}/vectors/slsa"]\nbuilder_id = ["{SLSA_BUILDER}"]\n'
        + f'[[provenance]]\nimages = ["{host}/vectors/slsa-other-builder"]\nbuilder_id = ["https://b.example"]\n'
    )
    pins = {"vectors/slsa": SLSA_DIGEST, "vectors/slsa-other-builder": SLSA_DIGEST}
    report = run_verify(tmp_path, host, pins, policy, STAGING_ROOT)
    good = report["vectors/slsa"]["provenance"]
    assert good["status"] == "verified"
    assert good["attestations"][0]["facts"]["signer"] == f"{SLSA_IDENTITY} (issuer {SLSA_ISSUER})"
    refused = report["vectors/slsa-other-builder"]["provenance"]
    assert refused["status"] == "builder not allowed" and SLSA_BUILDER in refused["detail"]
