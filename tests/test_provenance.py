"""SLSA provenance: attestations made as cosign makes them (v3 bundles, legacy `.att` images),
verified offline against a private Sigstore, judged by `[[provenance]]`, recorded in the lock,
enforced by the layer before any download, carried into the SBOM."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import logging
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import bb
import pytest

from audit.provenance import SLSA_V02, SLSA_V1, pae
from containerlock.lock import lockfile
from tests.harness.containers_conf import write_registries_conf
from tests.harness.images import ImageFactory
from tests.harness.oci_push import (
    CREDENTIALS,
    OCI_MANIFEST,
    attach_bundle,
    attach_legacy_attestation,
)
from tests.harness.registry import Registry
from tests.harness.sigstore_fixture import COSIGN_SIGN_PREDICATE, KeyPairSigner, PrivateSigstore, tamper
from tests.test_sbom import SBOM_TASKS

IDENTITY, ISSUER = "ci@team.example", "https://issuer.team.example"
BUILDER = "https://ci.team.example/builders/container@v2"
BUILD_TYPE = "https://ci.team.example/buildtypes/container/v1"
SOURCE = "git+https://git.team.example/platform/app@refs/heads/main"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
V02_BUILDER = "https://ci.team.example/builders/legacy@v1"
V02_TYPE = "https://ci.team.example/buildtypes/legacy/v0"
V02_SOURCE = "git+https://git.team.example/platform/tool"


def slsa_v1(builder: str = BUILDER, source: str = SOURCE, build_type: str = BUILD_TYPE) -> dict[str, Any]:
    """A SLSA v1 provenance predicate as a CI builder writes it."""
    return {
        "buildDefinition": {
            "buildType": build_type,
            "externalParameters": {
                "workflow": {"ref": "refs/heads/main", "repository": source.split("@")[0]}
            },
            "internalParameters": {},
            "resolvedDependencies": [{"uri": source, "digest": {"gitCommit": COMMIT}}],
        },
        "runDetails": {"builder": {"id": builder}, "metadata": {"invocationId": "run-42"}},
    }


def slsa_v02() -> dict[str, Any]:
    return {
        "builder": {"id": V02_BUILDER},
        "buildType": V02_TYPE,
        "invocation": {
            "configSource": {"uri": V02_SOURCE, "digest": {"sha1": COMMIT}, "entryPoint": "build.yml"}
        },
        "materials": [{"uri": V02_SOURCE, "digest": {"sha1": COMMIT}}],
    }


def cli(*args: object, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "audit", *map(str, args)], capture_output=True, text=True, timeout=300, env=env
    )


def _envelope(key: KeyPairSigner, statement: dict[str, Any]) -> bytes:
    """A DSSE envelope signed with the key, as `cosign attest --key` writes into a `.att` layer."""
    payload = json.dumps(statement).encode()
    signature = key.sign(pae("application/vnd.in-toto+json", payload))
    return json.dumps(
        {
            "payloadType": "application/vnd.in-toto+json",
            "payload": base64.b64encode(payload).decode(),
            "signatures": [{"keyid": "", "sig": signature}],
        }
    ).encode()


def _statement(digest: str, predicate_type: str, predicate: dict[str, Any]) -> dict[str, Any]:
    return {
        "_type": "https://in-toto.io/Statement/v0.1",
        "subject": [{"name": "image", "digest": {"sha256": digest.split(":", 1)[1]}}],
        "predicateType": predicate_type,
        "predicate": predicate,
    }


# image name → expected provenance status in `verify`
EXPECTED = {
    "v1-good": "verified",
    "v02-legacy": "verified",
    "multi": "verified",
    "wrong-builder": "builder not allowed",
    "wrong-source": "source not allowed",
    "wrong-build-type": "build type not allowed",
    "untrusted": "untrusted signer",
    "other-digest": "other digest",
    "unknown-predicate": "unknown predicate",
    "tampered": "invalid signature",
    "signature-only": "no attestation",
    "none": "no attestation",
}


def policy_text(host: str, key: Path | None) -> str:
    keyed = f'[[signers]]\nimages = ["{host}/prov/v02-legacy"]\nkey = "{key}"\n' if key else ""
    return (
        'version = 1\n[rules]\nunsigned = "warning"\n'
        f'[[signers]]\nimages = ["{host}/prov/*"]\nissuer = "{ISSUER}"\nidentity = "{IDENTITY}"\n'
        + keyed
        + f'[[provenance]]\nimages = ["{host}/prov/*"]\nbuilder_id = ["{BUILDER}", "{V02_BUILDER}"]\n'
        f'source_uri = ["git+https://git.team.example/*"]\nbuild_type = ["{BUILD_TYPE}", "{V02_TYPE}"]\n'
    )


@pytest.fixture(scope="module")
def world(tmp_path_factory, registry, image_factory) -> dict[str, Any]:
    """Every kind of (bad) attestation on its own image, a policy, a lock, `verify --record`."""
    work = tmp_path_factory.mktemp("provenance")
    sigstore = PrivateSigstore(work / "sigstore")
    key = KeyPairSigner(work)
    host = registry.host
    images = {
        name: image_factory.single_arch(f"prov/{name}", tag="1.0") for name in EXPECTED if name != "multi"
    }
    multi = image_factory.multi_arch("prov/multi", tag="1.0", platforms=("linux/amd64", "linux/arm64"))

    def attest(
        name: str, subject: str, predicate_type: str, predicate: dict, identity: str = IDENTITY
    ) -> bytes:
        return sigstore.sign_dsse(subject, predicate_type, identity, ISSUER, predicate=predicate)

    def attach(name: str, bundle: bytes, predicate_type: str = SLSA_V1, digest: str | None = None) -> None:
        image = images.get(name) or multi
        subject = {"mediaType": OCI_MANIFEST, "digest": digest or image.digest, "size": 1}
        attach_bundle(host, image.repository, subject, bundle, predicate_type)

    digest = {name: image.digest for name, image in images.items()}
    attach("v1-good", attest("v1-good", digest["v1-good"], SLSA_V1, slsa_v1()))
    attach("v1-good", sigstore.sign_dsse(digest["v1-good"], COSIGN_SIGN_PREDICATE, IDENTITY, ISSUER))
    v02 = images["v02-legacy"]
    attach_legacy_attestation(
        host,
        v02.repository,
        v02.digest,
        _envelope(key, _statement(v02.digest, SLSA_V02, slsa_v02())),
        SLSA_V02,
    )
    for platform in multi.platforms.values():
        attach(
            "multi",
            attest("multi", platform.manifest_digest, SLSA_V1, slsa_v1()),
            digest=platform.manifest_digest,
        )
    attach(
        "wrong-builder",
        attest("", digest["wrong-builder"], SLSA_V1, slsa_v1(builder="https://evil.example/b")),
    )
    attach(
        "wrong-source",
        attest("", digest["wrong-source"], SLSA_V1, slsa_v1(source="git+https://evil.example/x")),
    )
    attach("wrong-build-type", attest("", digest["wrong-build-type"], SLSA_V1, slsa_v1(build_type="make")))
    attach("untrusted", attest("", digest["untrusted"], SLSA_V1, slsa_v1(), identity="intruder@evil.example"))
    attach("other-digest", attest("", digest["v1-good"], SLSA_V1, slsa_v1()))
    spdx = "https://spdx.dev/Document"
    attach(
        "unknown-predicate", attest("", digest["unknown-predicate"], spdx, {"spdxVersion": "SPDX-2.3"}), spdx
    )
    attach("tampered", tamper(attest("", digest["tampered"], SLSA_V1, slsa_v1())))
    attach(
        "signature-only",
        sigstore.sign_dsse(digest["signature-only"], COSIGN_SIGN_PREDICATE, IDENTITY, ISSUER),
    )

    policy = work / "policy.toml"
    policy.write_text(policy_text(host, key.public_key_path))
    layer = work / "layer"
    layer.mkdir()
    urls = [f"docker://{host}/{i.repository};tag=1.0" for i in [*images.values(), multi]]
    (layer / "prov_1.0.bb").write_text(f'SRC_URI = "{" ".join(urls)}"\n')
    lock = work / "lock.json"
    assert cli("update", layer, "--lockfile", lock).returncode == 0
    args = ("--lockfile", lock, "--policy", policy, "--trusted-root", sigstore.trusted_root_path)
    result = cli("verify", layer, *args, "--record", "--json")
    report = {i["reference"].rsplit("/", 1)[1].split(":")[0]: i for i in json.loads(result.stdout)["images"]}
    return {
        "work": work,
        "host": host,
        "images": images,
        "multi": multi,
        "sigstore": sigstore,
        "key": key,
        "policy": policy,
        "layer": layer,
        "lock": lock,
        "args": args,
        "result": result,
        "report": report,
    }


def test_each_image_gets_its_status(world) -> None:
    result = world["result"]
    assert result.returncode == 1, result.stderr  # required provenance missing or refused: fail closed
    statuses = {name: item["provenance"]["status"] for name, item in world["report"].items()}
    assert statuses == EXPECTED
    for name, status in EXPECTED.items():
        if status != "verified":
            assert f"prov/{name}:1.0 (provenance: {status})" in result.stderr
    assert "prov/v1-good" not in result.stderr


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("wrong-builder", "built by https://evil.example/b, not"),
        ("wrong-source", "built from git+https://evil.example/x, not git+https://git.team.example/*"),
        ("wrong-build-type", "build type make, not"),
        ("untrusted", "signed by intruder@evil.example"),
        ("other-digest", "the statement is about another digest"),
        ("unknown-predicate", "predicate https://spdx.dev/Document is not SLSA provenance"),
        ("tampered", "does not verify"),
        ("signature-only", "no attestation found for"),
        ("v1-good", f"built by {BUILDER} from {SOURCE}@{COMMIT}"),
        ("v02-legacy", f"built by {V02_BUILDER} from {V02_SOURCE}@{COMMIT}"),
    ],
)
def test_each_status_says_why(world, name, words) -> None:
    assert words in world["report"][name]["provenance"]["detail"]


def test_record_keeps_the_accepted_facts_only(world) -> None:
    entries = lockfile.load(world["lock"]).entries
    host, images, multi = world["host"], world["images"], world["multi"]
    v1 = entries[f"{host}/prov/v1-good:1.0"].provenance
    assert [dict(f) for f in v1] == [
        {
            "attestation": world["report"]["v1-good"]["provenance"]["attestations"][0]["source"],
            "build_type": BUILD_TYPE,
            "builder_id": BUILDER,
            "digest": images["v1-good"].digest,
            "predicate_type": SLSA_V1,
            "signer": f"{IDENTITY} (issuer {ISSUER})",
            "source_digest": COMMIT,
            "source_uri": SOURCE,
        }
    ]
    (v02,) = entries[f"{host}/prov/v02-legacy:1.0"].provenance
    assert (v02["predicate_type"], v02["builder_id"], v02["source_uri"]) == (
        SLSA_V02,
        V02_BUILDER,
        V02_SOURCE,
    )
    assert v02["signer"] == f"key {world['key'].public_key_path}"
    recorded = {f["digest"] for f in entries[f"{host}/prov/multi:1.0"].provenance}
    assert recorded == {p.manifest_digest for p in multi.platforms.values()}
    refused = [n for n, s in EXPECTED.items() if s != "verified"]
    assert all(not entries[f"{host}/prov/{n}:1.0"].provenance for n in refused)
    # A re-resolution that finds the same digests keeps what was verified.
    assert cli("update", "--lockfile", world["lock"]).returncode == 0
    assert lockfile.load(world["lock"]).entries[f"{host}/prov/v1-good:1.0"].provenance == v1


def test_check_reports_the_recorded_status_offline(world) -> None:
    result = cli("check", world["layer"], "--lockfile", world["lock"], "--policy", world["policy"], "--json")
    assert result.returncode == 1
    findings = [f for f in json.loads(result.stdout)["findings"] if f["rule"] == "provenance"]
    flagged = sorted(f["message"].split(":1.0:")[0].rsplit("/", 1)[1] for f in findings)
    assert flagged == sorted(n for n, s in EXPECTED.items() if s != "verified")
    assert all(
        "no verified provenance recorded" in f["message"] and f["severity"] == "error" for f in findings
    )


def test_a_stricter_policy_refuses_what_the_lock_recorded(world, tmp_path) -> None:
    stricter = tmp_path / "policy.toml"
    stricter.write_text(
        world["policy"].read_text().replace(f'"{BUILDER}", "{V02_BUILDER}"', f'"{V02_BUILDER}"')
    )
    result = cli("check", world["layer"], "--lockfile", world["lock"], "--policy", stricter, "--json")
    messages = [f["message"] for f in json.loads(result.stdout)["findings"] if f["rule"] == "provenance"]
    assert any("prov/v1-good:1.0: provenance: builder not allowed: built by" in m for m in messages)


def test_relaxed_policy_and_not_required(world, tmp_path) -> None:
    relaxed = tmp_path / "relaxed.toml"
    relaxed.write_text(
        world["policy"]
        .read_text()
        .replace('unsigned = "warning"', 'unsigned = "warning"\nprovenance = "warning"')
    )
    args = (
        "--lockfile",
        world["lock"],
        "--policy",
        relaxed,
        "--trusted-root",
        world["sigstore"].trusted_root_path,
    )
    assert cli("verify", world["layer"], *args, "--json").returncode == 0
    optional = tmp_path / "optional.toml"
    optional.write_text(world["policy"].read_text() + "required = false\n")
    result = cli("verify", world["layer"], *args[:2], "--policy", optional, *args[4:], "--json")
    assert result.returncode == 0, result.stderr
    statuses = {
        i["reference"].rsplit("/", 1)[1]: i["provenance"]["status"]
        for i in json.loads(result.stdout)["images"]
    }
    assert statuses["none:1.0"] == "not required" and statuses["v1-good:1.0"] == "verified"


def _no_outside_network(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Connections to anything but loopback fail (and are listed)."""
    attempts: list[object] = []
    real_connect, real_getaddrinfo = socket.socket.connect, socket.getaddrinfo

    def loopback(host: object) -> bool:
        return str(host) in ("127.0.0.1", "::1", "localhost")

    def connect(self, address):  # type: ignore[no-untyped-def]
        if isinstance(address, tuple) and not loopback(address[0]):
            attempts.append(address)
            raise OSError(f"network access outside loopback: {address}")
        return real_connect(self, address)

    def getaddrinfo(host, *args, **kwargs):  # type: ignore[no-untyped-def]
        if not loopback(host):
            attempts.append(host)
            raise OSError(f"name lookup outside loopback: {host}")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return attempts


def test_verification_is_offline(world, monkeypatch) -> None:
    """In-process: the only connections are to the loopback registry (skopeo is given loopback
    references only); no TUF, Rekor or Fulcio request."""
    from audit.cli import cli as group

    attempts = _no_outside_network(monkeypatch)
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as stopped:
        group.main(
            args=["verify", str(world["layer"]), *map(str, world["args"]), "--provenance", "--json"],
            standalone_mode=False,
        )
    assert stopped.value.code == 1 and attempts == []
    statuses = {
        i["reference"].rsplit("/", 1)[1]: i["provenance"]["status"]
        for i in json.loads(out.getvalue())["images"]
    }
    assert statuses["v1-good:1.0"] == "verified" and statuses["untrusted:1.0"] == "untrusted signer"


def test_layer_stops_the_build_before_any_download(world, build, registry) -> None:
    """CONTAINER_POLICY with a required provenance: the recipe whose lock entry has none stops the
    build at DepTreeGenerated, naming the image and the reason; the good one is not named."""
    host = world["host"]
    build.set(CONTAINER_LOCKFILE=str(world["lock"]), CONTAINER_POLICY=str(world["policy"]))
    for name in ("v1-good", "wrong-builder"):
        build.write_recipe(f"prov-{name}_1.0", f'SRC_URI = "docker://{host}/prov/{name};tag=1.0"\n')
    recipes = [build.recipes / f"prov-{name}_1.0.bb" for name in ("v1-good", "wrong-builder")]
    d = None
    for recipe in recipes:
        d = build.parse(recipe)
    mark = registry.mark()
    with pytest.raises(bb.BBHandledException):
        build.start_build(d, *recipes)
    message = build.events.messages(logging.CRITICAL)[-1]
    assert "prov/wrong-builder;tag=1.0" in message
    assert "provenance: no attestation: no verified provenance recorded" in message
    assert "prov/v1-good" not in message
    assert registry.requests(mark) == []


def test_sbom_says_where_each_image_came_from(world, build) -> None:
    image = world["images"]["v1-good"]
    build.set(CONTAINER_LOCKFILE=str(world["lock"]))
    recipe = build.write_recipe(
        "prov-sbom_1.0", f'inherit podman-loader\nSRC_URI += "docker://{image.host}/prov/v1-good;tag=1.0"\n'
    )
    d = build.run(recipe, *SBOM_TASKS)
    out = world["work"] / "prov.cdx.json"
    result = cli(
        "sbom", "--deploy-dir", d.getVar("CONTAINER_LOCK_DEPLOY_DIR"), "-l", world["lock"], "-o", out
    )
    assert result.returncode == 0, result.stderr
    (component,) = [c for c in json.loads(out.read_text())["components"] if c["type"] == "container"]
    props = {p["name"]: p["value"] for p in component["properties"]}
    assert props["container-lock:provenance-builder"] == BUILDER
    assert props["container-lock:provenance-source"] == SOURCE
    assert props["container-lock:provenance-source-digest"] == COMMIT
    assert props["container-lock:provenance-build-type"] == BUILD_TYPE
    attestation = world["report"]["v1-good"]["provenance"]["attestations"][0]["source"]
    (reference,) = [r for r in component["externalReferences"] if r["type"] == "attestation"]
    assert reference["hashes"] == [{"alg": "SHA-256", "content": attestation.split(":", 1)[1]}]
    assert attestation in reference["url"]


def test_registry_with_login(tmp_path) -> None:
    """An htpasswd registry: attestations are found and verified with the user's credentials."""
    user, password = "builder", "s3cret"
    with Registry(tmp_path / "private", credentials=(user, password)) as private:
        CREDENTIALS[private.host] = (user, password)
        try:
            image = ImageFactory(tmp_path / "images", private.host, (user, password)).single_arch(
                "prov/private"
            )
            sigstore = PrivateSigstore(tmp_path / "sigstore")
            bundle = sigstore.sign_dsse(image.digest, SLSA_V1, IDENTITY, ISSUER, predicate=slsa_v1())
            attach_bundle(
                private.host,
                image.repository,
                {"mediaType": OCI_MANIFEST, "digest": image.digest, "size": 1},
                bundle,
                SLSA_V1,
            )
        finally:
            CREDENTIALS.pop(private.host, None)
        home = tmp_path / "home"
        write_registries_conf(home, insecure=[private.host])
        auth = home / ".config" / "containers" / "auth.json"
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        auth.write_text(json.dumps({"auths": {private.host: {"auth": token}}}))
        recipe = tmp_path / "r.bb"
        recipe.write_text(f'SRC_URI = "docker://{private.host}/prov/private;tag=1.0;digest={image.digest}"\n')
        policy = tmp_path / "p.toml"
        policy.write_text(policy_text(private.host, None))
        env = {**os.environ, "HOME": str(home)}
        args = ("verify", recipe, "-p", policy, "--trusted-root", sigstore.trusted_root_path, "--json")
        result = cli(*args, env=env)
        assert result.returncode == 0, result.stdout + result.stderr
        (item,) = json.loads(result.stdout)["images"]
        assert item["provenance"]["status"] == "verified"
        nobody = tmp_path / "nobody"
        write_registries_conf(nobody, insecure=[private.host])
        anonymous = cli(*args, env={**env, "HOME": str(nobody)})
        assert anonymous.returncode == 3 and "401" in anonymous.stderr + anonymous.stdout


def test_end_of_build_sbom_is_given_the_lockfile(tmp_path) -> None:
    """The BuildCompleted SBOM runs `sbom -l CONTAINER_LOCKFILE` when the lock exists, so the
    build's SBOM carries the recorded provenance as `sbom -l` does."""
    from containerlock.build_hooks.sbom import sbom_command

    lock = tmp_path / "lock.json"
    without = sbom_command(["cl"], tmp_path, tmp_path / "s.json", None, lock)
    lock.write_text("{}")
    with_lock = sbom_command(["cl"], tmp_path, tmp_path / "s.json", "db", lock)
    assert "-l" not in without
    assert with_lock[-4:] == ["--db", "db", "-l", str(lock)]


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ('[[provenance]]\nimages = ["*"]\nbuilder = ["x"]\n', "provenance #1: unknown key(s) builder"),
        ('[[provenance]]\nrequired = "yes"\n', "provenance #1: required must be true or false"),
        ("[[provenance]]\nbuild_type = [1]\n", "provenance #1: build_type must be a list of strings"),
        ('[provenance]\nimages = ["*"]\n', "[[provenance]] must be an array of tables"),
    ],
)
def test_bad_provenance_rules_name_the_file_and_entry(tmp_path, toml, message) -> None:
    policy = tmp_path / "p.toml"
    policy.write_text("version = 1\n" + toml)
    result = cli("check", tmp_path, "--policy", policy)
    assert result.returncode == 2 and message in result.stderr and str(policy) in result.stderr, result.stderr


def test_rules_accept_a_string_or_a_list_and_the_first_matching_rule_counts() -> None:
    from containerlock.lock.policy import parse

    policy = parse(
        'version = 1\n[[provenance]]\nimages = ["r/team/*"]\nsource_uri = "git+https://a/*"\n'
        '[[provenance]]\nimages = ["r/*"]\nrequired = false\n',
        "p.toml",
    )
    team, other = policy.provenance_for("r/team/app"), policy.provenance_for("r/other")
    assert team is not None and team.source_uri == ("git+https://a/*",) and team.required
    assert other is not None and not other.required
    assert policy.provenance_for("elsewhere/x") is None
