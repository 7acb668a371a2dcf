"""The harness itself: a real docker-registry, images pushed with real skopeo, access-log counting."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import random
import socket
import subprocess
import tarfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.harness import registry as registry_module
from tests.harness.images import (
    ALL_PLATFORMS,
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER_GZIP,
    OCI_MANIFEST,
    ImageFactory,
    PushedImage,
    SkopeoError,
    compressible_files,
    tar_bytes,
)
from tests.harness.registry import Registry

DEMO_RECIPES = Path(__file__).resolve().parent.parent / "meta" / "demo" / "recipes-demo"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def inspect_raw(reference: str) -> bytes:
    """The registry's manifest bytes, as skopeo sees them."""
    cmd = ["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{reference}"]
    return subprocess.run(cmd, capture_output=True, check=True).stdout


def get(url: str, method: str = "GET") -> bytes:
    with urllib.request.urlopen(urllib.request.Request(url, method=method), timeout=30) as response:
        return response.read()


def blob(registry: Registry, repository: str, digest: str) -> bytes:
    return get(f"{registry.url}/v2/{repository}/blobs/{digest}")


def manifest(image: PushedImage, digest: str | None = None) -> dict:
    return json.loads(inspect_raw(f"{image.host}/{image.repository}@{digest}" if digest else image.reference))


# -- registry --------------------------------------------------------------------------------


def test_registry_answers_on_a_random_loopback_port(registry) -> None:
    assert registry.host == f"127.0.0.1:{registry.port}"
    assert registry.port != 5000
    with urllib.request.urlopen(f"http://{registry.host}/v2/", timeout=5) as response:
        assert response.status == 200
        assert response.headers["Docker-Distribution-Api-Version"] == "registry/2.0"
    config = (registry.workdir / "config.yml").read_text()
    assert "delete:\n    enabled: true" in config
    assert str(registry.storage) in config
    assert registry.log_path == registry.workdir / "registry.log"


def test_registry_takes_another_port_when_its_first_is_taken(tmp_path, monkeypatch) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        ports = iter([taken])
        real = registry_module.free_port
        monkeypatch.setattr(registry_module, "free_port", lambda: next(ports, None) or real())
        with Registry(tmp_path / "r") as reg:
            assert reg.port != taken
            assert get(f"{reg.url}/v2/") == b"{}"
        assert "address already in use" in reg.log_path.read_text()


def test_registry_on_a_taken_fixed_port_fails_with_the_log(tmp_path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(RuntimeError, match=r"(?s)port \d+ is in use.*address already in use"):
            Registry(tmp_path / "r", port=port).start()


def test_registry_restarts_on_the_same_port_with_the_same_content(tmp_path) -> None:
    with Registry(tmp_path / "r") as reg:
        image = ImageFactory(tmp_path / "images", reg.host).single_arch("restart/app")
        host = reg.host
        before = reg.mark()
        reg.stop_serving()
        assert not reg.running
        with pytest.raises(urllib.error.URLError):
            get(f"{reg.url}/v2/")
        assert reg.mark() == before  # no server, no sentinel: the log is read as it is
        reg.start()
        assert reg.host == host
        assert sha256(inspect_raw(image.reference)) == image.digest
        assert [(m.method, m.reference) for m in reg.manifest_requests(before)] == [("GET", "1.0")]


# -- images ----------------------------------------------------------------------------------


def test_single_arch_push_keeps_the_digests(registry, image_factory) -> None:
    image = image_factory.single_arch("harness/single", tag="1.0", platform="linux/arm/v7")
    raw = inspect_raw(image.reference)
    assert sha256(raw) == image.digest
    assert sha256(inspect_raw(image.ref_by_digest)) == image.digest
    assert not image.is_index
    assert image.reference == f"{registry.host}/harness/single:1.0"
    assert image.ref_by_digest == f"{registry.host}/harness/single@{image.digest}"
    plat = image.platforms["linux/arm/v7"]
    doc = json.loads(raw)
    assert doc["mediaType"] == OCI_MANIFEST
    assert plat.manifest_digest == image.digest
    assert doc["config"] == {
        "mediaType": OCI_CONFIG,
        "digest": plat.config_digest,
        "size": doc["config"]["size"],
    }
    assert [(lay["mediaType"], lay["digest"], lay["size"]) for lay in doc["layers"]] == [
        (OCI_LAYER_GZIP, layer.digest, layer.size) for layer in plat.layers
    ]


def test_config_names_platform_diff_ids_and_a_fixed_date(registry, image_factory) -> None:
    image = image_factory.single_arch("harness/single", tag="1.0", platform="linux/arm/v7")
    plat = image.platforms["linux/arm/v7"]
    raw = blob(registry, image.repository, plat.config_digest)
    assert sha256(raw) == plat.config_digest
    config = json.loads(raw)
    assert (config["os"], config["architecture"], config["variant"]) == ("linux", "arm", "v7")
    assert config["created"] == "1970-01-01T00:00:00Z"
    assert config["config"]["Cmd"] == ["/bin/hello"]
    assert config["rootfs"] == {"type": "layers", "diff_ids": [layer.diff_id for layer in plat.layers]}
    assert raw == json.dumps(config, sort_keys=True, separators=(",", ":")).encode()


def test_layers_are_reproducible_gzip_tars_of_real_files(registry, image_factory) -> None:
    image = image_factory.single_arch("harness/single", tag="1.0", platform="linux/arm/v7")
    (layer,) = image.platforms["linux/arm/v7"].layers
    compressed = blob(registry, image.repository, layer.digest)
    assert (sha256(compressed), len(compressed)) == (layer.digest, layer.size)
    assert compressed[4:8] == bytes(4)  # gzip MTIME 0
    raw = gzip.decompress(compressed)
    assert sha256(raw) == layer.diff_id
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        members = tar.getmembers()
        names = [m.name for m in members]
        assert {"etc", "bin", "usr/share/doc"} <= set(names)
        assert [n for n in names if not tar.getmember(n).isdir()] == sorted(
            n for n in names if not tar.getmember(n).isdir()
        )
        assert {(m.mtime, m.uid, m.gid, m.uname, m.gname) for m in members} == {(0, 0, 0, "", "")}
        assert tar.getmember("bin/hello").mode == 0o755
        assert tar.getmember("etc/os-release").mode == 0o644
        assert b'VERSION_ID="harness/single"' in tar.extractfile("etc/os-release").read()
        assert tar.extractfile("bin/hello").read().startswith(b"\x7fELF")
    assert tar_bytes({"b/x": b"1", "a": b"2"}) == tar_bytes({"a": b"2", "b/x": b"1"})


def test_same_inputs_give_the_same_digests_across_factories(tmp_path, registry) -> None:
    first = ImageFactory(tmp_path / "one", registry.host).multi_arch("harness/same-a")
    again = ImageFactory(tmp_path / "two", registry.host).multi_arch("harness/same-a")
    assert again == first
    assert sha256(inspect_raw(again.reference)) == first.digest


def test_digests_match_the_one_pinned_in_the_demo_layer(image_factory) -> None:
    """meta/demo pins the digest of multi_arch("demo/hello"): image content must not drift."""
    recipe = DEMO_RECIPES / "prebuilt-containers" / "demo-docker-img_1.0.bb"
    pinned = recipe.read_text().split(";digest=")[1].split('"')[0]
    assert image_factory.multi_arch("demo/hello", tag="1.0").digest == pinned


def test_asking_twice_does_not_push_again(registry, image_factory) -> None:
    first = image_factory.single_arch("harness/cached")
    mark = registry.mark()
    assert image_factory.single_arch("harness/cached") is first
    assert registry.requests(mark) == []


def test_multi_arch_index_has_four_platforms_with_distinct_configs(registry, image_factory) -> None:
    image = image_factory.multi_arch("harness/multi", tag="2.0")
    raw = inspect_raw(image.reference)
    assert sha256(raw) == image.digest
    assert image.is_index
    index = json.loads(raw)
    assert index["mediaType"] == OCI_INDEX
    listed = {
        "/".join(
            filter(None, (m["platform"]["os"], m["platform"]["architecture"], m["platform"].get("variant")))
        ): m["digest"]
        for m in index["manifests"]
    }
    assert set(listed) == set(ALL_PLATFORMS) == set(image.platforms)
    for name, plat in image.platforms.items():
        assert listed[name] == plat.manifest_digest
        assert (
            sha256(inspect_raw(f"{image.host}/{image.repository}@{plat.manifest_digest}"))
            == plat.manifest_digest
        )
        config = json.loads(blob(registry, image.repository, plat.config_digest))
        assert "/".join(filter(None, (config["os"], config["architecture"], config.get("variant")))) == name
    assert len({p.config_digest for p in image.platforms.values()}) == 4
    assert len({p.layers for p in image.platforms.values()}) == 4


def test_sharing_base_has_exactly_one_common_layer(image_factory) -> None:
    a, b = image_factory.sharing_base(("harness/share-a", "harness/share-b"))
    la, lb = (img.platforms["linux/amd64"].layers for img in (a, b))
    assert len(la) == len(lb) == 2
    assert {x.digest for x in la} & {x.digest for x in lb} == {la[0].digest}
    assert la[0] == lb[0]
    for img in (a, b):
        assert [lay["digest"] for lay in manifest(img)["layers"]] == [
            x.digest for x in img.platforms["linux/amd64"].layers
        ]


def test_shared_base_family(image_factory) -> None:
    family = image_factory.shared_base_family("harness/family", 3, tag="1.0")
    assert [img.repository for img in family] == [f"harness/family-{i}" for i in range(3)]
    bases = {img.platforms["linux/amd64"].layers[0] for img in family}
    own = {img.platforms["linux/amd64"].layers[1].digest for img in family}
    assert len(bases) == 1
    assert len(own) == 3


def test_push_new_content_moves_the_tag_and_asking_again_moves_it_back(image_factory) -> None:
    original = image_factory.single_arch("harness/moving", tag="stable")
    moved = image_factory.push_new_content("harness/moving", tag="stable")
    again = image_factory.push_new_content("harness/moving", tag="stable")
    assert len({original.digest, moved.digest, again.digest}) == 3
    assert sha256(inspect_raw(original.reference)) == again.digest
    assert image_factory.single_arch("harness/moving", tag="stable") is original
    assert sha256(inspect_raw(original.reference)) == original.digest


def test_reference_names_must_be_lower_case(image_factory) -> None:
    with pytest.raises(ValueError, match="repository"):
        image_factory.single_arch("Harness/Upper")
    with pytest.raises(ValueError, match="tag"):
        image_factory.single_arch("harness/lower", tag="Latest")
    with pytest.raises(ValueError, match="platform"):
        image_factory.single_arch("harness/lower", platform="amd64")


def test_skopeo_failures_carry_its_stderr(tmp_path) -> None:
    nobody = f"127.0.0.1:{registry_module.free_port()}"
    with pytest.raises(SkopeoError, match=r"(?s)skopeo copy .* failed.*connection refused"):
        ImageFactory(tmp_path, nobody).single_arch("harness/nowhere")


# -- access-log counting ---------------------------------------------------------------------


def test_copy_counts_one_get_per_blob_and_their_bytes(tmp_path, registry, image_factory) -> None:
    image = image_factory.sharing_base(("harness/count-a", "harness/count-b"))[0]
    plat = image.platforms["linux/amd64"]
    config_size = manifest(image)["config"]["size"]
    mark = registry.mark()
    subprocess.run(
        [
            "skopeo",
            "copy",
            "--src-tls-verify=false",
            f"docker://{image.reference}",
            f"oci:{tmp_path / 'out'}:x",
        ],
        capture_output=True,
        check=True,
    )
    gets = registry.blob_gets(mark)
    assert sorted(g.digest for g in gets) == sorted([plat.config_digest, *(x.digest for x in plat.layers)])
    assert registry.blob_get_count(mark) == 1 + len(plat.layers)
    assert {(g.repository, g.status) for g in gets} == {("harness/count-a", 200)}
    assert registry.blob_bytes(mark) == config_size + sum(x.size for x in plat.layers)
    assert [(m.method, m.reference, m.status) for m in registry.manifest_requests(mark)] == [
        ("GET", "1.0", 200)
    ]
    requests = registry.requests(mark)
    assert {r.user_agent for r in requests} == {"skopeo/1.9.3"}
    assert not any("_sentinel" in r.path for r in registry.requests())


def test_head_and_failed_gets_are_not_blob_gets(registry, image_factory) -> None:
    image = image_factory.single_arch("harness/head")
    layer = image.platforms["linux/amd64"].layers[0]
    mark = registry.mark()
    get(f"{registry.url}/v2/{image.repository}/blobs/{layer.digest}", method="HEAD")
    with pytest.raises(urllib.error.HTTPError):
        get(f"{registry.url}/v2/{image.repository}/blobs/sha256:{'0' * 64}")
    assert [(r.method, r.status) for r in registry.requests(mark)] == [("HEAD", 200), ("GET", 404)]
    assert registry.blob_gets(mark) == []
    assert registry.mark() == mark + 2


@pytest.mark.parametrize("kib", [50, 200])
def test_mark_counts_a_request_made_just_before(registry, image_factory, kib) -> None:
    """For some blob sizes the log line lands after the client has the last byte (~1 GET in 7),
    and even after the line of a sentinel sent later; `Registry.settle` covers that."""
    payload = random.Random(kib).randbytes(kib << 10)
    image = image_factory.single_arch(f"harness/flush-{kib}", files={"data/blob": payload})
    layer = image.platforms["linux/amd64"].layers[0]
    for _ in range(20):
        mark = registry.mark()
        blob(registry, image.repository, layer.digest)
        assert [(g.digest, g.size) for g in registry.blob_gets(mark)] == [(layer.digest, layer.size)]


# -- large images ----------------------------------------------------------------------------


def test_compressible_content_is_deterministic_and_exact() -> None:
    files = compressible_files(5)
    assert files == compressible_files(5)
    assert sum(len(data) for data in files.values()) == 5 << 20
    assert compressible_files(1) != compressible_files(1, seed=2)


@pytest.mark.slow
def test_large_compressible_is_100_mb_that_compresses(registry, image_factory) -> None:
    started = time.monotonic()
    image = image_factory.large_compressible("harness/large", size_mb=100)
    elapsed = time.monotonic() - started
    assert sha256(inspect_raw(image.reference)) == image.digest
    layers = image.platforms["linux/amd64"].layers
    uncompressed = 0
    for layer in layers:
        digest, raw = hashlib.sha256(), hashlib.sha256()
        with urllib.request.urlopen(f"{registry.url}/v2/{image.repository}/blobs/{layer.digest}") as response:
            data = response.read()
        digest.update(data)
        plain = gzip.decompress(data)
        raw.update(plain)
        uncompressed += len(plain)
        assert f"sha256:{digest.hexdigest()}" == layer.digest
        assert f"sha256:{raw.hexdigest()}" == layer.diff_id
    compressed = sum(layer.size for layer in layers)
    assert uncompressed > 100 << 20
    assert 5 << 20 < compressed < uncompressed // 2
    assert elapsed < 120, f"generating and pushing took {elapsed:.1f} s"


def test_factory_workdir_holds_oci_layouts(image_factory) -> None:
    image_factory.single_arch("harness/layout")
    layouts = [p for p in Path(image_factory.workdir).iterdir() if (p / "index.json").exists()]
    assert layouts
    assert all((p / "oci-layout").read_text() == '{"imageLayoutVersion":"1.0.0"}' for p in layouts)
