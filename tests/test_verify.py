"""`container-lock verify` against a private Sigstore (made by the tests) and the loopback registry."""

from __future__ import annotations

import json
import logging
import subprocess
import sys

import bb
import bb.event
import pytest

from containerlock.lock import lockfile
from tests.harness.oci_push import OCI_MANIFEST, attach_bundle, attach_legacy_signature
from tests.harness.sigstore_fixture import COSIGN_SIGN_PREDICATE, KeyPairSigner, PrivateSigstore, tamper

IDENTITY, ISSUER = "release@team.example", "https://issuer.team.example"


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "audit", *args], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def signed_world(tmp_path_factory, registry, image_factory):
    """Images with every kind of (bad) signature, a policy naming the signers, a trust root."""
    work = tmp_path_factory.mktemp("verify")
    sigstore = PrivateSigstore(work / "sigstore")
    legacy_key, other_key = KeyPairSigner(work), KeyPairSigner(work / "sigstore")
    host = registry.host
    images = {
        name: image_factory.single_arch(f"verify/{name}", tag="1.0")
        for name in (
            "good",
            "wrong-identity",
            "wrong-issuer",
            "other-digest",
            "tampered",
            "missing",
            "attestation",
            "legacy",
            "legacy-wrong-key",
            "legacy-keyless",
        )
    }
    multi = image_factory.multi_arch("verify/multi", tag="1.0")

    def attach(name: str, bundle: bytes) -> None:
        image = images[name]
        attach_bundle(
            host, image.repository, {"mediaType": OCI_MANIFEST, "digest": image.digest, "size": 1}, bundle
        )

    def sign(
        digest: str, identity: str = IDENTITY, issuer: str = ISSUER, predicate: str = COSIGN_SIGN_PREDICATE
    ):
        return sigstore.sign_dsse(digest, predicate, identity, issuer)

    attach("good", sign(images["good"].digest))
    attach("wrong-identity", sign(images["wrong-identity"].digest, identity="intruder@evil.example"))
    attach("wrong-issuer", sign(images["wrong-issuer"].digest, issuer="https://issuer.evil.example"))
    attach("other-digest", sign(images["good"].digest))
    attach("tampered", tamper(sign(images["tampered"].digest)))
    attach("attestation", sign(images["attestation"].digest, predicate="https://slsa.dev/provenance/v1"))
    for name, signer in (("legacy", legacy_key), ("legacy-wrong-key", other_key)):
        image = images[name]
        payload = KeyPairSigner.payload(f"{host}/{image.repository}", image.digest)
        attach_legacy_signature(host, image.repository, image.digest, payload, signer.sign(payload))
    keyless = images["legacy-keyless"]
    keyless_payload = KeyPairSigner.payload(f"{host}/{keyless.repository}", keyless.digest)
    attach_legacy_signature(
        host,
        keyless.repository,
        keyless.digest,
        keyless_payload,
        other_key.sign(keyless_payload),
        certificate="-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
    )
    for platform in multi.platforms.values():  # each platform manifest signed, not the index
        attach_bundle(
            host,
            multi.repository,
            {"mediaType": OCI_MANIFEST, "digest": platform.manifest_digest, "size": 1},
            sign(platform.manifest_digest),
        )

    policy = work / "policy.toml"
    policy.write_text(
        'version = 1\n[rules]\nunsigned = "deny"\n'
        f'[[signers]]\nimages = ["{host}/verify/*"]\nissuer = "{ISSUER}"\n'
        'identity_regex = "^release@team\\\\.example$"\n'
        f'[[signers]]\nimages = ["{host}/verify/legacy", "{host}/verify/legacy-wrong-key"]\n'
        f'key = "{legacy_key.public_key_path}"\n'
    )
    layer = work / "layer"
    layer.mkdir()
    urls = [f"docker://{host}/{i.repository};tag=1.0;digest={i.digest}" for i in images.values()]
    urls.append(f"docker://{host}/{multi.repository};tag=1.0")
    (layer / "signed_1.0.bb").write_text(f'SRC_URI = "{" ".join(urls)}"\n')
    lock = work / "lock.json"
    assert cli("update", str(layer), "--lockfile", str(lock)).returncode == 0
    result = cli(
        "verify",
        str(layer),
        "--lockfile",
        str(lock),
        "--policy",
        str(policy),
        "--trusted-root",
        str(sigstore.trusted_root_path),
        "--record",
        "--json",
    )
    report = {i["reference"].split("/", 1)[1]: i for i in json.loads(result.stdout)["images"]}
    return {
        "result": result,
        "report": report,
        "images": images,
        "multi": multi,
        "lock": lock,
        "sigstore": sigstore,
        "policy": policy,
        "layer": layer,
    }


def details(item: dict) -> str:
    return " | ".join(e["detail"] for e in item["evidence"])


def test_valid_signature_passes_and_is_recorded(signed_world) -> None:
    good = signed_world["report"]["verify/good:1.0"]
    assert good["status"] == "verified" and good["signed_digests"] == [signed_world["images"]["good"].digest]
    assert f"signed by {IDENTITY} (issuer {ISSUER})" in details(good)
    entry = lockfile.load(signed_world["lock"]).entries[
        f"{signed_world['images']['good'].host}/verify/good:1.0"
    ]
    assert entry.verified and entry.verified[0]["kind"] == "bundle"
    assert signed_world["result"].returncode == 1  # other images fail the policy


@pytest.mark.parametrize(
    ("name", "status", "complaint"),
    [
        (
            "wrong-identity",
            "wrong identity",
            "signed by intruder@evil.example (issuer https://issuer.team.example), which no required",
        ),
        (
            "wrong-issuer",
            "wrong issuer",
            "(issuer https://issuer.evil.example), which no required signer accepts",
        ),
        ("other-digest", "other digest", "the signed statement is about another digest"),
        ("tampered", "invalid signature", "bundle does not verify: DSSE: invalid signature"),
        (
            "attestation",
            "attestation only",
            "an attestation (https://slsa.dev/provenance/v1), not a signature",
        ),
        ("legacy-wrong-key", "invalid signature", "legacy signature present, but no policy key verifies it"),
        ("legacy-keyless", "not verifiable", "keyless legacy signature present, not verifiable offline"),
    ],
)
def test_bad_signatures_fail_with_a_specific_status_and_message(
    signed_world, name, status, complaint
) -> None:
    item = signed_world["report"][f"verify/{name}:1.0"]
    assert item["status"] == status
    assert complaint in details(item)
    for evidence in item["evidence"]:  # each detail names the signature artifact's own digest
        assert evidence["source"].startswith("sha256:") and evidence["source"] in evidence["detail"]


def test_verify_uses_sigstore_policies_without_the_no_op_warning(signed_world) -> None:
    """Identity/issuer are checked by a sigstore VerificationPolicy, not after an UnsafeNoOp pass."""
    stderr = signed_world["result"].stderr
    assert "no-op" not in stderr.lower() and "unsafe" not in stderr.lower(), stderr


def test_missing_signature_fails(signed_world) -> None:
    item = signed_world["report"]["verify/missing:1.0"]
    assert item["status"] == "unsigned" and item["evidence"] == []


def test_legacy_key_signature_verifies(signed_world) -> None:
    item = signed_world["report"]["verify/legacy:1.0"]
    assert item["status"] == "verified" and "signed with cosign.pub" in details(item)


def test_multi_arch_pin_says_which_digests_were_signed(signed_world) -> None:
    multi = signed_world["multi"]
    item = signed_world["report"]["verify/multi:1.0"]
    assert item["status"] == "verified"
    assert item["signed_digests"] == sorted(p.manifest_digest for p in multi.platforms.values())
    assert multi.digest not in item["signed_digests"]  # the platform manifests, not the index


def test_offline_build_can_require_verified_pins(signed_world, build) -> None:
    host = signed_world["images"]["good"].host
    build.set(CONTAINER_LOCKFILE=str(signed_world["lock"]), CONTAINER_REQUIRE_VERIFIED="1")
    for name in ("good", "missing"):
        build.write_recipe(f"req-{name}_1.0", f'SRC_URI = "docker://{host}/verify/{name};tag=1.0"\n')
    recipes = [build.recipes / f"req-{name}_1.0.bb" for name in ("good", "missing")]
    d = None
    for recipe in recipes:
        d = build.parse(recipe)
    with pytest.raises(bb.BBHandledException):
        build.start_build(d, *recipes)
    message = build.events.messages(logging.CRITICAL)[-1]
    assert "verify/missing;tag=1.0" in message and "no signature verified at lock time" in message
    assert "req-good" not in message


def test_human_output_and_bad_trust_root(signed_world, tmp_path) -> None:
    text = cli(
        "verify",
        str(signed_world["layer"]),
        "--lockfile",
        str(signed_world["lock"]),
        "--policy",
        str(signed_world["policy"]),
        "--trusted-root",
        str(signed_world["sigstore"].trusted_root_path),
    )
    assert text.returncode == 1 and "verified" in text.stdout and "unsigned" in text.stdout
    missing = cli("verify", str(signed_world["layer"]), "--trusted-root", str(tmp_path / "nope.json"))
    assert missing.returncode == 2


def verify_only(world: dict, tmp_path, names: list[str], policy_text: str, *extra: str):
    """`verify --json` of the named images alone, with a policy written from `policy_text`."""
    host = world["images"]["good"].host
    layer = tmp_path / "only"
    layer.mkdir(exist_ok=True)
    urls = [f"docker://{host}/verify/{n};tag=1.0;digest={world['images'][n].digest}" for n in names]
    (layer / "only_1.0.bb").write_text(f'SRC_URI = "{" ".join(urls)}"\n')
    policy = tmp_path / "policy.toml"
    policy.write_text(policy_text.format(host=host, issuer=ISSUER, identity=IDENTITY))
    trusted = str(world["sigstore"].trusted_root_path)
    args = ["verify", str(layer), "--policy", str(policy), "--trusted-root", trusted, "--json", *extra]
    return subprocess.run(
        [sys.executable, "-m", "audit", *args], capture_output=True, text=True, cwd=tmp_path, timeout=300
    )


SIGNERS = '[[signers]]\nimages = ["{host}/verify/*"]\nissuer = "{issuer}"\nidentity = "{identity}"\n'


@pytest.mark.parametrize("extends", ['extends = "default"\n', 'extends = "strict"\n', ""])
@pytest.mark.parametrize("name", ["missing", "tampered", "wrong-identity", "other-digest"])
def test_required_signature_fails_closed_by_default(signed_world, tmp_path, extends, name) -> None:
    """Signers apply ⇒ anything but `verified` exits 1, whatever policy it extends."""
    result = verify_only(signed_world, tmp_path, [name], "version = 1\n" + extends + SIGNERS)
    assert result.returncode == 1, result.stdout + result.stderr
    (item,) = json.loads(result.stdout)["images"]
    assert item["status"] not in ("verified", "not required")
    assert f"verify/{name}:1.0" in result.stderr and "not verified" in result.stderr


def test_only_an_explicit_warning_relaxes_it(signed_world, tmp_path) -> None:
    relaxed = 'version = 1\n[rules]\nunsigned = "warning"\n' + SIGNERS
    result = verify_only(signed_world, tmp_path, ["missing", "tampered", "good"], relaxed)
    assert result.returncode == 0, result.stdout + result.stderr
    statuses = sorted(i["status"] for i in json.loads(result.stdout)["images"])
    assert statuses == ["invalid signature", "unsigned", "verified"]


def test_verified_and_not_required_pass(signed_world, tmp_path) -> None:
    policy = "version = 1\n" + SIGNERS.replace("verify/*", "verify/good")
    result = verify_only(signed_world, tmp_path, ["good", "missing"], policy)
    assert result.returncode == 0, result.stdout + result.stderr
    statuses = {i["reference"].rsplit("/", 1)[1]: i["status"] for i in json.loads(result.stdout)["images"]}
    assert statuses == {"good:1.0": "verified", "missing:1.0": "not required"}


@pytest.mark.parametrize(
    ("key", "complaint"),
    [
        (None, "cannot read the public key"),
        ("not a key\n", "not a PEM public key"),
    ],
)
def test_bad_key_file_is_bad_input_even_without_signatures(signed_world, tmp_path, key, complaint) -> None:
    key_path = tmp_path / "cosign.pub"
    if key is not None:
        key_path.write_text(key)
    policy = f'version = 1\n[[signers]]\nimages = ["{{host}}/verify/*"]\nkey = "{key_path}"\n'
    result = verify_only(signed_world, tmp_path, ["missing"], policy)
    assert result.returncode == 2, result.stdout + result.stderr
    assert str(key_path) in result.stderr and complaint in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""


def test_bad_trusted_root_is_bad_input(signed_world, tmp_path) -> None:
    root = tmp_path / "root.json"
    root.write_text('{"mediaType": "something else"}\n')
    host = signed_world["images"]["good"].host
    (tmp_path / "r.bb").write_text(
        f'SRC_URI = "docker://{host}/verify/missing;tag=1.0;digest={signed_world["images"]["missing"].digest}"\n'
    )
    policy = tmp_path / "p.toml"
    policy.write_text("version = 1\n" + SIGNERS.format(host=host, issuer=ISSUER, identity=IDENTITY))
    result = cli("verify", str(tmp_path / "r.bb"), "-p", str(policy), "--trusted-root", str(root))
    assert result.returncode == 2 and "not a Sigstore trusted root" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_unpinned_reference_says_why_and_fails_when_signers_apply(signed_world, tmp_path) -> None:
    host = signed_world["images"]["good"].host
    recipe = tmp_path / "r.bb"
    recipe.write_text(f'SRC_URI = "docker://{host}/verify/good;tag=1.0"\n')
    policy = tmp_path / "p.toml"
    policy.write_text("version = 1\n" + SIGNERS.format(host=host, issuer=ISSUER, identity=IDENTITY))
    trusted = str(signed_world["sigstore"].trusted_root_path)
    result = cli("verify", str(recipe), "-p", str(policy), "--trusted-root", trusted)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "not pinned" in result.stdout and "run `container-lock update` first" in result.stdout
    assert "does not exist: verifying the digests pinned in the recipes only" in result.stderr


def test_missing_lockfile_is_bad_input(tmp_path) -> None:
    for args in (["-l", str(tmp_path / "nope.json")], []):
        result = subprocess.run(
            [sys.executable, "-m", "audit", "verify", *args], capture_output=True, text=True, cwd=tmp_path
        )
        assert result.returncode == 2 and "no such lockfile" in result.stderr, result.stderr
