"""CycloneDX SBOM of embedded images: built from real build manifests, checked against the registry."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import bb.event
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator

from containerlock.payload.archive import MANIFEST_VERSION
from tests.harness.bitbake import PAYLOAD_TASKS

SBOM_TASKS = (*PAYLOAD_TASKS, "do_deploy_container_manifest")


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "audit", *args], capture_output=True, text=True, timeout=300, env=env
    )


def pinned(image) -> str:
    return f"docker://{image.host}/{image.repository};tag={image.tag};digest={image.digest}"


def registry_digest(ref: str) -> str:
    raw = subprocess.run(
        ["skopeo", "inspect", "--raw", f"docker://{ref}"], capture_output=True, check=True
    ).stdout
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def walk(components):
    for c in components:
        yield c
        yield from walk(c.get("components", []))


def build_two_packages(build, image_factory):
    hello = image_factory.multi_arch("sbom/hello", tag="1.0")
    tool = image_factory.single_arch("sbom/tool", tag="2.0")
    build.write_recipe(
        "loader-a_1.0", f'inherit podman-loader\nSRC_URI += "{pinned(hello)} {pinned(tool)}"\n'
    )
    build.write_recipe("loader-b_1.0", f'inherit docker-loader\nSRC_URI += "{pinned(hello)}"\n')
    d = build.run(build.recipes / "loader-a_1.0.bb", *SBOM_TASKS)
    build.set(DISTRO_ARCH="arm64")
    build.run(build.recipes / "loader-b_1.0.bb", *SBOM_TASKS)
    return hello, tool, Path(d.getVar("CONTAINER_LOCK_DEPLOY_DIR"))


def test_sbom_is_valid_and_matches_the_registry(build, image_factory, tmp_path) -> None:
    hello, tool, deploy = build_two_packages(build, image_factory)
    result = cli("sbom", "--deploy-dir", str(deploy), "-o", str(tmp_path / "sbom.json"))
    assert result.returncode == 0, result.stderr
    text = (tmp_path / "sbom.json").read_text()
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(text) is None
    doc = json.loads(text)
    assert doc["specVersion"] == "1.6"
    assert doc["metadata"]["timestamp"] == "2023-11-14T22:13:20+00:00"  # SOURCE_DATE_EPOCH 1700000000

    containers = [c for c in walk(doc["components"]) if c["type"] == "container"]
    for c in containers:
        digest = c["purl"].split("@", 1)[1].split("?", 1)[0].replace("%3A", ":")
        repo = c["name"]
        assert registry_digest(f"{repo}@{digest}") == digest  # the bytes the registry serves
        assert c["hashes"][0]["content"] == digest.split(":")[1]
        assert f"repository_url={repo}" in c["purl"] and f"&tag={c['version']}" in c["purl"] + "&"
    index = next(c for c in doc["components"] if c["name"].endswith("sbom/hello"))
    assert index["purl"].startswith(f"pkg:oci/hello@{hello.digest.replace(':', '%3A')}?")
    assert registry_digest(hello.reference) == hello.digest
    variants = {c["purl"].split("arch=")[1].split("&")[0]: c for c in index["components"]}
    assert set(variants) == {"amd64", "arm64"}
    assert (
        variants["arm64"]["purl"]
        .split("@")[1]
        .startswith(hello.platforms["linux/arm64/v8"].manifest_digest.replace(":", "%3A"))
    )
    tool_c = next(c for c in doc["components"] if c["name"].endswith("sbom/tool"))
    layer_digests = [layer["name"] for layer in tool_c["components"]]
    assert layer_digests == [layer.digest for layer in tool.platforms["linux/amd64"].layers]
    props = {p["name"]: p["value"] for p in tool_c["properties"]}
    assert props["container-lock:image-id"] == tool.platforms["linux/amd64"].config_digest
    assert props["container-lock:compression"] == "zst"  # podman-loader default: recompressed (zstd)
    assert props["container-lock:package-file"].startswith("/usr/share/loader-a/images/")

    deps = {d["ref"]: set(d.get("dependsOn", [])) for d in doc["dependencies"]}
    pkg_a = next(r for r in deps if r.startswith("pkg:deb/debian/loader-a@1.0"))
    pkg_b = next(r for r in deps if r.startswith("pkg:deb/debian/loader-b@1.0?arch=arm64"))
    assert deps[pkg_a] == {variants["amd64"]["bom-ref"], tool_c["bom-ref"]}
    assert deps[pkg_b] == {variants["arm64"]["bom-ref"]}

    # Nothing of the build machine: no local paths, no HOME, no DL_DIR.
    assert str(tmp_path) not in text and "/tmp/" not in text


def test_sbom_is_deterministic_and_the_build_writes_the_same_bytes(build, image_factory, tmp_path) -> None:
    _, _, deploy = build_two_packages(build, image_factory)
    first = cli("sbom", "--deploy-dir", str(deploy)).stdout
    assert first == cli("sbom", "--deploy-dir", str(deploy)).stdout
    xml = cli("sbom", "--deploy-dir", str(deploy), "--format", "xml")
    assert xml.returncode == 0 and "<bom " in xml.stdout

    build.set(CONTAINER_LOCK_SBOM_CLI=f"{sys.executable} -m audit")
    d = build.parse(build.recipes / "loader-a_1.0.bb")
    bb.event.fire(bb.event.BuildCompleted(1, "build", ["image"], failures=0), d)
    assert (deploy / "container-images.cdx.json").read_text() == first
    # The SBOM file in the deploy dir is not taken for a manifest on the next run.
    assert cli("sbom", "--deploy-dir", str(deploy)).stdout == first

    # The reproducible-builds convention: SOURCE_DATE_EPOCH from the environment,
    # unless --source-date-epoch is given.
    env = {**os.environ, "SOURCE_DATE_EPOCH": "1234567890"}
    from_env = cli("sbom", "--deploy-dir", str(deploy), env=env).stdout
    assert json.loads(from_env)["metadata"]["timestamp"].startswith("2009-02-13T23:31:30")
    assert json.loads(first)["metadata"]["timestamp"] != json.loads(from_env)["metadata"]["timestamp"]
    given = cli("sbom", "--deploy-dir", str(deploy), "--source-date-epoch", "0", env=env).stdout
    assert json.loads(given)["metadata"]["timestamp"].startswith("1970-01-01T00:00:00")


def test_merge_into_a_debsbom_style_image_sbom(build, image_factory, tmp_path) -> None:
    _, _, deploy = build_two_packages(build, image_factory)
    image_sbom = tmp_path / "image.cdx.json"
    image_sbom.write_text(
        json.dumps(
            {
                "bomFormat": "CycloneDX",
                "specVersion": "1.6",
                "version": 1,
                "serialNumber": "urn:uuid:3e671687-395b-41f5-a30f-a58921a69b79",
                "metadata": {
                    "timestamp": "2023-11-14T22:13:20Z",
                    "component": {"type": "operating-system", "name": "isar-image-base", "bom-ref": "image"},
                },
                "components": [
                    {
                        "type": "library",
                        "name": "bash",
                        "version": "5.2.15-2+b2",
                        "bom-ref": "pkg:deb/debian/bash@5.2.15-2%2Bb2?arch=amd64",
                        "purl": "pkg:deb/debian/bash@5.2.15-2%2Bb2?arch=amd64",
                    },
                    {
                        "type": "library",
                        "name": "loader-a",
                        "version": "1.0",
                        "bom-ref": "debsbom-loader-a",
                        "purl": "pkg:deb/debian/loader-a@1.0?arch=amd64",
                    },
                ],
                "dependencies": [
                    {
                        "ref": "image",
                        "dependsOn": ["pkg:deb/debian/bash@5.2.15-2%2Bb2?arch=amd64", "debsbom-loader-a"],
                    }
                ],
            }
        )
    )
    result = cli("sbom", "--deploy-dir", str(deploy), "--merge", str(image_sbom))
    assert result.returncode == 0, result.stderr
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(result.stdout) is None
    doc = json.loads(result.stdout)
    deps = {d["ref"]: d.get("dependsOn", []) for d in doc["dependencies"]}
    assert len(deps["debsbom-loader-a"]) == 2  # attached under the existing loader .deb component
    assert any(c["name"] == "bash" for c in doc["components"])
    assert sum(c["name"] == "loader-a" for c in doc["components"]) == 1
    assert any(
        c.get("purl", "").startswith("pkg:deb/debian/loader-b@1.0?arch=arm64") for c in doc["components"]
    )


def test_bad_manifest_is_refused_naming_the_file(tmp_path) -> None:
    (tmp_path / "x.json").write_text(json.dumps({"version": MANIFEST_VERSION, "package": {}}))
    result = cli("sbom", str(tmp_path / "x.json"))
    assert (
        result.returncode == 2
        and "x.json" in result.stderr
        and "not a container-lock build manifest" in result.stderr
    )
    (tmp_path / "old.json").write_text(json.dumps({"version": MANIFEST_VERSION - 1, "package": {}}))
    result = cli("sbom", str(tmp_path / "old.json"))
    assert result.returncode == 2 and "rebuild the loader package" in result.stderr


def test_schema_validation_stays_on_without_the_iri_grammar() -> None:
    """sbom.output skips only rfc3987-syntax (1-3 s of import); the schema still rejects bad documents."""
    script = (
        "import json, sys, sbom.output\n"
        "from cyclonedx.schema import SchemaVersion\n"
        "from cyclonedx.validation.json import JsonStrictValidator\n"
        "bad = {'bomFormat': 'CycloneDX', 'specVersion': '1.6', 'version': 'one',\n"
        "       'components': [{'type': 'x'}]}\n"
        "error = JsonStrictValidator(SchemaVersion.V1_6).validate_str(json.dumps(bad))\n"
        "print(sys.modules['rfc3987_syntax'] is None, error is not None)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["True", "True"]
