"""A private Sigstore for tests: CA, transparency-log and CT-log keys, a trusted root, and bundles
that sigstore-python 4.5.1 verifies offline. Never talks to public Sigstore.

What sigstore-python checks, and so what this writes: a leaf certificate with an empty subject,
a critical SAN (the identity), AKI, KeyUsage digitalSignature, EKU codeSigning, the OIDC issuer
extension (legacy OID ...57264.1.1, raw UTF-8: `policy.Identity` reads that one), and an embedded
SCT (RFC 6962 precertificate entry signed by a CT key listed in `ctlogs`); a `dsse` 0.0.1 log
entry (an `intoto` entry is refused) with an inclusion proof + signed checkpoint AND an inclusion
promise (SET over the RFC 8785 JSON of body, integratedTime, logID, logIndex).

Also the legacy key-based path: `KeyPairSigner` and cosign's simple-signing payload.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import struct
from pathlib import Path
from typing import Any

import rfc8785
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

__all__ = [
    "BUNDLE_MEDIA_TYPE",
    "COSIGN_SIGN_PREDICATE",
    "INTOTO_PAYLOAD_TYPE",
    "INTOTO_STATEMENT_TYPE",
    "TRUSTED_ROOT_MEDIA_TYPE",
    "KeyPairSigner",
    "PrivateSigstore",
    "pae",
    "simple_signing_payload",
    "tamper",
    "verify_dsse_bundle",
]

BUNDLE_MEDIA_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
TRUSTED_ROOT_MEDIA_TYPE = "application/vnd.dev.sigstore.trustedroot+json;version=0.1"
COSIGN_SIGN_PREDICATE = "https://sigstore.dev/cosign/sign/v1"
INTOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json"
INTOTO_STATEMENT_TYPE = "https://in-toto.io/Statement/v1"

_ISSUER_OID = ObjectIdentifier("1.3.6.1.4.1.57264.1.1")  # raw UTF-8; what sigstore-python checks
_ISSUER_V2_OID = ObjectIdentifier("1.3.6.1.4.1.57264.1.8")  # DER UTF8String; what cosign prefers
_SCT_OID = ObjectIdentifier("1.3.6.1.4.1.11129.2.4.2")
_EPOCH = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
_REKOR_URL, _FULCIO_URL, _CT_URL = (
    "https://rekor.test.invalid",
    "https://fulcio.test.invalid",
    "https://ctfe.test.invalid",
)
_ORIGIN = "rekor.test.invalid - 1193050959916656506"


# -- encodings ---------------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _spki(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _key_id(key: ec.EllipticCurvePublicKey) -> bytes:
    return hashlib.sha256(_spki(key)).digest()


def _sign(key: ec.EllipticCurvePrivateKey, data: bytes) -> bytes:
    return key.sign(data, ec.ECDSA(hashes.SHA256()))


def _der_length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def _der_utf8(text: str) -> bytes:
    raw = text.encode()
    return b"\x0c" + _der_length(len(raw)) + raw


def _timestamp(when: dt.datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE pre-authentication encoding."""
    t = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(t), t, len(payload), payload)


# -- RFC 6962 Merkle tree ----------------------------------------------------------------------


def _leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def _node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two smaller than n (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


def _tree_hash(leaves: list[bytes]) -> bytes:
    if len(leaves) == 1:
        return leaves[0]
    k = _split(len(leaves))
    return _node_hash(_tree_hash(leaves[:k]), _tree_hash(leaves[k:]))


def _audit_path(index: int, leaves: list[bytes]) -> list[bytes]:
    """RFC 6962 PATH(index, leaves), from the leaf's sibling up to the root's child."""
    if len(leaves) == 1:
        return []
    k = _split(len(leaves))
    if index < k:
        return [*_audit_path(index, leaves[:k]), _tree_hash(leaves[k:])]
    return [*_audit_path(index - k, leaves[k:]), _tree_hash(leaves[:k])]


# -- the deployment ----------------------------------------------------------------------------


class PrivateSigstore:
    """A Fulcio-like CA, a Rekor key, a CT log key, and `trusted_root.json` under `workdir`.

    Every `sign_dsse` appends to an in-memory log that starts with `log_padding` unrelated
    entries, so inclusion proofs have real audit paths and non-zero log indexes.
    """

    def __init__(self, workdir: Path, log_padding: int = 5) -> None:
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.ca_key = ec.generate_private_key(ec.SECP256R1())
        self.rekor_key = ec.generate_private_key(ec.SECP256R1())
        self.ct_key = ec.generate_private_key(ec.SECP256R1())
        self._log: list[bytes] = [_leaf_hash(b"padding %d" % i) for i in range(log_padding)]
        name = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "container-lock tests"),
                x509.NameAttribute(NameOID.COMMON_NAME, "test-fulcio"),
            ]
        )
        self.ca_cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(_EPOCH)
            .not_valid_after(_EPOCH + dt.timedelta(days=36500))
            .add_extension(x509.BasicConstraints(ca=True, path_length=1), critical=True)
            .add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(self.ca_key.public_key()), critical=False
            )
            .sign(self.ca_key, hashes.SHA256())
        )
        self.trusted_root_path = self.workdir / "trusted_root.json"
        self.trusted_root_path.write_text(json.dumps(self.trusted_root(), indent=2))

    def trusted_root(self) -> dict[str, Any]:
        """The trusted root document (what `trusted_root.json` holds)."""
        return {
            "mediaType": TRUSTED_ROOT_MEDIA_TYPE,
            "tlogs": [self._log_instance(_REKOR_URL, self.rekor_key)],
            "certificateAuthorities": [
                {
                    "subject": {"organization": "container-lock tests", "commonName": "test-fulcio"},
                    "uri": _FULCIO_URL,
                    "certChain": {
                        "certificates": [
                            {"rawBytes": _b64(self.ca_cert.public_bytes(serialization.Encoding.DER))}
                        ]
                    },
                    "validFor": {"start": _timestamp(_EPOCH)},
                }
            ],
            "ctlogs": [self._log_instance(_CT_URL, self.ct_key)],
            "timestampAuthorities": [],
        }

    @staticmethod
    def _log_instance(url: str, key: ec.EllipticCurvePrivateKey) -> dict[str, Any]:
        return {
            "baseUrl": url,
            "hashAlgorithm": "SHA2_256",
            "publicKey": {
                "rawBytes": _b64(_spki(key.public_key())),
                "keyDetails": "PKIX_ECDSA_P256_SHA_256",
                "validFor": {"start": _timestamp(_EPOCH)},
            },
            "logId": {"keyId": _b64(_key_id(key.public_key()))},
        }

    # -- certificates ------------------------------------------------------------------------

    def leaf(
        self, identity: str, issuer: str, when: dt.datetime
    ) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
        """An ephemeral key and its 10-minute certificate for `identity` from `issuer`, with an SCT."""
        key = ec.generate_private_key(ec.SECP256R1())
        san: x509.GeneralName = (
            x509.RFC822Name(identity)
            if "@" in identity and "://" not in identity
            else x509.UniformResourceIdentifier(identity)
        )
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([]))
            .issuer_name(self.ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(when - dt.timedelta(seconds=30))
            .not_valid_after(when + dt.timedelta(minutes=10))
            .add_extension(
                x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True
            )
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.ca_key.public_key()), critical=False
            )
            .add_extension(x509.SubjectAlternativeName([san]), critical=True)
            .add_extension(x509.UnrecognizedExtension(_ISSUER_OID, issuer.encode()), critical=False)
            .add_extension(x509.UnrecognizedExtension(_ISSUER_V2_OID, _der_utf8(issuer)), critical=False)
        )
        precert = builder.sign(self.ca_key, hashes.SHA256())
        cert = builder.add_extension(self._sct_extension(precert, when), critical=False).sign(
            self.ca_key, hashes.SHA256()
        )
        if cert.tbs_precertificate_bytes != precert.tbs_certificate_bytes:
            raise RuntimeError("precertificate TBS differs from the certificate's; the SCT would not verify")
        return key, cert

    def _sct_extension(self, precert: x509.Certificate, when: dt.datetime) -> x509.UnrecognizedExtension:
        """An embedded SCT list: one v1 SCT over the precert_entry, signed by the CT key."""
        tbs = precert.tbs_certificate_bytes
        millis = int(when.timestamp() * 1000)
        # digitally-signed struct: version, signature_type, timestamp, entry_type=precert(1),
        # issuer_key_hash, tbs (24-bit length), extensions (16-bit length)
        signed = struct.pack("!BBQH", 0, 0, millis, 1) + _key_id(self.ca_key.public_key())
        signed += len(tbs).to_bytes(3, "big") + tbs + struct.pack("!H", 0)
        signature = _sign(self.ct_key, signed)
        sct = (
            struct.pack("!B", 0)
            + _key_id(self.ct_key.public_key())
            + struct.pack("!QH", millis, 0)
            + struct.pack("!BBH", 4, 3, len(signature))  # sha256, ecdsa
            + signature
        )
        sct_list = struct.pack("!HH", len(sct) + 2, len(sct)) + sct
        return x509.UnrecognizedExtension(_SCT_OID, b"\x04" + _der_length(len(sct_list)) + sct_list)

    # -- bundles -----------------------------------------------------------------------------

    def sign_dsse(
        self,
        subject_digest: str,
        predicate_type: str,
        identity: str,
        issuer: str,
        predicate: dict[str, Any] | None = None,
        name: str = "image",
    ) -> bytes:
        """A v0.3 bundle: a DSSE envelope over an in-toto statement about `subject_digest`."""
        algorithm, _, hex_digest = subject_digest.partition(":")
        if algorithm != "sha256" or len(hex_digest) != 64:
            raise ValueError(f"not a sha256 digest: {subject_digest!r}")
        statement = {
            "_type": INTOTO_STATEMENT_TYPE,
            "subject": [{"name": name, "digest": {"sha256": hex_digest}}],
            "predicateType": predicate_type,
            "predicate": predicate or {},
        }
        payload = json.dumps(statement, separators=(",", ":")).encode()
        when = dt.datetime.now(dt.UTC).replace(microsecond=0)
        key, cert = self.leaf(identity, issuer, when)
        signature = _sign(key, pae(INTOTO_PAYLOAD_TYPE, payload))
        envelope = {
            "payload": _b64(payload),
            "payloadType": INTOTO_PAYLOAD_TYPE,
            "signatures": [{"sig": _b64(signature), "keyid": ""}],
        }
        envelope_hash = hashlib.sha256(rfc8785.dumps(envelope)).hexdigest()  # unverifiable by design
        body = {
            "apiVersion": "0.0.1",
            "kind": "dsse",
            "spec": {
                "envelopeHash": {"algorithm": "sha256", "value": envelope_hash},
                "payloadHash": {"algorithm": "sha256", "value": hashlib.sha256(payload).hexdigest()},
                "signatures": [
                    {
                        "signature": _b64(signature),
                        "verifier": _b64(cert.public_bytes(serialization.Encoding.PEM)),
                    }
                ],
            },
        }
        bundle = {
            "mediaType": BUNDLE_MEDIA_TYPE,
            "verificationMaterial": {
                "certificate": {"rawBytes": _b64(cert.public_bytes(serialization.Encoding.DER))},
                "tlogEntries": [self._log_append(rfc8785.dumps(body), int(when.timestamp()))],
            },
            "dsseEnvelope": envelope,
        }
        return json.dumps(bundle, indent=2).encode()

    def _log_append(self, body: bytes, integrated_time: int) -> dict[str, Any]:
        """Append `body` to the log: its entry with inclusion proof, signed checkpoint and SET."""
        index = len(self._log)
        self._log.append(_leaf_hash(body))
        size, root = len(self._log), _tree_hash(self._log)
        log_id = _key_id(self.rekor_key.public_key())
        note = f"{_ORIGIN}\n{size}\n{_b64(root)}\n"
        note_sig = _sign(self.rekor_key, note.encode())
        checkpoint = f"{note}\n\u2014 rekor.test.invalid {_b64(log_id[:4] + note_sig)}\n"
        promise = rfc8785.dumps(
            {"body": _b64(body), "integratedTime": integrated_time, "logID": log_id.hex(), "logIndex": index}
        )
        return {
            "logIndex": str(index),
            "logId": {"keyId": _b64(log_id)},
            "kindVersion": {"kind": "dsse", "version": "0.0.1"},
            "integratedTime": str(integrated_time),
            "inclusionPromise": {"signedEntryTimestamp": _b64(_sign(self.rekor_key, promise))},
            "inclusionProof": {
                "logIndex": str(index),
                "rootHash": _b64(root),
                "treeSize": str(size),
                "hashes": [_b64(h) for h in _audit_path(index, self._log)],
                "checkpoint": {"envelope": checkpoint},
            },
            "canonicalizedBody": _b64(body),
        }


def tamper(bundle: bytes) -> bytes:
    """The same bundle with its DSSE payload's subject digest changed, not re-signed."""
    doc = json.loads(bundle)
    statement = json.loads(base64.b64decode(doc["dsseEnvelope"]["payload"]))
    statement["subject"][0]["digest"]["sha256"] = "0" * 64
    doc["dsseEnvelope"]["payload"] = _b64(json.dumps(statement, separators=(",", ":")).encode())
    return json.dumps(doc, indent=2).encode()


def verify_dsse_bundle(
    trusted_root_path: Path | str, bundle_bytes: bytes, identity: str, issuer: str
) -> tuple[str, bytes]:
    """Offline verification as product code should call it; raises `sigstore.errors.VerificationError`."""
    from sigstore.models import Bundle, TrustedRoot
    from sigstore.verify import Verifier
    from sigstore.verify.policy import Identity

    verifier = Verifier(trusted_root=TrustedRoot.from_file(str(trusted_root_path)))
    bundle = Bundle.from_json(bundle_bytes)
    return verifier.verify_dsse(bundle, Identity(identity=identity, issuer=issuer))


# -- legacy key-based signatures -----------------------------------------------------------------


def simple_signing_payload(docker_reference: str, manifest_digest: str) -> bytes:
    """cosign's simple-signing payload (what `cosign sign --key` signs), compact JSON."""
    return json.dumps(
        {
            "critical": {
                "identity": {"docker-reference": docker_reference},
                "image": {"docker-manifest-digest": manifest_digest},
                "type": "cosign container image signature",
            },
            "optional": None,
        },
        separators=(",", ":"),
    ).encode()


class KeyPairSigner:
    """Legacy `cosign sign --key`: an ECDSA P-256 key pair; the PEM public key in `workdir/cosign.pub`."""

    payload = staticmethod(simple_signing_payload)

    def __init__(self, workdir: Path, name: str = "cosign.pub") -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.public_key_pem = self.key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.public_key_path = workdir / name
        self.public_key_path.write_bytes(self.public_key_pem)

    def sign(self, payload: bytes) -> str:
        """Base64 ASN.1 ECDSA-SHA256 signature, as in the `dev.cosignproject.cosign/signature` annotation."""
        return _b64(_sign(self.key, payload))
