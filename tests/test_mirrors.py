"""Mirror tarballs with PREMIRRORS (file:// and http://), shared DL_DIR, registry mirrors, checkstatus."""

from __future__ import annotations

import functools
import http.server
import multiprocessing
import shutil
import tarfile
import threading
from pathlib import Path

import bb.fetch2
import pytest

from containerlock.files import file_digest
from tests.harness.bitbake import PAYLOAD_TASKS, BuildDir
from tests.harness.containers_conf import write_registries_conf
from tests.harness.images import ImageFactory
from tests.harness.registry import Registry


def pinned(image) -> str:
    return f"docker://{image.host}/{image.repository};tag={image.tag};digest={image.digest}"


def new_build(tmp_path: Path, name: str, **conf: str) -> BuildDir:
    build = BuildDir(tmp_path / name)
    build.set(DL_DIR=str(tmp_path / f"{name}-dl"), TMPDIR=str(tmp_path / name / "tmp"), **conf)
    return build


def payload(d) -> dict[str, bytes]:
    images = Path(d.getVar("D")) / "usr" / "share" / d.getVar("BPN") / "images"
    return {p.name: p.read_bytes() for p in sorted(images.iterdir())}


@pytest.fixture
def http_server(tmp_path):
    """A loopback HTTP server for a mirror directory."""
    root = tmp_path / "http-mirror"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


def test_mirror_tarballs_rebuild_the_same_payload_offline(
    tmp_path, registry, image_factory, http_server
) -> None:
    multi = image_factory.multi_arch("mirror/multi", tag="1.0")
    single = image_factory.single_arch("mirror/single", tag="1.0")
    recipe_text = f'inherit podman-loader\nSRC_URI += "{pinned(multi)} {pinned(single)}"\n'
    first = new_build(tmp_path, "first", BB_GENERATE_MIRROR_TARBALLS="1")
    d = first.run(first.write_recipe("mirrored_1.0", recipe_text), *PAYLOAD_TASKS)
    expected = payload(d)
    tarballs = sorted(Path(first.local_conf["DL_DIR"]).glob("*.tar"))
    assert len(tarballs) == 2 and not any(":" in t.name for t in tarballs)
    # Another platform of the same index gets a mirror file of its own.
    first.set(DISTRO_ARCH="arm64")
    first.run(first.write_recipe("mirrored-arm_1.0", f'SRC_URI = "{pinned(multi)}"\n'), "do_fetch")
    assert len({t.name for t in Path(first.local_conf["DL_DIR"]).glob("*.tar")}) == 3

    mirror_dir = tmp_path / "mirror"
    mirror_dir.mkdir()
    for tarball in tarballs:
        shutil.copy(tarball, mirror_dir)
    mark = registry.mark()
    offline = new_build(
        tmp_path, "offline", BB_NO_NETWORK="1", PREMIRRORS=f"docker://.*/.* file://{mirror_dir}/"
    )
    d = offline.run(offline.write_recipe("mirrored_1.0", recipe_text), *PAYLOAD_TASKS)
    assert payload(d) == expected
    assert registry.requests(mark) == []

    http_root, url = http_server
    for tarball in tarballs:
        shutil.copy(tarball, http_root)
    over_http = new_build(tmp_path, "http", PREMIRRORS=f"docker://.*/.* {url}")
    d = over_http.run(over_http.write_recipe("mirrored_1.0", recipe_text), *PAYLOAD_TASKS)
    assert payload(d) == expected
    assert registry.requests(mark) == []


def test_a_tampered_mirror_tarball_is_not_used(tmp_path, registry, image_factory) -> None:
    image = image_factory.single_arch("mirror/tamper", tag="1.0")
    first = new_build(tmp_path, "first", BB_GENERATE_MIRROR_TARBALLS="1")
    first.run(first.write_recipe("tamper_1.0", f'SRC_URI = "{pinned(image)}"\n'), "do_fetch")
    tarball = next(Path(first.local_conf["DL_DIR"]).glob("*.tar"))
    data = bytearray(tarball.read_bytes())
    with tarfile.open(tarball) as tar:
        member = next(m for m in tar if m.name.endswith(image.platforms["linux/amd64"].layers[-1].digest[7:]))
    data[member.offset_data + 10] ^= 0xFF  # inside the layer blob
    mirror_dir = tmp_path / "mirror"
    mirror_dir.mkdir()
    (mirror_dir / tarball.name).write_bytes(bytes(data))
    offline = new_build(
        tmp_path, "offline", BB_NO_NETWORK="1", PREMIRRORS=f"docker://.*/.* file://{mirror_dir}/"
    )
    with pytest.raises(bb.fetch2.BBFetchException):
        offline.run(offline.write_recipe("tamper_1.0", f'SRC_URI = "{pinned(image)}"\n'), "do_fetch")
    assert any(
        "ignoring mirror tarball" in m and "does not match its digest" in m for m in offline.events.messages()
    )
    store = Path(offline.local_conf["DL_DIR"]) / "containers" / "blobs" / "sha256"
    for blob in store.iterdir() if store.exists() else []:
        assert file_digest(blob) == f"sha256:{blob.name}"


def _build_in_process(topdir: str, dl_dir: str, urls: str, queue) -> None:
    build = BuildDir(Path(topdir))
    build.set(DL_DIR=dl_dir, TMPDIR=f"{topdir}/tmp")
    try:
        build.run(build.write_recipe("shared_1.0", f'SRC_URI = "{urls}"\n'), "do_fetch", "do_unpack")
        queue.put("ok")
    except Exception as err:  # reported to the parent
        queue.put(repr(err))


@pytest.mark.parametrize("round_", range(3))
def test_two_builds_share_one_dl_dir_and_download_each_blob_once(
    tmp_path, registry, image_factory, round_
) -> None:
    family = image_factory.shared_base_family(f"mirror/family{round_}", 3)
    dl_dir = tmp_path / "shared-dl"
    mark = registry.mark()
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    jobs = [" ".join(pinned(i) for i in family[:2]), " ".join(pinned(i) for i in family[1:])]
    procs = [
        ctx.Process(target=_build_in_process, args=(str(tmp_path / f"b{n}"), str(dl_dir), urls, queue))
        for n, urls in enumerate(jobs)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(180)
    assert sorted(queue.get(timeout=5) for _ in procs) == ["ok", "ok"]
    layers = {layer.digest for image in family for layer in image.platforms["linux/amd64"].layers}
    gets = [g.digest for g in registry.blob_gets(mark) if g.digest in layers]
    assert sorted(gets) == sorted(layers)  # each layer once, the shared base too
    for blob in (dl_dir / "containers" / "blobs" / "sha256").iterdir():
        assert file_digest(blob) == f"sha256:{blob.name}"


def test_registry_mirror_from_registries_conf_serves_when_the_primary_is_down(
    tmp_path, monkeypatch, registry
) -> None:
    with Registry(tmp_path / "primary") as primary, Registry(tmp_path / "mirror") as mirror:
        image = ImageFactory(tmp_path / "images", primary.host).single_arch("mirror/app", tag="1.0")
        ImageFactory(tmp_path / "images-m", mirror.host).single_arch("mirror/app", tag="1.0")
        home = tmp_path / "home"
        write_registries_conf(
            home, insecure=[registry.host, mirror.host], mirrors={primary.host: [mirror.host]}
        )
        monkeypatch.setenv("HOME", str(home))
        primary.stop()
        mark = mirror.mark()
        build = new_build(tmp_path, "b")
        build.run(
            build.write_recipe("mirrored_1.0", f'SRC_URI = "{pinned(image)}"\n'), "do_fetch", "do_unpack"
        )
        layer = image.platforms["linux/amd64"].layers[-1].digest
        assert layer in [g.digest for g in mirror.blob_gets(mark)]


def test_checkstatus_reports_whether_the_image_exists(build, image_factory) -> None:
    image = image_factory.single_arch("mirror/status", tag="1.0")
    good = pinned(image)
    d = build.parse(build.write_recipe("status_1.0", f'SRC_URI = "{good}"\n'))
    bb.fetch2.Fetch([good], d).checkstatus()
    missing = f"docker://{image.host}/mirror/status;tag=nope"
    with pytest.raises(bb.fetch2.FetchError):
        bb.fetch2.Fetch([missing], d).checkstatus()
