"""A private Sigstore deployment for tests: CA, transparency log and CT log keys, a trusted root,
and bundles that sigstore-python verifies offline. Never talks to public Sigstore.

What sigstore-python 4.5.1 checks, and so what this writes (see shared ARCHITECTURE notes):
a leaf certificate with an empty subject, a critical SAN (the identity), AKI, KeyUsage
digitalSignature, EKU codeSigning, the OIDC issuer extension, and an embedded SCT (RFC 6962
precertificate entry signed by a CT key listed in `ctlogs`); a `dsse` 0.0.1 log entry with
an inclusion proof + signed checkpoint and an inclusion promise (SET over the RFC 8785 JSON
of body, integratedTime, logID, logIndex).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import struct
from dataclasses import dataclass
from pathlib import Path

import rfc8785
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

BUNDLE_MEDIA_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
TRUSTED_ROOT_MEDIA_TYPE = "application/vnd.dev.sigstore.trustedroot+json;version=0.1"
COSIGN_SIGN_PREDICATE = "https://sigstore.dev/cosign/sign/v1"
INTOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json"
_ISSUER_OID = ObjectIdentifier("1.3.6.1.4.1.57264.1.1")
_SCT_OID = ObjectIdentifier("1.3.6.1.4.1.11129.2.4.2")
_EPOCH = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _spki(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _key_id(key: ec.EllipticCurvePublicKey) -> bytes:
    return hashlib.sha256(_spki(key)).digest()


def _sign(key: ec.EllipticCurvePrivateKey, data: bytes) -> bytes:
    return key.sign(data, ec.ECDSA(hashes.SHA256()))


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE pre-authentication encoding."""
    t = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(t), t, len(payload), payload)


def _log_entry(key: dict) -> dict:
    return {
        "baseUrl": key["url"],
        "hashAlgorithm": "SHA2_256",
        "publicKey": {
            "rawBytes": _b64(_spki(key["key"].public_key())),
            "keyDetails": "PKIX_ECDSA_P256_SHA_256",
            "validFor": {"start": _EPOCH.strftime("%Y-%m-%dT%H:%M:%SZ")},
        },
        "logId": {"keyId": _b64(_key_id(key["key"].public_key()))},
    }


@dataclass
class PrivateSigstore:
    """Keys and a trusted root written under `workdir`."""

    workdir: Path

    def __post_init__(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.ca_key = ec.generate_private_key(ec.SECP256R1())
        self.rekor_key = ec.generate_private_key(ec.SECP256R1())
        self.ct_key = ec.generate_private_key(ec.SECP256R1())
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
            .serial_number(1)
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
        root = {
            "mediaType": TRUSTED_ROOT_MEDIA_TYPE,
            "tlogs": [_log_entry({"url": "https://rekor.test.invalid", "key": self.rekor_key})],
            "certificateAuthorities": [
                {
                    "subject": {"organization": "container-lock tests", "commonName": "test-fulcio"},
                    "uri": "https://fulcio.test.invalid",
                    "certChain": {
                        "certificates": [
                            {"rawBytes": _b64(self.ca_cert.public_bytes(serialization.Encoding.DER))}
                        ]
                    },
                    "validFor": {"start": _EPOCH.strftime("%Y-%m-%dT%H:%M:%SZ")},
                }
            ],
            "ctlogs": [_log_entry({"url": "https://ctfe.test.invalid", "key": self.ct_key})],
            "timestampAuthorities": [],
        }
        self.trusted_root_path = self.workdir / "trusted_root.json"
        self.trusted_root_path.write_text(json.dumps(root, indent=2))

    # -- certificates ----------------------------------------------------------------------------

    def _leaf_builder(
        self, key: ec.EllipticCurvePrivateKey, identity: str, issuer: str, when: dt.datetime
    ) -> x509.CertificateBuilder:
        san = (
            x509.RFC822Name(identity)
            if "@" in identity and "://" not in identity
            else x509.UniformResourceIdentifier(identity)
        )
        return (
            x509.CertificateBuilder()
            .subject_name(x509.Name([]))
            .issuer_name(self.ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(when - dt.timedelta(minutes=1))
            .not_valid_after(when + dt.timedelta(minutes=10))
            .add_extension(
                x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True
            )
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
            .add_extension(x509.SubjectAlternativeName([san]), critical=True)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.ca_key.public_key()), critical=False
            )
            .add_extension(x509.UnrecognizedExtension(_ISSUER_OID, issuer.encode()), critical=False)
        )

    def _sct_extension(self, precert: x509.Certificate, when: dt.datetime) -> x509.UnrecognizedExtension:
        """An embedded SCT over the precertificate (RFC 6962 precert_entry), signed by the CT key."""
        tbs = precert.tbs_certificate_bytes
        millis = int(when.timestamp() * 1000)
        issuer_key_hash = _key_id(self.ca_key.public_key())
        signed = struct.pack("!BBQH", 0, 0, millis, 1) + issuer_key_hash
        signed += struct.pack("!I", len(tbs))[1:] + tbs + struct.pack("!H", 0)
        signature = _sign(self.ct_key, signed)
        sct = (
            struct.pack("!B", 0)
            + _key_id(self.ct_key.public_key())
            + struct.pack("!QH", millis, 0)
            + struct.pack("!BBH", 4, 3, len(signature))
            + signature
        )
        sct_list = struct.pack("!H", len(sct) + 2) + struct.pack("!H", len(sct)) + sct
        der_octets = b"\x04" + _der_length(len(sct_list)) + sct_list
        return x509.UnrecognizedExtension(_SCT_OID, der_octets)

    def leaf(
        self, identity: str, issuer: str, when: dt.datetime
    ) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
        """A short-lived signing certificate for `identity` from `issuer`, with its SCT."""
        key = ec.generate_private_key(ec.SECP256R1())
        builder = self._leaf_builder(key, identity, issuer, when)
        precert = builder.sign(self.ca_key, hashes.SHA256())
        cert = builder.add_extension(self._sct_extension(precert, when), critical=False).sign(
            self.ca_key, hashes.SHA256()
        )
        if cert.tbs_precertificate_bytes != precert.tbs_certificate_bytes:
            raise RuntimeError("precertificate TBS differs from the certificate's; the SCT would not verify")
        return key, cert

    # -- bundles ---------------------------------------------------------------------------------

    def sign_dsse(
        self,
        subject_digest: str,
        predicate_type: str,
        identity: str,
        issuer: str,
        predicate: dict | None = None,
        name: str = "image",
    ) -> bytes:
        """A v0.3 bundle: DSSE envelope over an in-toto statement about `subject_digest`."""
        statement = {
            "_type": "https://in-toto.io/Statement/v1",
            "subject": [{"name": name, "digest": {"sha256": subject_digest.split(":", 1)[1]}}],
            "predicateType": predicate_type,
            "predicate": predicate or {},
        }
        payload = json.dumps(statement, sort_keys=True).encode()
        when = dt.datetime.now(dt.UTC).replace(microsecond=0)
        key, cert = self.leaf(identity, issuer, when)
        signature = _sign(key, pae(INTOTO_PAYLOAD_TYPE, payload))
        envelope = {
            "payload": _b64(payload),
            "payloadType": INTOTO_PAYLOAD_TYPE,
            "signatures": [{"sig": _b64(signature), "keyid": ""}],
        }
        body = {
            "apiVersion": "0.0.1",
            "kind": "dsse",
            "spec": {
                "envelopeHash": {
                    "algorithm": "sha256",
                    "value": hashlib.sha256(json.dumps(envelope).encode()).hexdigest(),
                },
                "payloadHash": {"algorithm": "sha256", "value": hashlib.sha256(payload).hexdigest()},
                "signatures": [
                    {
                        "signature": _b64(signature),
                        "verifier": _b64(cert.public_bytes(serialization.Encoding.PEM)),
                    }
                ],
            },
        }
        body_bytes = rfc8785.dumps(body)
        return json.dumps(
            {
                "mediaType": BUNDLE_MEDIA_TYPE,
                "verificationMaterial": {
                    "certificate": {"rawBytes": _b64(cert.public_bytes(serialization.Encoding.DER))},
                    "tlogEntries": [self._tlog_entry(body_bytes, int(when.timestamp()))],
                },
                "dsseEnvelope": envelope,
            },
            indent=2,
        ).encode()

    def _tlog_entry(self, body: bytes, integrated_time: int) -> dict:
        """A log of one entry: inclusion proof (root = leaf hash), signed checkpoint, and SET."""
        log_id = _key_id(self.rekor_key.public_key())
        root_hash = hashlib.sha256(b"\x00" + body).digest()
        note = f"rekor.test.invalid - 1\n1\n{_b64(root_hash)}\n"
        note_sig = _sign(self.rekor_key, note.encode())
        checkpoint = f"{note}\n\u2014 rekor.test.invalid {_b64(log_id[:4] + note_sig)}\n"
        promise = rfc8785.dumps(
            {"body": _b64(body), "integratedTime": integrated_time, "logID": log_id.hex(), "logIndex": 0}
        )
        return {
            "logIndex": "0",
            "logId": {"keyId": _b64(log_id)},
            "kindVersion": {"kind": "dsse", "version": "0.0.1"},
            "integratedTime": str(integrated_time),
            "inclusionPromise": {"signedEntryTimestamp": _b64(_sign(self.rekor_key, promise))},
            "inclusionProof": {
                "logIndex": "0",
                "rootHash": _b64(root_hash),
                "treeSize": "1",
                "hashes": [],
                "checkpoint": {"envelope": checkpoint},
            },
            "canonicalizedBody": _b64(body),
        }


def tamper(bundle: bytes) -> bytes:
    """The same bundle with its DSSE payload changed and not re-signed."""
    doc = json.loads(bundle)
    statement = json.loads(base64.b64decode(doc["dsseEnvelope"]["payload"]))
    statement["subject"][0]["digest"]["sha256"] = "0" * 64
    doc["dsseEnvelope"]["payload"] = _b64(json.dumps(statement, sort_keys=True).encode())
    return json.dumps(doc).encode()


def _der_length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


class KeyPairSigner:
    """Legacy `cosign sign --key`: an ECDSA P-256 key pair and simple-signing payloads."""

    def __init__(self, workdir: Path) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.public_key_path = workdir / "cosign.pub"
        self.public_key_path.write_bytes(
            self.key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )

    @staticmethod
    def payload(docker_reference: str, manifest_digest: str) -> bytes:
        return json.dumps(
            {
                "critical": {
                    "identity": {"docker-reference": docker_reference},
                    "image": {"docker-manifest-digest": manifest_digest},
                    "type": "cosign container image signature",
                },
                "optional": None,
            }
        ).encode()

    def sign(self, payload: bytes) -> str:
        """The base64 signature cosign puts in the `dev.cosignproject.cosign/signature` annotation."""
        return _b64(_sign(self.key, payload))
