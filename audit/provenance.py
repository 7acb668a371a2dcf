"""Find and verify SLSA provenance attestations of pinned images, and judge them by the policy.

Attestations are found like signatures: cosign v3 bundles through the referrers API or the
`sha256-<hex>` tag fallback, and legacy `sha256-<hex>.att` images of DSSE envelopes. A bundle
is verified offline by sigstore-python against the trusted root and the policy's signers
(`signatures.open_bundle`); a legacy envelope with the policy's public key. The in-toto
statement (v0.1 or v1) must name the image's digest; its SLSA provenance predicate (v1 or
v0.2) gives the builder, build type and source, which `[[provenance]]` judges.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from containerlock.files import sha256_digest
from containerlock.lock.policy import Signer
from containerlock.lock.provenance import REASONS, Facts, Rule

from .signatures import COSIGN_SIGN_PREDICATE, INTOTO, SignatureSource, key_file, names_digest, open_bundle

SLSA_V1 = "https://slsa.dev/provenance/v1"
SLSA_V02 = "https://slsa.dev/provenance/v0.2"
STATEMENT_TYPES = ("https://in-toto.io/Statement/v0.1", "https://in-toto.io/Statement/v1")
DSSE_LAYER = "application/vnd.dsse.envelope.v1+json"
CERTIFICATE_ANNOTATION = "dev.sigstore.cosign/certificate"


@dataclass(frozen=True)
class Attestation:
    """One attestation found for one digest, and what came of checking it."""

    digest: str  # the image digest it was looked up for
    kind: str  # "bundle" | "legacy"
    source: str  # the attestation's own digest (bundle or DSSE envelope)
    predicate_type: str
    detail: str
    facts: Facts | None = None  # what a verified SLSA provenance says
    failure: str | None = None  # one of provenance.REASONS when not accepted

    def to_json(self) -> dict[str, Any]:
        return {
            "digest": self.digest,
            "kind": self.kind,
            "source": self.source,
            "predicate_type": self.predicate_type,
            "detail": self.detail,
            "facts": self.facts.to_json() if self.facts else None,
            "failure": self.failure,
        }


@dataclass
class ProvenanceVerdict:
    """The provenance of one pinned image: the rule that applies and the attestations found."""

    rule: Rule | None
    attestations: list[Attestation] = field(default_factory=list)

    @property
    def required(self) -> bool:
        return self.rule is not None and self.rule.required

    def accepted(self) -> list[Facts]:
        return [a.facts for a in self.attestations if a.failure is None and a.facts is not None]

    def status(self, pin: str, platforms: list[str]) -> str:
        """verified, not required, or why not (provenance.REASONS)."""
        good = {facts.digest for facts in self.accepted()}
        if pin in good or (platforms and set(platforms) <= good):
            return "verified"
        if not self.required:
            return "not required"
        failures = {a.failure for a in self.attestations if a.failure}
        return next((reason for reason in REASONS if reason in failures), "no attestation")


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE's pre-authentication encoding: what the envelope's signature signs."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


def _commit(digests: object) -> str:
    """A source revision from a digest map (gitCommit, sha1, then any)."""
    if not isinstance(digests, Mapping) or not digests:
        return ""
    for name in ("gitCommit", "sha1", "sha256"):
        if digests.get(name):
            return str(digests[name])
    return str(next(iter(digests.values())))


def _v1_source(definition: Mapping[str, Any]) -> tuple[str, str]:
    """Source URI and revision of a v1 buildDefinition: the first resolved dependency with a
    revision, else the external parameters' source / workflow repository."""
    for dependency in definition.get("resolvedDependencies") or ():
        if isinstance(dependency, Mapping) and dependency.get("uri") and _commit(dependency.get("digest")):
            return str(dependency["uri"]), _commit(dependency.get("digest"))
    external = definition.get("externalParameters") or {}
    candidates = (
        external.get("source"),
        (external.get("workflow") or {}).get("repository")
        if isinstance(external.get("workflow"), Mapping)
        else None,
        external.get("repository"),
    )
    for candidate in candidates:
        if isinstance(candidate, Mapping) and candidate.get("uri"):
            return str(candidate["uri"]), _commit(candidate.get("digest"))
        if isinstance(candidate, str) and candidate:
            return candidate, ""
    return "", ""


def facts_of(statement: Mapping[str, Any], digest: str, source: str, signer: str) -> Facts | None:
    """The provenance facts of a SLSA v1 or v0.2 statement (None: another predicate type)."""
    predicate = statement.get("predicate") or {}
    kind = statement.get("predicateType")
    if not isinstance(predicate, Mapping):
        return None
    if kind == SLSA_V1:
        definition = predicate.get("buildDefinition") or {}
        builder = ((predicate.get("runDetails") or {}).get("builder") or {}).get("id", "")
        uri, revision = _v1_source(definition)
        return Facts(
            digest, kind, str(builder), str(definition.get("buildType", "")), uri, revision, source, signer
        )
    if kind == SLSA_V02:
        config = (predicate.get("invocation") or {}).get("configSource") or {}
        uri, revision = str(config.get("uri", "")), _commit(config.get("digest"))
        if not uri:
            materials = [m for m in predicate.get("materials") or () if isinstance(m, Mapping)]
            uri, revision = (
                (str(materials[0].get("uri", "")), _commit(materials[0].get("digest")))
                if materials
                else ("", "")
            )
        builder = (predicate.get("builder") or {}).get("id", "")
        return Facts(
            digest, kind, str(builder), str(predicate.get("buildType", "")), uri, revision, source, signer
        )
    return None


def judge(
    statement: dict, digest: str, kind: str, source: str, signer: str, rule: Rule | None
) -> Attestation | None:
    """An attestation from a verified statement (None: it is a signature, not an attestation)."""
    predicate = str(statement.get("predicateType", ""))
    if predicate == COSIGN_SIGN_PREDICATE:
        return None
    if statement.get("_type") not in STATEMENT_TYPES:
        return Attestation(
            digest,
            kind,
            source,
            predicate,
            f"not an in-toto statement ({statement.get('_type')})",
            failure="unknown predicate",
        )
    if not names_digest(statement, digest):
        return Attestation(
            digest,
            kind,
            source,
            predicate,
            f"the statement is about another digest, not {digest}",
            failure="other digest",
        )
    facts = facts_of(statement, digest, source, signer)
    if facts is None:
        return Attestation(
            digest,
            kind,
            source,
            predicate,
            f"predicate {predicate} is not SLSA provenance (listed, not judged)",
            failure="unknown predicate",
        )
    described = f"built by {facts.builder_id} from {facts.source_uri or '?'}" + (
        f"@{facts.source_digest}" if facts.source_digest else ""
    )
    problem = rule.problem(facts) if rule else None
    if problem:
        return Attestation(digest, kind, source, predicate, problem[1], facts, problem[0])
    return Attestation(
        digest, kind, source, predicate, f"{described} ({facts.build_type or 'no build type'})", facts
    )


def _legacy(
    envelope_bytes: bytes,
    annotations: Mapping[str, str],
    digest: str,
    signers: tuple[Signer, ...],
    policy_dir: Path,
    rule: Rule | None,
) -> Attestation | None:
    """A DSSE envelope of a `.att` image: verified with a policy key (keyless ones cannot be
    verified offline)."""
    source = sha256_digest(envelope_bytes)
    predicate = annotations.get("predicateType", "")
    try:
        envelope = json.loads(envelope_bytes)
        payload = base64.b64decode(envelope["payload"])
        signatures = [base64.b64decode(s["sig"]) for s in envelope["signatures"]]
        payload_type = str(envelope["payloadType"])
    except (ValueError, KeyError, TypeError) as err:
        return Attestation(
            digest, "legacy", source, predicate, f"not a DSSE envelope ({err})", failure="invalid signature"
        )
    keyed = [s for s in signers if s.key]
    if CERTIFICATE_ANNOTATION in annotations and not keyed:
        return Attestation(
            digest,
            "legacy",
            source,
            predicate,
            "keyless legacy attestation: not verifiable offline",
            failure="not verifiable",
        )
    if not keyed:
        return Attestation(
            digest,
            "legacy",
            source,
            predicate,
            "no policy signer with a key applies to this image",
            failure="untrusted signer",
        )
    signed = pae(payload_type, payload)
    for signer in keyed:
        key = serialization.load_pem_public_key(key_file(signer, policy_dir).read_bytes())
        if not isinstance(key, ec.EllipticCurvePublicKey):
            continue
        for signature in signatures:
            try:
                key.verify(signature, signed, ec.ECDSA(hashes.SHA256()))
            except (InvalidSignature, ValueError):
                continue
            if payload_type != INTOTO:
                return Attestation(
                    digest,
                    "legacy",
                    source,
                    predicate,
                    f"payload type {payload_type} is not in-toto",
                    failure="invalid signature",
                )
            return judge(json.loads(payload), digest, "legacy", source, signer.describe(), rule)
    return Attestation(
        digest, "legacy", source, predicate, "no policy key verifies the envelope", failure="untrusted signer"
    )


def _claimed_predicate(bundle: bytes) -> str:
    """The predicate type a bundle's payload claims, read before verification (to tell a
    signature from an attestation; nothing is trusted from it)."""
    try:
        payload = base64.b64decode(json.loads(bundle)["dsseEnvelope"]["payload"])
        return str(json.loads(payload).get("predicateType", ""))
    except (ValueError, KeyError, TypeError, AttributeError):
        return ""


def find_and_verify(
    name: str,
    digests: list[str],
    signers: tuple[Signer, ...],
    rule: Rule | None,
    trusted_root: Path | None,
    offline: bool,
    policy_dir: Path,
    timeout: float = 60.0,
) -> list[Attestation]:
    """The attestations of the pinned digest and, for an index, of its platform manifests."""
    source = SignatureSource(name, timeout)
    found: list[Attestation] = []
    for digest in digests:
        for bundle, blob in source.bundles(digest):
            claimed = _claimed_predicate(blob)
            if claimed == COSIGN_SIGN_PREDICATE:
                continue  # a signature: `verify` checks those
            if not any(not s.key for s in signers):
                detail = "no keyless signer of the policy applies to this image"
                found.append(
                    Attestation(digest, "bundle", bundle, claimed, detail, failure="untrusted signer")
                )
                continue
            statement, check = open_bundle(blob, signers, trusted_root, offline)
            if statement is None:
                failure = (
                    "untrusted signer"
                    if check.failure in ("wrong identity", "wrong issuer")
                    else "invalid signature"
                )
                found.append(Attestation(digest, "bundle", bundle, claimed, check.detail, failure=failure))
                continue
            attestation = judge(statement, digest, "bundle", bundle, check.signer or "", rule)
            if attestation is not None:
                found.append(attestation)
        att_tag = ":" + digest.replace(":", "-") + ".att"
        manifest = source.manifest(att_tag)
        if manifest is None:
            continue
        layers = source.layers(att_tag)
        for layer in json.loads(manifest).get("layers", []):
            if layer.get("mediaType") != DSSE_LAYER:
                continue
            attestation = _legacy(
                layers[layer["digest"]], layer.get("annotations") or {}, digest, signers, policy_dir, rule
            )
            if attestation is not None:
                found.append(attestation)
    return found
