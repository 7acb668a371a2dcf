"""The SBOM at scale without losing anything: same bytes as the model-only implementation, validation
still refuses bad documents, and the work grows linearly (counted, not timed; timings live in benchmarks/)."""

from __future__ import annotations

import gc
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from containerlock.contents.inventory import INVENTORY_VERSION
from containerlock.lock.lockfile import LOCK_VERSION
from containerlock.oci.record import RECORD_VERSION
from containerlock.payload.archive import MANIFEST_VERSION
from sbom import generate, schema
from sbom.output import SbomError

DEB12 = {"ID": "debian", "VERSION_ID": "12", "PRETTY_NAME": "Debian GNU/Linux 12 (bookworm)"}


def digest(*parts: object) -> str:
    return "sha256:" + hashlib.sha256(repr(parts).encode()).hexdigest()


def packages(n: int, layers: list[str]) -> list[dict[str, Any]]:
    """Every database kind and licence form: SPDX id, expression, free-text name, none."""
    found = [
        {
            "type": "deb",
            "name": "libssl3",
            "version": "3.0.15-1~deb12u1",
            "arch": "amd64",
            "source": "openssl",
        },
        {"type": "deb", "name": "base-files", "version": "12.4+deb12u5", "arch": "amd64"},
        {
            "type": "apk",
            "name": "musl",
            "version": "1.2.4-r2",
            "arch": "x86_64",
            "source": "musl",
            "license": "MIT",
        },
        {
            "type": "rpm",
            "name": "curl",
            "version": "8.6.0-1.fc40",
            "arch": "x86_64",
            "source": "curl",
            "license": "curl AND MIT",
            "epoch": "1",
        },
        {"type": "pypi", "name": "Flask_Login", "version": "0.6.3", "license": "Apache 2.0"},
        {"type": "pypi", "name": "requests", "version": "2.31.0", "license": "MIT OR Apache-2.0"},
    ]
    for i in range(n):
        found.append(
            {
                "type": "deb",
                "name": f"lib{i:03d}",
                "version": f"1.{i}-1",
                "arch": "amd64",
                "source": f"src{i // 2}",
            }
        )
    return [
        {**p, "database": "var/lib/dpkg/status", "layer": layers[i % len(layers)]}
        for i, p in enumerate(found)
    ]


def image(name: str, n: int, platform: str = "linux/amd64", index: str | None = None, inventory: bool = True):
    manifest = digest("manifest", name, platform)
    layers = [digest("layer", name, platform, i) for i in range(2)]
    doc: dict[str, Any] = {
        "version": RECORD_VERSION,
        "reference": f"registry.example:5000/team/{name}",
        "tag": "1.0",
        "platform": platform,
        "manifest": manifest,
        "digest": index or manifest,
        "config": digest("config", name, platform),
        "layers": [
            {"digest": d, "size": 1000 + i, "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip"}
            for i, d in enumerate(layers)
        ],
        "file": f"/usr/share/loader/images/{name}-{platform.replace('/', '_')}.tar.zst",
        "file_sha256": digest("file", name, platform),
        "file_size": 12345,
        "format": "docker-archive",
        "compression": "zst",
    }
    if inventory:
        doc["inventory"] = {
            "version": INVENTORY_VERSION,
            "os": DEB12,
            "packages": packages(n, layers),
            "notes": ["var/lib/rpm/Packages: an old BerkeleyDB rpm database"] if n == 3 else [],
        }
    return doc


def write_fixture(directory: Path) -> Path:
    """Two loader packages: a multi-arch image in both, single-arch images with and without an inventory."""
    deploy = directory / "container-lock"
    deploy.mkdir(parents=True)
    hello = digest("index", "hello")
    manifests = {
        "loader-a": [
            image("hello", 4, "linux/amd64", hello),
            image("hello", 5, "linux/arm64/v8", hello),
            image("tool", 3),
            image("bare", 0, inventory=False),
        ],
        "loader-b": [image("hello", 5, "linux/arm64/v8", hello)],
    }
    for name, images in manifests.items():
        doc = {
            "version": MANIFEST_VERSION,
            "package": {"name": name, "version": "1.0", "arch": "arm64" if name == "loader-b" else "amd64"},
            "engine": "podman",
            "source_date_epoch": 1700000000,
            "images": images,
        }
        (deploy / f"{name}.json").write_text(json.dumps(doc))
    lock = {
        "version": LOCK_VERSION,
        "images": {
            "registry.example:5000/team/tool:1.0": {"digest": digest("manifest", "tool", "linux/amd64")}
        },
    }
    (directory / "containers.lock").write_text(json.dumps(lock))
    (directory / "image.cdx.json").write_text(
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
                        "name": "loader-a",
                        "version": "1.0",
                        "bom-ref": "debsbom-loader-a",
                        "purl": "pkg:deb/debian/loader-a@1.0?arch=amd64",
                    }
                ],
                "dependencies": [{"ref": "image", "dependsOn": ["debsbom-loader-a"]}],
            }
        )
    )
    return deploy


# sha256 of the documents the model-only implementation (cyclonedx-python-lib for every
# component, before the SBOM was made linear) wrote for write_fixture's manifests; then only the
# serial numbers moved, when the inventory's packages got `source_version` (the serial hashes the
# manifests as dataclasses): json, json-lock-epoch and xml differed from the old bytes in that line alone.
BEFORE = {
    "json": "1766b25dc633b79bf97c0af3b482c9d98fa209edc3d292f797b43c7f96dd1554",
    "json-lock-epoch": "92f21ea756c664848873bed06997eed6c1b53074ae7951e861cdfec3f33dacfe",
    "xml": "2146bbae68b71270159f03f51664098a02f19ed8a5bff65eb1224a87d77630a0",
    "json-merge": "9d4c8fb137db092eec818df9f1afac8dfe8b9439ce116b88231eff9c177fcfcb",
}


def variants(tmp_path: Path) -> dict[str, str]:
    deploy = write_fixture(tmp_path)
    return {
        "json": generate.generate((), deploy),
        "json-lock-epoch": generate.generate(
            (), deploy, lock_path=tmp_path / "containers.lock", source_date_epoch=1234567890
        ),
        "xml": generate.generate((), deploy, fmt="xml"),
        "json-merge": generate.generate((), deploy, merge_into=tmp_path / "image.cdx.json"),
    }


def test_output_bytes_are_those_of_the_model_only_implementation(tmp_path) -> None:
    """The same bytes, but for the packages' bom-refs: `<image>#package:<purl>` since the model-only
    implementation's `<image>#pkg:<purl>` (the same order: every package of an image shares its prefix)."""
    produced = variants(tmp_path)
    assert all(text.count("#package:pkg:") >= 3 and "#pkg:" not in text for text in produced.values())
    was = {k: v.replace("#package:pkg:", "#pkg:pkg:") for k, v in produced.items()}
    assert {k: hashlib.sha256(v.encode()).hexdigest() for k, v in was.items()} == BEFORE


def good_document(tmp_path: Path) -> dict[str, Any]:
    return json.loads(generate.generate((), write_fixture(tmp_path)))


def mutations(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Bad documents: a repeated array item at each level, and schema violations deep inside."""
    image = next(
        c
        for c in schema_walk(doc["components"])
        if any(x["type"] == "library" for x in c.get("components", []))
    )
    package = next(c for c in image["components"] if c["type"] == "library")
    bad: dict[str, dict[str, Any]] = {}

    def mutate(name: str, change: Any) -> None:
        copy = json.loads(json.dumps(doc))
        change(copy)
        bad[name] = copy

    def find(copy: dict[str, Any], ref: str) -> dict[str, Any]:
        return next(c for c in schema_walk(copy["components"]) if c.get("bom-ref") == ref)

    mutate("repeated component", lambda d: d["components"].append(d["components"][0]))
    mutate("repeated dependency", lambda d: d["dependencies"].append(d["dependencies"][-1]))
    mutate(
        "repeated nested package",
        lambda d: find(d, image["bom-ref"])["components"].append(find(d, image["bom-ref"])["components"][-1]),
    )
    mutate(
        "repeated property",
        lambda d: find(d, package["bom-ref"])["properties"].append(
            find(d, package["bom-ref"])["properties"][0]
        ),
    )
    mutate(
        "unknown licence id",
        lambda d: find(d, package["bom-ref"]).update(licenses=[{"license": {"id": "NOT-AN-SPDX-ID"}}]),
    )
    mutate("unknown field", lambda d: find(d, package["bom-ref"]).update(colour="blue"))
    mutate("bad type", lambda d: find(d, package["bom-ref"]).update(type="gadget"))
    mutate("bad hash", lambda d: find(d, image["bom-ref"])["hashes"][0].update(content="xyz"))
    mutate("number as name", lambda d: find(d, package["bom-ref"]).update(name=1))
    mutate("bad timestamp", lambda d: d["metadata"].update(timestamp="yesterday"))
    return bad


def schema_walk(components: list[dict[str, Any]]) -> Any:
    for component in components:
        yield component
        yield from schema_walk(component.get("components", []))


def test_validation_still_refuses_bad_documents_and_agrees_with_jsonschema(tmp_path) -> None:
    """The compiled schema and the hashing uniqueItems reject what cyclonedx's own validator rejects."""
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    reference = JsonStrictValidator(SchemaVersion.V1_6)
    doc = good_document(tmp_path)
    assert schema.compiled() is not None  # the schema compiled: every keyword it uses is implemented
    assert schema.compiled().check(doc) and schema.validate(doc) is None
    for name, bad in mutations(doc).items():
        accepted = reference.validate_str(json.dumps(bad)) is None
        assert schema.compiled().check(bad) == accepted, name
        assert (schema.validate(bad) is None) == accepted, name
        # properties may repeat (no uniqueItems there); date-time needs jsonschema's optional checker
        assert not accepted or name in ("repeated property", "bad timestamp"), name
    repeated = schema.validate(mutations(doc)["repeated nested package"])
    assert repeated is not None and "repeats an earlier item" in repeated


def test_a_repeated_item_is_refused_and_nothing_is_written(tmp_path, monkeypatch) -> None:
    deploy = write_fixture(tmp_path)
    real = generate.output.json_document

    def with_repeat(document: Any, tick: Any = None) -> dict[str, Any]:
        doc = real(document, tick)
        doc["dependencies"].append(doc["dependencies"][0])
        return doc

    monkeypatch.setattr(generate.output, "json_document", with_repeat)
    with pytest.raises(SbomError, match="repeats an earlier item"):
        generate.generate((), deploy)


def test_uniqueness_is_checked_by_hashing_not_by_pairs(monkeypatch) -> None:
    """Equality is asked only of items sharing a fingerprint: n distinct items, no comparisons."""
    calls = 0
    real = schema.equal

    def counting(a: Any, b: Any) -> bool:
        nonlocal calls
        calls += 1
        return real(a, b)

    monkeypatch.setattr(schema, "equal", counting)
    items = [{"bom-ref": f"ref-{n}", "type": "library", "name": "x", "version": "1"} for n in range(5000)]
    assert schema.unique(items)
    assert calls == 0
    assert schema.first_repeat([*items, {**items[10]}]) == 5000 and calls == 1
    # jsonschema's equality: 1 == 1.0, true != 1
    assert (
        not schema.unique([{"n": 1}, {"n": 1.0}])
        and schema.unique([True, 1])
        and schema.unique([[1], [True]])
    )


def test_dependency_graph_is_built_without_the_models_list_search(tmp_path, monkeypatch) -> None:
    """Bom.register_dependency searches every entry per call (quadratic); the SBOM never calls it."""
    from cyclonedx.model.bom import Bom

    def forbidden(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("Bom.register_dependency called")

    monkeypatch.setattr(Bom, "register_dependency", forbidden)
    deploy = write_fixture(tmp_path)
    assert json.loads(generate.generate((), deploy))["dependencies"]


def test_progress_reaches_the_total_and_never_goes_back(tmp_path) -> None:
    deploy = write_fixture(tmp_path)
    seen: list[tuple[int, int]] = []
    generate.generate((), deploy, progress=lambda done, total: seen.append((done, total)))
    images = 5
    assert seen[0] == (1, 2) and seen[-1] == (2 + 3 * images + 1, 2 + 3 * images + 1)
    dones = [d for d, _ in seen]
    assert dones == sorted(dones) and all(d <= t for d, t in seen)
    assert len({t for _, t in seen[2:]}) == 1


def test_the_cyclic_collector_does_not_walk_the_document(tmp_path) -> None:
    """The document is millions of small objects at 1 000 images: the collector's full passes over
    them made the time per image grow with the number of images. It is off while the SBOM is made
    (and on again after)."""
    deploy = write_fixture(tmp_path)
    collections: list[int] = []

    def count(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            collections.append(info["generation"])

    gc.collect()
    gc.callbacks.append(count)
    try:
        generate.generate((), deploy)
    finally:
        gc.callbacks.remove(count)
    assert collections == [] and gc.isenabled()


def test_the_document_is_released_as_its_text_is_made(tmp_path, monkeypatch) -> None:
    """The JSON document is dropped piece by piece as it is written out (peak memory: not the
    document and its text in full at once)."""
    kept: list[dict[str, Any]] = []
    real = generate.output.json_document

    def keep(*args: Any, **kwargs: Any) -> dict[str, Any]:
        doc = real(*args, **kwargs)
        kept.append(doc)
        return doc

    monkeypatch.setattr(generate.output, "json_document", keep)
    text = generate.generate((), write_fixture(tmp_path))
    assert json.loads(text)["components"] and kept == [{}]
