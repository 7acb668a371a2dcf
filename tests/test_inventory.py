"""Package inventory of embedded images: layers stacked with whiteouts, every package database kind,
the build task, the SBOM and `container-lock inventory` — exact results on generated images."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

from containerlock.contents import inventory, layer_stack
from containerlock.contents.inventory import InventoryError
from tests.harness.bitbake import PAYLOAD_TASKS
from tests.harness.images import Link, gzip_bytes, tar_bytes
from tests.harness.pkgdbs import apk_installed, dpkg_status, os_release, python_metadata, rpmdb_sqlite
from tests.harness.rootfs import debian_minbase, installed_packages

INVENTORY_TASKS = (*PAYLOAD_TASKS, "do_deploy_container_manifest")
DEB12 = os_release("Debian GNU/Linux 12 (bookworm)", "debian", "12")
SSL_OLD = {"Package": "libssl3", "Version": "3.0.11-1~deb12u1", "Architecture": "amd64", "Source": "openssl"}
SSL_NEW = {**SSL_OLD, "Version": "3.0.15-1~deb12u1"}
BASE = {"Package": "base-files", "Version": "12.4+deb12u5", "Architecture": "amd64"}
GONE = {"Package": "oldtool", "Version": "1.0-1", "Architecture": "amd64"}
NEW = {"Package": "newtool", "Version": "2.0-1", "Architecture": "amd64", "Source": "newtool-src (2.0-1)"}
SITE = "usr/lib/python3/dist-packages"

LAYERS = [
    {  # gzip: Debian base with an old openssl, a tool later removed, a Python package later whited out
        "usr/lib/os-release": DEB12,
        "etc/os-release": Link(b"../usr/lib/os-release"),
        "var/lib/dpkg/status": dpkg_status(BASE, SSL_OLD, GONE),
        f"{SITE}/requests-2.28.1.dist-info/METADATA": python_metadata("requests", "2.28.1", "Apache 2.0"),
        "opt/plugins/lib/apk/db/installed": apk_installed({"P": "not-at-root", "V": "1"}),  # not a database
    },
    {  # zstd: openssl upgraded, oldtool removed, newtool added; requests whited out; flask added
        "var/lib/dpkg/status": dpkg_status(BASE, SSL_NEW, NEW),
        f"{SITE}/.wh.requests-2.28.1.dist-info": b"",
        "usr/local/lib/python3.11/site-packages/Flask_Login-0.6.3.dist-info/METADATA": python_metadata(
            "Flask_Login", "0.6.3", "MIT"
        ),
        "var/lib/dpkg/status.d/tzdata": dpkg_status({"Package": "tzdata", "Version": "2024a-0+deb12u1"}),
        "var/lib/dpkg/status.d/tzdata.md5sums": b"0123 usr/share/zoneinfo/UTC\n",
    },
    {  # plain tar: an rpm and an apk database in an opaque directory that hides the layers below
        "var/lib/rpm/rpmdb.sqlite": rpmdb_sqlite(
            {
                "name": "curl",
                "version": "8.6.0",
                "release": "1.fc40",
                "arch": "x86_64",
                "epoch": 1,
                "license": "curl",
                "sourcerpm": "curl-8.6.0-1.fc40.src.rpm",
            },
            {"name": "gpg-pubkey", "version": "a15b79cc", "release": "63d04c2c"},
        ),
        "lib/apk/db/installed": apk_installed(
            {"P": "musl", "V": "1.2.4-r2", "A": "x86_64", "L": "MIT", "o": "musl"}
        ),
        "opt/plugins/.wh..wh..opq": b"",
    },
]


def expected(layer_digests: list[str]) -> set[tuple]:
    first, second, third = layer_digests
    return {
        ("deb", "base-files", "12.4+deb12u5", "amd64", None, None, first),
        ("deb", "libssl3", "3.0.15-1~deb12u1", "amd64", "openssl", None, second),  # upgraded there
        ("deb", "newtool", "2.0-1", "amd64", "newtool-src", None, second),
        ("deb", "tzdata", "2024a-0+deb12u1", None, None, None, second),
        ("pypi", "Flask_Login", "0.6.3", None, None, "MIT", second),
        ("rpm", "curl", "8.6.0-1.fc40", "x86_64", "curl", "curl", third),
        ("apk", "musl", "1.2.4-r2", "x86_64", "musl", "MIT", third),
    }


def rows(inv: inventory.Inventory) -> set[tuple]:
    return {
        (
            f.package.type,
            f.package.name,
            f.package.version,
            f.package.arch,
            f.package.source,
            f.package.license,
            f.layer,
        )
        for f in inv.packages
    }


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "audit", *args], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def layered(image_factory):
    """The layers gzip, zstd and uncompressed: every kind the inventory reads."""
    return image_factory.layered("inventory/mixed", LAYERS, compressions=("gzip", "zstd", "none"))


@pytest.fixture(scope="module")
def packaged(image_factory):
    """The same files with gzip and uncompressed layers, which a docker-archive can hold."""
    return image_factory.layered("inventory/packaged", LAYERS, compressions=("gzip", "gzip", "none"))


def pinned(image) -> str:
    return f"docker://{image.host}/{image.repository};tag=1.0;digest={image.digest}"


def test_inventory_task_reads_gzip_zstd_and_plain_layers(build, layered) -> None:
    recipe = build.write_recipe("mixed_1.0", f'inherit podman-loader\nSRC_URI += "{pinned(layered)}"\n')
    d = build.run(recipe, *INVENTORY_TASKS[:3])
    written = json.loads((Path(d.getVar("WORKDIR")) / "container-inventory.json").read_text())
    found = inventory.Inventory.from_json(next(iter(written.values())), "container-inventory.json")
    assert rows(found) == expected([layer.digest for layer in layered.platforms["linux/amd64"].layers])
    assert found.os == {"ID": "debian", "VERSION_ID": "12", "PRETTY_NAME": "Debian GNU/Linux 12 (bookworm)"}

    # `container-lock inventory` pulls the image itself and finds the same.
    live = cli("inventory", layered.reference, "--json")
    assert live.returncode == 0, live.stderr
    assert rows(inventory.Inventory.from_json(json.loads(live.stdout)[layered.reference], "cli")) == rows(
        found
    )


def test_build_manifest_and_sbom_list_every_package_with_its_layer(build, packaged) -> None:
    recipe = build.write_recipe("inv_1.0", f'inherit podman-loader\nSRC_URI += "{pinned(packaged)}"\n')
    d = build.run(recipe, *INVENTORY_TASKS)
    manifest = json.loads((Path(d.getVar("WORKDIR")) / "container-lock-manifest.json").read_text())
    layer_digests = [layer.digest for layer in packaged.platforms["linux/amd64"].layers]
    found = inventory.Inventory.from_json(manifest["images"][0]["inventory"], "manifest")
    assert rows(found) == expected(layer_digests)

    # The SBOM nests each package under its image, with a purl and the layer that brought it.
    deploy = Path(d.getVar("CONTAINER_LOCK_DEPLOY_DIR"))
    result = cli("sbom", "--deploy-dir", str(deploy))
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    platform = next(c for c in doc["components"] if c["name"].endswith("inventory/packaged"))
    packages = {c["purl"]: c for c in platform["components"] if c["type"] == "library"}
    ssl = packages["pkg:deb/debian/libssl3@3.0.15-1~deb12u1?arch=amd64&distro=debian-12"]
    assert {"name": "container-lock:layer", "value": layer_digests[1]} in ssl["properties"]
    assert {"name": "container-lock:source-package", "value": "openssl"} in ssl["properties"]
    assert "pkg:rpm/debian/curl@8.6.0-1.fc40?arch=x86_64&distro=debian-12&epoch=1" in packages
    assert (
        "pkg:pypi/flask-login@0.6.3" in packages
        and "pkg:apk/debian/musl@1.2.4-r2?arch=x86_64&distro=debian-12" in packages
    )
    assert packages["pkg:pypi/flask-login@0.6.3"]["licenses"] == [{"license": {"id": "MIT"}}]
    depends = {d["ref"]: set(d.get("dependsOn", [])) for d in doc["dependencies"]}
    assert depends[platform["bom-ref"]] == {c["bom-ref"] for c in packages.values()}

    # `container-lock inventory` shows what the build recorded.
    table = cli("inventory", str(deploy / "inv.json"))
    assert table.returncode == 0 and "libssl3" in table.stdout and "Debian GNU/Linux 12" in table.stdout


def test_inventory_signature_follows_the_images_only(build, layered, image_factory) -> None:
    other = image_factory.single_arch("inventory/other", tag="1.0")

    defaults = dict(build.local_conf)

    def basehash(image, **settings: str) -> str:
        build.local_conf.clear()
        build.set(**defaults, **settings)
        url = f"docker://{image.host}/{image.repository};tag={image.tag};digest={image.digest}"
        return build.basehashes(
            build.write_recipe("sig_1.0", f'inherit docker-loader\nSRC_URI += "{url}"\n')
        )["do_container_inventory"]

    first = basehash(layered)
    assert basehash(layered, ZSTD_COMPRESSION_LEVEL="-19", CONTAINER_COMPRESSION="xz") == first
    assert basehash(other) != first


def blobs(tmp_path: Path, *layers: bytes) -> list[tuple[str, Path]]:
    found = []
    for n, data in enumerate(layers):
        path = tmp_path / f"layer{n}"
        path.write_bytes(data)
        found.append((f"sha256:{n:064x}", path))
    return found


@pytest.mark.parametrize(
    ("layer", "complaint"),
    [
        (gzip_bytes(tar_bytes({"../etc/passwd": b"x"})), "member '../etc' is absolute or climbs out"),
        (b"this is not a tar at all" * 100, "not a readable tar layer"),
        (
            gzip_bytes(tar_bytes({"var/lib/dpkg/status": b"Package: a\nno colon here\n"})),
            ":2: not a 'Field: value'",
        ),
        (
            gzip_bytes(tar_bytes({"etc/os-release": Link(b"../../../../etc/os-release")})),
            "symlink etc/os-release -> ../../../../etc/os-release points outside the image",
        ),
        (
            gzip_bytes(tar_bytes({"var/lib/rpm/rpmdb.sqlite": b"SQLite format 3\0garbage"})),
            "not an rpm sqlite",
        ),
    ],
    ids=["dotdot", "not-a-tar", "corrupt-status", "escaping-symlink", "corrupt-rpmdb"],
)
def test_bad_layers_are_errors_naming_image_layer_and_file(tmp_path, layer, complaint) -> None:
    with pytest.raises(InventoryError) as err:
        inventory.of_layers(blobs(tmp_path, layer), "reg.example/app:1")
    assert "reg.example/app:1: layer sha256:" in str(err.value) and complaint in str(err.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["layer0"]  # nothing written


def test_old_berkeley_rpmdb_is_named_not_guessed(tmp_path) -> None:
    layer = gzip_bytes(tar_bytes({"var/lib/rpm/Packages": b"\0" * 4096}))
    found = inventory.of_layers(blobs(tmp_path, layer), "centos:7")
    assert found.packages == () and "old BerkeleyDB rpm database" in found.notes[0]


@pytest.mark.slow
def test_real_debian_root_file_system_matches_dpkg_query(tmp_path_factory, image_factory) -> None:
    """mmdebstrap's bookworm minbase as a one-layer image: the inventory is what dpkg-query says inside it."""
    tar = debian_minbase(tmp_path_factory.getbasetemp() / "rootfs")
    image = image_factory.rootfs("inventory/minbase", tar)
    live = cli("inventory", image.reference, "--json")
    assert live.returncode == 0, live.stderr
    found = inventory.Inventory.from_json(json.loads(live.stdout)[image.reference], "cli")
    listed = {(f.package.name, f.package.version, f.package.arch) for f in found.packages}
    assert listed == installed_packages(tar, tmp_path_factory.mktemp("minbase"))
    assert len(listed) > 80 and {f.package.type for f in found.packages} == {"deb"}
    assert found.os["ID"] == "debian" and found.os["VERSION_ID"] == "12"
    assert {f.layer for f in found.packages} == {image.platforms["linux/amd64"].layers[0].digest}


class _CountingFiles(dict):
    """The stacked files, counting how many keys are visited by iterating over them."""

    visited = 0

    def __iter__(self):
        for key in super().__iter__():
            self.visited += 1
            yield key

    def keys(self):  # type: ignore[override]
        return list(iter(self))


def _naive_apply(files: dict, changes: layer_stack.LayerChanges) -> None:
    """The whiteout rules written out directly (each whiteout against each file)."""
    for directory in changes.opaque:
        prefix = f"{directory}/" if directory else ""
        for path in [p for p in files if p.startswith(prefix)]:
            del files[path]
    for gone in changes.removed:
        for path in [p for p in files if p == gone or p.startswith(f"{gone}/")]:
            del files[path]
    files.update(changes.written)


def test_whiteouts_look_at_each_tracked_file_once() -> None:
    """Many whiteouts over many tracked files: one pass over the files, not one per whiteout."""
    entry = layer_stack.FileEntry("sha256:0", b"")
    paths = [f"usr/lib/python3/dist-packages/p{n}.dist-info/METADATA" for n in range(2000)]
    files = _CountingFiles(dict.fromkeys(paths, entry))
    removed = {f"usr/share/doc/d{n}" for n in range(2000)} | {"usr/lib/python3/dist-packages/p7.dist-info"}
    opaque = {f"opt/o{n}" for n in range(500)} | {"usr/lib/python3/dist-packages/p9.dist-info"}
    layer_stack.apply(files, layer_stack.LayerChanges(removed, opaque, {}))
    assert files.visited <= 2 * len(paths)  # the whiteout-by-whiteout scan visits 2 500 × 2 000
    assert set(files) == set(paths) - {paths[7], paths[9]}


@pytest.mark.parametrize("seed", range(20))
def test_whiteouts_apply_as_written_out(seed: int) -> None:
    """The indexed stacking equals the rules applied whiteout by whiteout (random trees)."""
    rng = random.Random(seed)
    names = ["a", "b", "c", "ab", "a.b"]
    tree = {"/".join(rng.choices(names, k=rng.randint(1, 4))) for _ in range(60)}
    files = {p: layer_stack.FileEntry("sha256:0", p.encode()) for p in tree}
    pick = sorted({"/".join(rng.choices(names, k=rng.randint(1, 3))) for _ in range(8)})
    changes = layer_stack.LayerChanges(
        set(pick[:4]),
        set(pick[4:]) | ({""} if seed == 0 else set()),
        {
            "b/new": layer_stack.FileEntry("sha256:1", b"new"),
            pick[0]: layer_stack.FileEntry("sha256:1", b"again"),
        },
    )
    ours, written_out = dict(files), dict(files)
    layer_stack.apply(ours, changes)
    _naive_apply(written_out, changes)
    assert ours == written_out


def test_progress_reports_bytes_of_the_layers_read(tmp_path) -> None:
    big = {
        f"srv/data/f{n}": random.Random(n).randbytes(64 << 10) for n in range(160)
    }  # ~10 MB, incompressible
    layer_blobs = blobs(
        tmp_path,
        gzip_bytes(tar_bytes({**LAYERS[0], **big}), level=1),
        tar_bytes({"var/lib/dpkg/status": dpkg_status(BASE), "srv/.wh.data": b""}),
    )
    calls: list[tuple[int, int]] = []
    found = inventory.of_layers(layer_blobs, "reg.example/app:1", progress=lambda d, t: calls.append((d, t)))
    total = sum(p.stat().st_size for _, p in layer_blobs)
    assert calls[0] == (0, total) and calls[-1] == (total, total)
    assert {t for _, t in calls} == {total}
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)
    first_layer = layer_blobs[0][1].stat().st_size
    assert any(0 < d < first_layer for d, _ in calls)  # within the gzip layer, not only after it
    assert first_layer in [d for d, _ in calls]
    assert {f.package.name for f in found.packages} == {"base-files", "requests"}
