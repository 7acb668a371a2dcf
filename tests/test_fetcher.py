"""The docker:// fetcher through real BitBake, a real registry and real skopeo."""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import pickle
import re
import shutil
from pathlib import Path

import bb.build
import bb.fetch2
import pytest

from containerlock.fetch.fetcher import DockerRegistryFetcher
from containerlock.files import file_digest
from containerlock.oci.layout import dirname as unpack_dirname
from containerlock.oci.reference import parse_url
from tests.harness.bitbake import BuildDir


def docker_url(image, digest: str | None = None, tag: bool = True) -> str:
    """The recipe's docker:// URL for a pushed image."""
    url = f"docker://{image.host}/{image.repository}"
    if tag:
        url += f";tag={image.tag}"
    if digest:
        url += f";digest={digest}"
    return url


def recipe(build: BuildDir, name: str, *urls: str, extra: str = "") -> Path:
    src = " ".join(urls)
    return build.write_recipe(f"{name}_1.0", f'SRC_URI = "{src}"\n{extra}\n')


def unpacked(d, url: str) -> dict:
    """Facts of the image do_unpack placed in WORKDIR."""
    layout = Path(d.getVar("WORKDIR")) / "container-images" / unpack_dirname(parse_url(url))
    return json.loads((layout / "container-lock.json").read_text())


def store_blobs(build: BuildDir) -> dict[str, Path]:
    root = Path(build.local_conf["DL_DIR"]) / "containers" / "blobs" / "sha256"
    return {f"sha256:{p.name}": p for p in root.iterdir()} if root.exists() else {}


def test_registry_with_port_is_fetched_and_unpacked(build, registry, image_factory) -> None:
    image = image_factory.single_arch("fetch/port", tag="1.0")
    url = docker_url(image, image.digest)
    d = build.run(recipe(build, "port", url), "do_fetch", "do_unpack")
    facts = unpacked(d, url)
    plat = image.platforms["linux/amd64"]
    assert facts["reference"] == f"{registry.host}/fetch/port"
    assert facts["config"] == plat.config_digest
    assert [layer["digest"] for layer in facts["layers"]] == [layer.digest for layer in plat.layers]
    # Nothing in DL_DIR or WORKDIR carries a ':' (skopeo transport syntax, upstream's port bug).
    for root in (Path(build.local_conf["DL_DIR"]), Path(d.getVar("WORKDIR"))):
        assert not [p for p in root.rglob("*") if ":" in p.name]


@pytest.mark.parametrize("package_arch", ["amd64", "arm64", "armhf", "armel"])
def test_multi_arch_index_yields_the_package_arch_image(build, image_factory, package_arch) -> None:
    image = image_factory.multi_arch("fetch/multi", tag="1.0")
    platform = {
        "amd64": "linux/amd64",
        "arm64": "linux/arm64/v8",
        "armhf": "linux/arm/v7",
        "armel": "linux/arm/v6",
    }[package_arch]
    build.set(DISTRO_ARCH=package_arch)
    url = docker_url(image, image.digest)
    d = build.run(recipe(build, "multi", url), "do_fetch", "do_unpack")
    facts = unpacked(d, url)
    assert facts["digest"] == image.digest
    assert facts["manifest"] == image.platforms[platform].manifest_digest
    assert facts["config"] == image.platforms[platform].config_digest
    others = {p.config_digest for k, p in image.platforms.items() if k != platform}
    assert facts["config"] not in others


def test_arch_all_is_a_clear_error(build, registry, image_factory) -> None:
    image = image_factory.multi_arch("fetch/multi", tag="1.0")
    build.set(DISTRO_ARCH="all")
    mark = registry.mark()
    with pytest.raises(bb.fetch2.FetchError, match="CONTAINER_PLATFORM"):
        build.run(recipe(build, "all", docker_url(image, image.digest)), "do_fetch")
    assert registry.requests(mark) == []


def test_platform_missing_from_index_names_the_offered_ones(build, image_factory) -> None:
    image = image_factory.multi_arch("fetch/multi", tag="1.0")
    build.set(DISTRO_ARCH="riscv64")
    with pytest.raises(bb.fetch2.FetchError):
        build.run(recipe(build, "riscv", docker_url(image, image.digest)), "do_fetch")
    errors = build.events.messages(logging.ERROR)
    assert any(re.search(r"no linux/riscv64 image; it offers: .*linux/arm/v7", m) for m in errors)


def test_missing_digest_is_resolved_once_and_reported(build, registry, image_factory) -> None:
    image = image_factory.multi_arch("fetch/unpinned", tag="2.0")
    url = docker_url(image)
    mark = registry.mark()
    d = build.run(recipe(build, "unpinned", url), "do_fetch", "do_unpack")
    tag_lookups = [r for r in registry.requests(mark) if r.path.endswith(f"/manifests/{image.tag}")]
    assert len(tag_lookups) == 1  # one resolution; everything after goes by digest
    events = build.events.of_type(bb.fetch2.MissingChecksumEvent)
    assert [(e.url, e.checksums) for e in events] == [(url, {"sha256sum": image.digest})]
    pinned_line = f"{url};digest={image.digest}"
    assert any(pinned_line in m for m in build.events.messages(logging.WARNING))
    assert unpacked(d, url)["digest"] == image.digest


def test_strict_mode_refuses_unpinned_urls_before_any_request(build, registry, image_factory) -> None:
    image = image_factory.single_arch("fetch/strict", tag="1.0")
    build.set(BB_STRICT_CHECKSUM="1")
    mark = registry.mark()
    for name, url in (("nodigest", docker_url(image)), ("notag", docker_url(image, image.digest, tag=False))):
        with pytest.raises(bb.fetch2.BBFetchException):
            build.run(recipe(build, name, url), "do_fetch")
    assert registry.requests(mark) == []
    errors = build.events.messages(logging.ERROR)
    assert any("no digest" in m and "container-lock update" in m for m in errors)
    assert any("no tag" in m for m in errors)


def test_strict_mode_accepts_tag_and_digest(build, image_factory) -> None:
    image = image_factory.single_arch("fetch/strict", tag="1.0")
    build.set(BB_STRICT_CHECKSUM="1")
    build.run(recipe(build, "strictok", docker_url(image, image.digest)), "do_fetch")
    assert not build.events.messages(logging.WARNING)


def test_strict_ignore_is_silent_but_still_reports_the_event(build, image_factory) -> None:
    image = image_factory.single_arch("fetch/ignore", tag="1.0")
    build.set(BB_STRICT_CHECKSUM="ignore")
    build.run(recipe(build, "ignore", docker_url(image)), "do_fetch")
    assert not build.events.messages(logging.WARNING)
    assert len(build.events.of_type(bb.fetch2.MissingChecksumEvent)) == 1


def test_moved_tag_warns_with_both_digests_and_builds_the_pin(build, image_factory) -> None:
    old = image_factory.single_arch("fetch/moving", tag="1.0", files={"version": b"old\n"})
    new = image_factory.single_arch("fetch/moving", tag="1.0", files={"version": b"new\n"})
    assert old.digest != new.digest
    url = docker_url(old, old.digest)
    d = build.run(recipe(build, "moving", url), "do_fetch", "do_unpack")
    warnings = build.events.messages(logging.WARNING)
    assert any(old.digest in m and new.digest in m for m in warnings)
    assert unpacked(d, url)["config"] == old.platforms["linux/amd64"].config_digest


def test_shared_layers_and_tags_are_downloaded_once(build, registry, image_factory) -> None:
    first, second = image_factory.sharing_base(("fetch/share-a", "fetch/share-b"), tag="1.0")
    shared = {layer.digest for layer in first.platforms["linux/amd64"].layers} & {
        layer.digest for layer in second.platforms["linux/amd64"].layers
    }
    assert shared
    mark = registry.mark()
    build.run(recipe(build, "sharea", docker_url(first, first.digest)), "do_fetch")
    build.run(recipe(build, "shareb", docker_url(second, second.digest)), "do_fetch")
    gets = [g.digest for g in registry.blob_gets(mark)]
    for digest in shared:
        assert gets.count(digest) == 1
    layer_digests = {layer.digest for img in (first, second) for layer in img.platforms["linux/amd64"].layers}
    assert sorted(g for g in gets if g in layer_digests) == sorted(layer_digests)

    # The same content under another tag (and the same URL again) costs no blob download.
    third = image_factory.retag(first, "fetch/share-a", "also")
    mark = registry.mark()
    build.run(recipe(build, "sharec", docker_url(third, third.digest)), "do_fetch")
    build.run(recipe(build, "sharea", docker_url(first, first.digest)), "do_fetch")
    assert registry.blob_gets(mark) == []


def test_store_holds_registry_bytes_keyed_by_digest(build, image_factory) -> None:
    image = image_factory.single_arch("fetch/bytes", tag="1.0")
    build.run(recipe(build, "bytes", docker_url(image, image.digest)), "do_fetch")
    blobs = store_blobs(build)
    plat = image.platforms["linux/amd64"]
    expected = {image.digest, plat.config_digest, *(layer.digest for layer in plat.layers)}
    assert expected <= set(blobs)
    for digest, path in blobs.items():
        assert file_digest(path) == digest


@pytest.mark.parametrize("damage", ["tamper", "truncate"])
def test_damaged_blob_in_dl_dir_is_detected_and_fetched_again(build, registry, image_factory, damage) -> None:
    image = image_factory.single_arch("fetch/damage", tag="1.0")
    rec = recipe(build, "damage", docker_url(image, image.digest))
    build.run(rec, "do_fetch")
    layer = image.platforms["linux/amd64"].layers[-1].digest
    path = store_blobs(build)[layer]
    data = path.read_bytes()
    path.write_bytes(data[:-1] + bytes([data[-1] ^ 1]) if damage == "tamper" else data[: len(data) // 2])

    # Offline, the damaged blob is not used: BitBake's network error instead.
    build.set(BB_NO_NETWORK="1")
    with pytest.raises(bb.fetch2.NetworkAccess):
        build.run(rec, "do_fetch")
    # Online, exactly that layer is downloaded again (skopeo always reads the small config).
    build.set(BB_NO_NETWORK="0")
    mark = registry.mark()
    build.run(rec, "do_fetch")
    config = image.platforms["linux/amd64"].config_digest
    assert [g.digest for g in registry.blob_gets(mark) if g.digest != config] == [layer]
    assert file_digest(store_blobs(build)[layer]) == layer


def test_unpack_refuses_a_blob_damaged_after_fetch(build, image_factory) -> None:
    image = image_factory.single_arch("fetch/damage2", tag="1.0")
    rec = recipe(build, "damage2", docker_url(image, image.digest))
    build.run(rec, "do_fetch")
    path = store_blobs(build)[image.platforms["linux/amd64"].config_digest]
    path.write_bytes(b"{}")
    with pytest.raises(bb.fetch2.FetchError, match="missing or corrupt"):
        build.run(rec, "do_unpack")


def _fetch_in_child(topdir: str, dl_dir: str, url: str, queue) -> None:
    build = BuildDir(Path(topdir))
    build.set(DL_DIR=dl_dir, TMPDIR=str(Path(topdir) / "tmp"))
    try:
        build.run(recipe(build, "concurrent", url), "do_fetch", "do_unpack")
        queue.put("ok")
    except Exception as err:  # reported to the parent
        queue.put(repr(err))


def test_concurrent_fetches_of_one_image_are_safe(tmp_path, registry, image_factory) -> None:
    image = image_factory.single_arch("fetch/concurrent", tag="1.0")
    url = docker_url(image, image.digest)
    dl_dir = tmp_path / "shared-downloads"
    mark = registry.mark()
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    children = [
        ctx.Process(target=_fetch_in_child, args=(str(tmp_path / f"b{i}"), str(dl_dir), url, queue))
        for i in range(4)
    ]
    for child in children:
        child.start()
    for child in children:
        child.join(120)
    assert sorted(queue.get(timeout=5) for _ in children) == ["ok"] * 4
    gets = [g.digest for g in registry.blob_gets(mark)]
    assert len(gets) == len(set(gets))  # every blob downloaded once
    for digest, path in {
        f"sha256:{p.name}": p for p in (dl_dir / "containers/blobs/sha256").iterdir()
    }.items():
        assert file_digest(path) == digest


def test_offline_build_from_populated_dl_dir(build, registry, image_factory) -> None:
    image = image_factory.single_arch("fetch/offline", tag="1.0")
    url = docker_url(image, image.digest)
    rec = recipe(build, "offline", url)
    build.run(rec, "do_fetch")
    build.set(BB_NO_NETWORK="1")
    mark = registry.mark()
    d = build.run(rec, "do_fetch", "do_unpack")
    assert registry.requests(mark) == []
    assert unpacked(d, url)["digest"] == image.digest

    missing = image_factory.single_arch("fetch/offline-missing", tag="1.0")
    mark = registry.mark()
    with pytest.raises(bb.fetch2.NetworkAccess):
        build.run(recipe(build, "offline2", docker_url(missing, missing.digest)), "do_fetch")
    assert registry.requests(mark) == []


def test_unpack_uses_no_network_and_no_compression(build, registry, image_factory) -> None:
    image = image_factory.single_arch("fetch/unpack", tag="1.0")
    url = docker_url(image, image.digest)
    rec = recipe(build, "unpack", url)
    build.run(rec, "do_fetch")
    mark = registry.mark()
    d = build.run(rec, "do_unpack")
    assert registry.requests(mark) == []
    layout = Path(d.getVar("WORKDIR")) / "container-images" / unpack_dirname(parse_url(url))
    index = json.loads((layout / "index.json").read_text())
    assert index["manifests"][0]["digest"] == image.platforms["linux/amd64"].manifest_digest
    blobs = store_blobs(build)
    for blob in (layout / "blobs" / "sha256").iterdir():
        stored = blobs[f"sha256:{blob.name}"]
        assert blob.read_bytes() == stored.read_bytes()  # registry bytes, not recompressed
        assert os.stat(blob).st_ino == os.stat(stored).st_ino  # hard link, no copy


def test_registered_ahead_of_another_docker_fetcher(build, image_factory) -> None:
    class UpstreamLike(bb.fetch2.FetchMethod):
        def supports(self, ud, d):
            return ud.type == "docker"

        def download(self, ud, d):
            raise AssertionError("the other docker fetcher was used")

    bb.fetch2.methods.append(UpstreamLike())
    try:
        image = image_factory.single_arch("fetch/order", tag="1.0")
        build.run(recipe(build, "order", docker_url(image, image.digest)), "do_fetch")
        kinds = [type(m) for m in bb.fetch2.methods]
        assert kinds.index(DockerRegistryFetcher) < kinds.index(UpstreamLike)
        # not Isar's container_fetcher
        assert DockerRegistryFetcher.__module__ == "containerlock.fetch.fetcher"
    finally:
        bb.fetch2.methods[:] = [m for m in bb.fetch2.methods if not isinstance(m, UpstreamLike)]


@pytest.mark.parametrize(
    ("url", "error"),
    [
        ("docker://", bb.fetch2.MalformedUrl),
        ("docker://127.0.0.1:5000/app;digest=sha256:12", bb.fetch2.ParameterError),
        ("docker://127.0.0.1:5000/app;tga=1", bb.fetch2.ParameterError),
        ("docker://127.0.0.1:5000/a/../../etc", bb.fetch2.MalformedUrl),
        ("docker://127.0.0.1:5000/App", bb.fetch2.MalformedUrl),
    ],
)
def test_bad_url_fails_naming_the_url_and_writes_nothing(build, tmp_path, url, error) -> None:
    """As BitBake's own fetchers do: MalformedUrl for the URL, ParameterError for a parameter."""
    with pytest.raises(error) as err:
        build.run(recipe(build, "bad", url), "do_fetch")
    assert url in str(err.value)
    dl_dir = Path(build.local_conf["DL_DIR"])
    assert not dl_dir.exists() or not any(dl_dir.rglob("*"))
    assert not (tmp_path / "etc").exists()


def test_copy_reports_progress(build, image_factory) -> None:
    image = image_factory.single_arch("fetch/progress", tag="1.0")
    build.run(recipe(build, "progress", docker_url(image, image.digest)), "do_fetch")
    progress = [e.progress for e in build.events.of_type(bb.build.TaskProgress)]
    assert progress and progress[0] == 0 and max(progress) > 0


def test_fetch_signature_follows_the_digest(build, image_factory) -> None:
    old = image_factory.single_arch("fetch/sig", tag="1.0", files={"v": b"1"})
    new = image_factory.single_arch("fetch/sig", tag="1.0", files={"v": b"2"})
    first = build.basehashes(recipe(build, "sig", docker_url(old, old.digest)))
    second = build.basehashes(recipe(build, "sig", docker_url(new, new.digest)))
    assert first["do_fetch"] != second["do_fetch"]
    build.set(ZSTD_COMPRESSION_LEVEL="-19")
    assert (
        build.basehashes(recipe(build, "sig", docker_url(new, new.digest)))["do_fetch"] == second["do_fetch"]
    )


def test_isar_cross_build_takes_the_device_platform_and_logs_why(build, image_factory) -> None:
    """Isar rewrites PACKAGE_ARCH to the build host's for DPKG_ARCH = "all": DISTRO_ARCH decides."""
    image = image_factory.multi_arch("fetch/multi", tag="1.0")
    build.set(DISTRO_ARCH="armhf")
    url = docker_url(image, image.digest)
    d = build.run(recipe(build, "cross", url, extra='PACKAGE_ARCH = "amd64"'), "do_fetch", "do_unpack")
    assert d.getVar("PACKAGE_ARCH") == "amd64"
    facts = unpacked(d, url)
    assert (facts["platform"], facts["config"]) == (
        "linux/arm/v7",
        image.platforms["linux/arm/v7"].config_digest,
    )
    notes = build.events.messages(logging.INFO)
    assert any("platform linux/arm/v7 (DISTRO_ARCH = armhf; PACKAGE_ARCH = amd64" in m for m in notes)


def test_wrong_platform_is_refused_on_every_try_and_every_path(build, registry, image_factory) -> None:
    """An amd64-only image pinned in an armhf recipe: refused again once its blobs are in DL_DIR."""
    image = image_factory.single_arch("fetch/amd64-only", tag="1.0")
    url = docker_url(image, image.digest)
    arm = recipe(build, "armonly", url, extra='DISTRO_ARCH = "armhf"')
    amd = recipe(build, "amdonly", url)
    refused = "built for linux/amd64, but this recipe needs linux/arm/v7"
    for attempt in ("first", "second"):
        build.events.clear()
        with pytest.raises(bb.fetch2.FetchError):
            build.run(arm, "do_fetch")
        assert any(refused in m for m in build.events.messages(logging.ERROR)), attempt
    build.run(amd, "do_fetch")  # the same digest, fetched by an amd64 recipe: now all of it is stored
    mark = registry.mark()
    for task in ("do_fetch", "do_unpack"):
        build.events.clear()
        with pytest.raises(bb.fetch2.FetchError) as err:
            build.run(arm, task)
        assert any(refused in m for m in [str(err.value), *build.events.messages(logging.ERROR)]), task
    assert registry.requests(mark) == []  # refused from the store, without asking the registry
    records = list((Path(build.local_conf["DL_DIR"]) / "containers" / "images").rglob("*.json"))
    assert [json.loads(p.read_text())["platform"] for p in records] == ["linux/amd64"]


def test_log_records_carry_no_objects_of_ours(build, image_factory) -> None:
    """BitBake pickles log records over to its UI process, which never imports containerlock: a record
    whose arguments hold one of our objects kills the UI's event thread and hangs `bitbake`."""
    image = image_factory.multi_arch("fetch/multi", tag="1.0")
    url = docker_url(image, image.digest)
    build.set(DISTRO_ARCH="armhf", BB_GENERATE_MIRROR_TARBALLS="1")
    d = build.run(recipe(build, "pickled", url), "do_fetch", "do_unpack")
    (
        Path(d.getVar("DL_DIR")) / next(iter(bb.fetch2.Fetch([url], d).ud.values())).mirrortarballs[0]
    ).write_bytes(b"not a tarball")
    shutil.rmtree(Path(d.getVar("DL_DIR")) / "containers" / "blobs")  # the next fetch tries the bad tarball
    build.run(recipe(build, "pickled", url), "do_fetch")
    assert any("ignoring mirror tarball" in m for m in build.events.messages(logging.WARNING))
    assert any("platform linux/arm/v7" in m for m in build.events.messages(logging.INFO))
    for record in build.events.records:
        assert b"containerlock" not in pickle.dumps((record.msg, record.args)), record.getMessage()
