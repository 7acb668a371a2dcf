"""Find and verify the signatures of pinned images: cosign v3 bundles and legacy `.sig` images.

Bundles (OCI 1.1 artifacts, `application/vnd.dev.sigstore.bundle.v0.3+json`) are found with
the referrers API or, for registries without it, the `sha256-<hex>` tag fallback; sigstore-python
verifies them offline against a trusted root, with a verification policy made of the policy
file's signers (`SignersPolicy`); then the in-toto statement must name the pinned digest and
have cosign's signing predicate type (an attestation alone is not a signature). Legacy
`sha256-<hex>.sig` images made with a key are verified against the key the policy names;
keyless legacy signatures are reported as present but not verifiable offline.
"""

from __future__ import annotations

import base64
import json
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import (
    Certificate,
    ExtensionNotFound,
    RFC822Name,
    SubjectAlternativeName,
    UniformResourceIdentifier,
)
from sigstore.errors import Error as SigstoreError
from sigstore.errors import VerificationError
from sigstore.models import Bundle, TrustedRoot
from sigstore.verify import Verifier
from sigstore.verify.policy import Identity, OIDCIssuer

from containerlock.fetch.skopeo import RegistryError, Skopeo, run_subprocess
from containerlock.files import sha256_digest
from containerlock.lock.policy import Signer

from . import registry_api

BUNDLE_MEDIA_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
SIMPLESIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
COSIGN_SIGN_PREDICATE = "https://sigstore.dev/cosign/sign/v1"
INTOTO = "application/vnd.in-toto+json"

# Why a signature was not accepted (the `failure` of Evidence), most telling first.
FAILURES = (
    "wrong identity",
    "wrong issuer",
    "other digest",
    "attestation only",
    "invalid signature",
    "not verifiable",
)


@dataclass(frozen=True)
class Evidence:
    """One signature found for one digest, and what came of checking it."""

    digest: str  # the digest that was signed (the pin, or a platform manifest of it)
    kind: str  # "bundle" | "legacy"
    verified: bool
    signer: str | None
    detail: str
    source: str  # the bundle's / signature manifest's own digest
    failure: str | None = None  # one of FAILURES when not verified


@dataclass(frozen=True)
class Check:
    """The outcome of checking one signature."""

    signer: str | None
    detail: str
    failure: str | None = None

    @property
    def verified(self) -> bool:
        return self.failure is None


class SignerMismatch(VerificationError):
    """The certificate is valid but no required signer accepts its identity or issuer."""

    def __init__(self, failure: str, message: str) -> None:
        super().__init__(message)
        self.failure = failure


def certificate_identity(cert: Certificate) -> tuple[list[str], str]:
    """The certificate's identities (e-mail and URI SANs) and OIDC issuer, read as sigstore does."""
    san = cert.extensions.get_extension_for_class(SubjectAlternativeName).value
    names = san.get_values_for_type(RFC822Name) + san.get_values_for_type(UniformResourceIdentifier)
    try:
        issuer = cert.extensions.get_extension_for_oid(OIDCIssuer.oid).value.value.decode()  # type: ignore[attr-defined]
    except ExtensionNotFound:  # no issuer: matches no signer
        issuer = ""
    return names, issuer


class SignersPolicy:
    """A sigstore VerificationPolicy: one of the policy file's keyless signers must accept the certificate.

    Signers with an exact identity and issuer are checked by sigstore's own `Identity`
    policy; signers with patterns match the same SAN and issuer values. `accepted` names
    the signer that matched.
    """

    def __init__(self, signers: tuple[Signer, ...]) -> None:
        self.signers = tuple(s for s in signers if not s.key)
        self.accepted: Signer | None = None

    def _accepts(self, signer: Signer, cert: Certificate) -> bool:
        if signer.identity and signer.issuer:
            try:
                Identity(identity=signer.identity, issuer=signer.issuer).verify(cert)
            except VerificationError:
                return False
            return True
        names, issuer = certificate_identity(cert)
        return any(signer.accepts(issuer, name) for name in names)

    def verify(self, cert: Certificate) -> None:
        for signer in self.signers:
            if self._accepts(signer, cert):
                self.accepted = signer
                return
        names, issuer = certificate_identity(cert)
        failure = "wrong identity" if any(s.accepts_issuer(issuer) for s in self.signers) else "wrong issuer"
        identity = ", ".join(names) or "no identity"
        raise SignerMismatch(
            failure, f"signed by {identity} (issuer {issuer}), which no required signer accepts"
        )


def open_bundle(
    bundle_bytes: bytes, signers: tuple[Signer, ...], trusted_root: Path | None, offline: bool
) -> tuple[dict | None, Check]:
    """Verify one bundle with sigstore-python and the signers' policy: the in-toto statement it
    carries (None when it does not verify) and who signed it."""
    policy = SignersPolicy(signers)
    try:
        bundle = Bundle.from_json(bundle_bytes)
        if trusted_root is not None:
            verifier = Verifier(trusted_root=TrustedRoot.from_file(str(trusted_root)))
        else:
            verifier = Verifier.production(offline=offline)
        payload_type, payload = verifier.verify_dsse(bundle, policy)
    except SignerMismatch as err:
        return None, Check(None, str(err), err.failure)
    except (SigstoreError, ValueError) as err:
        return None, Check(None, f"bundle does not verify: {err}", "invalid signature")
    if payload_type != INTOTO:
        return None, Check(
            None, f"payload type {payload_type} is not an in-toto statement", "invalid signature"
        )
    try:
        statement = json.loads(payload)
    except ValueError:
        return None, Check(None, "the signed payload is not JSON", "invalid signature")
    if not isinstance(statement, dict):
        return None, Check(None, "the signed payload is not an in-toto statement", "invalid signature")
    signer = policy.accepted
    names, issuer = certificate_identity(bundle.signing_certificate)
    return statement, Check(
        signer.describe() if signer else None, f"signed by {', '.join(names)} (issuer {issuer})"
    )


def names_digest(statement: dict, digest: str) -> bool:
    """Does the in-toto statement's `subject` name `digest` (sha256)?"""
    subjects = statement.get("subject")
    hexes = (
        {s.get("digest", {}).get("sha256") for s in subjects if isinstance(s, dict)}
        if isinstance(subjects, list)
        else set()
    )
    return digest.split(":", 1)[1] in hexes


def check_bundle(
    bundle_bytes: bytes, digest: str, signers: tuple[Signer, ...], trusted_root: Path | None, offline: bool
) -> Check:
    """Verify one bundle with sigstore-python and the signers' policy, then its statement."""
    statement, check = open_bundle(bundle_bytes, signers, trusted_root, offline)
    if statement is None:
        return check
    if not names_digest(statement, digest):
        return Check(None, f"the signed statement is about another digest, not {digest}", "other digest")
    predicate = statement.get("predicateType")
    if predicate != COSIGN_SIGN_PREDICATE:
        detail = f"an attestation ({predicate}), not a signature ({COSIGN_SIGN_PREDICATE})"
        return Check(None, detail, "attestation only")
    return check


def check_legacy(
    layers: dict[str, bytes], manifest: dict, digest: str, signers: tuple[Signer, ...], base: Path
) -> Check:
    """A `.sig` image: the simple-signing payload must name `digest` and be signed by a policy key."""
    keyed = [s for s in signers if s.key]
    for layer in manifest.get("layers", []):
        if layer.get("mediaType") != SIMPLESIGNING:
            continue
        payload = layers[layer["digest"]]
        annotations = layer.get("annotations", {})
        if "dev.sigstore.cosign/certificate" in annotations and not keyed:
            return Check(None, "keyless legacy signature present, not verifiable offline", "not verifiable")
        claimed = json.loads(payload).get("critical", {}).get("image", {}).get("docker-manifest-digest")
        if claimed != digest:
            return Check(None, f"the signature names {claimed}, not {digest}", "other digest")
        signature = base64.b64decode(annotations.get("dev.cosignproject.cosign/signature", ""))
        for signer in keyed:
            key_path = key_file(signer, base)
            key = serialization.load_pem_public_key(key_path.read_bytes())
            if not isinstance(key, ec.EllipticCurvePublicKey):
                continue  # cosign keys are ECDSA P-256
            try:
                key.verify(signature, payload, ec.ECDSA(hashes.SHA256()))
            except (InvalidSignature, ValueError):
                continue
            return Check(signer.describe(), f"signed with {key_path.name}")
        return Check(None, "legacy signature present, but no policy key verifies it", "invalid signature")
    return Check(None, "no simple-signing payload in the .sig image", "invalid signature")


class TrustInputError(ValueError):
    """A key file or trusted root the verification needs cannot be used (exit status 2)."""


def key_file(signer: Signer, base: Path) -> Path:
    """The public key file a key-based signer names (relative to the policy file's directory)."""
    path = Path(str(signer.key))
    return path if path.is_absolute() else base / path


def check_trust_inputs(signers: tuple[Signer, ...], base: Path, trusted_root: Path | None) -> None:
    """Every key file is an ECDSA public key and the trusted root is one; else TrustInputError.

    Checked before any registry request, so a typo fails even where no signature is found.
    """
    for signer in signers:
        if not signer.key:
            continue
        path = key_file(signer, base)
        try:
            key = serialization.load_pem_public_key(path.read_bytes())
        except OSError as err:
            raise TrustInputError(
                f"{path}: cannot read the public key of signer '{signer.describe()}' ({err.strerror or err})"
            ) from None
        except (ValueError, TypeError) as err:
            raise TrustInputError(
                f"{path}: not a PEM public key (signer '{signer.describe()}'): {err}; "
                "give the .pub file written by `cosign generate-key-pair`"
            ) from None
        if not isinstance(key, ec.EllipticCurvePublicKey):
            raise TrustInputError(f"{path}: a {type(key).__name__}, not an ECDSA key as cosign makes")
    if trusted_root is not None:
        try:
            TrustedRoot.from_file(str(trusted_root))
        except OSError as err:
            raise TrustInputError(
                f"{trusted_root}: cannot read the trusted root ({err.strerror or err})"
            ) from None
        except Exception as err:  # sigstore/pydantic raise several kinds for a file that is not one
            raise TrustInputError(
                f"{trusted_root}: not a Sigstore trusted root ({_trust_root_problem(err)}); give the "
                "trusted_root.json of the Sigstore deployment that signed the images"
            ) from None


def _trust_root_problem(err: Exception) -> str:
    """What is wrong with a trusted root, in a few words (pydantic's first error, not its report)."""
    errors = getattr(err, "errors", None)
    if callable(errors):
        try:
            found = errors(include_url=False, include_input=False)
        except TypeError:
            found = None
        if found:
            first = found[0]
            where = ".".join(str(part) for part in first.get("loc", ()))
            more = f"; {len(found) - 1} more" if len(found) > 1 else ""
            return f"{where + ': ' if where else ''}{first.get('msg', '')}{more}"
    text = str(err).splitlines()[0] if str(err) else ""
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


@dataclass(frozen=True)
class SignatureSource:
    """Reads signature artifacts of one repository with the shared skopeo client."""

    name: str  # host[:port]/path
    timeout: float

    def _skopeo(self) -> Skopeo:
        return Skopeo(run_subprocess, self.name, self.name.split("/", 1)[0], timeout=self.timeout)

    def manifest(self, reference: str) -> bytes | None:
        """The raw manifest of `name` + `reference` (`:tag` or `@digest`), or None if there is none."""
        try:
            return self._skopeo().inspect_raw(f"{self.name}{reference}")
        except RegistryError as err:
            if "does not exist" in str(err):
                return None
            raise

    def layers(self, reference: str) -> dict[str, bytes]:
        """The layer blobs of `name` + `reference`, by digest (via `skopeo copy … dir:`)."""
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "artifact"
            self._skopeo().copy(f"docker://{self.name}{reference}", f"dir:{out}", "--preserve-digests")
            manifest = json.loads((out / "manifest.json").read_text())
            return {
                layer["digest"]: (out / layer["digest"].split(":", 1)[1]).read_bytes()
                for layer in manifest.get("layers", [])
            }

    def bundle_descriptors(self, digest: str) -> list[dict]:
        """Descriptors of bundle artifacts that refer to `digest`: referrers API, else the tag fallback."""
        found = registry_api.referrers(self.name, digest, self.timeout)
        if found is None:
            index = self.manifest(":" + digest.replace(":", "-"))
            found = json.loads(index).get("manifests", []) if index else []
        return [m for m in found if m.get("artifactType") == BUNDLE_MEDIA_TYPE]

    def bundles(self, digest: str) -> Iterator[tuple[str, bytes]]:
        """(bundle digest, bundle JSON) of every bundle artifact that refers to `digest`."""
        for descriptor in self.bundle_descriptors(digest):
            for blob in self.layers("@" + descriptor["digest"]).values():
                if blob.lstrip().startswith(b"{"):
                    yield sha256_digest(blob), blob


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
    source = SignatureSource(name, timeout)
    found: list[Evidence] = []
    for digest in digests:
        for bundle, blob in source.bundles(digest):
            check = check_bundle(blob, digest, signers, trusted_root, offline)
            detail = f"bundle {bundle}: {check.detail}"
            found.append(
                Evidence(digest, "bundle", check.verified, check.signer, detail, bundle, check.failure)
            )
        sig_tag = ":" + digest.replace(":", "-") + ".sig"
        legacy = source.manifest(sig_tag)
        if legacy is not None:
            sig_digest = sha256_digest(legacy)  # over the registry's bytes
            check = check_legacy(source.layers(sig_tag), json.loads(legacy), digest, signers, policy_dir)
            detail = f"signature {sig_digest}: {check.detail}"
            found.append(
                Evidence(digest, "legacy", check.verified, check.signer, detail, sig_digest, check.failure)
            )
    return found
