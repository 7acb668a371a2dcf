"""The layer in real OpenEmbedded-Core builds (OE's bitbake, sanity checks, HOSTTOOLS, runqueue).

One build directory per OE release (module fixture), shared by all tests; the tests of one
configuration run one after the other (their order in this file). Two kinds of
configuration (tests/harness/oe.py): the main one parses all of OE-Core with OE's defaults,
which include BB_STRICT_CHECKSUM = "1" (parse test, strict mode tests); relaxed ones turn
strict mode off, set CONTAINER_LOCKFILE and mask OE-Core's recipes, so switching MACHINE costs
seconds (fetch + unpack per MACHINE, recording into the lockfile).
"""

from __future__ import annotations

import gzip
import io
import os
import re
import shutil
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.harness.containers_conf import write_registries_conf
from tests.harness.images import ImageFactory, PushedImage
from tests.harness.oe import (
    PARSE_TIMEOUT,
    BuildUser,
    OEBuild,
    check_host_tools,
    layer_under_test,
    new_workdir,
    oe_tree,
    read_json,
    selected_releases,
)
from tests.harness.registry import Registry

pytestmark = pytest.mark.oe

# MACHINE -> (the image factory's platform name, OCI architecture in the image config)
MACHINES = {"qemuarm64": ("linux/arm64/v8", "arm64"), "qemux86-64": ("linux/amd64", "amd64")}
MAIN_MACHINE = "qemuarm64"


@dataclass
class OESession:
    """The build and what the test layer's recipes fetch."""

    build: OEBuild
    registry: Registry
    lockfile: Path
    multi: PushedImage  # cl-multi: pinned index, fetched + unpacked per MACHINE
    strict_pinned: PushedImage  # cl-strict-pinned: pinned, fetched in strict mode
    unpinned: PushedImage  # cl-unpinned: tag only, refused in strict mode
    to_lock: PushedImage  # cl-lock: tag only, recorded in the lockfile

    def main_config(self) -> None:
        """qemuarm64, all of OE-Core's recipes, OE's defaults (its distro sets BB_STRICT_CHECKSUM = "1")."""
        self.build.configure(MAIN_MACHINE, core_recipes=True)

    def relaxed_config(self, machine: str) -> None:
        """Strict mode off (OE sets it with `=` after local.conf: forcevariable), CONTAINER_LOCKFILE set."""
        self.build.configure(
            machine,
            variables={"BB_STRICT_CHECKSUM:forcevariable": "0", "CONTAINER_LOCKFILE": str(self.lockfile)},
        )

    def tag_url(self, image: PushedImage) -> str:
        return f"docker://{image.host}/{image.repository};tag={image.tag}"

    def pinned_url(self, image: PushedImage) -> str:
        return f"{self.tag_url(image)};digest={image.digest}"


@pytest.fixture(scope="module", params=selected_releases())
def oe(
    request: pytest.FixtureRequest, registry: Registry, image_factory: ImageFactory
) -> Iterator[OESession]:
    """A build dir for one OE release with the layer under test and a test layer of four recipes."""
    check_host_tools()
    user = BuildUser.for_this_process()
    workdir = new_workdir(user)
    try:
        tree = oe_tree(request.param, workdir / "oe", user)
        build = OEBuild(tree, workdir, user, layer_under_test())
        (workdir / "lock").mkdir()
        user.own(workdir / "lock")
        session = OESession(
            build,
            registry,
            workdir / "lock" / "container-lock.json",
            image_factory.multi_arch("oe/multi"),
            image_factory.multi_arch("oe/strict-pinned"),
            image_factory.multi_arch("oe/unpinned"),
            image_factory.multi_arch("oe/to-lock"),
        )
        write_registries_conf(build.home, insecure=[registry.host])
        user.own(build.home)
        build.write_recipe("cl-multi", [session.pinned_url(session.multi)])
        build.write_recipe("cl-strict-pinned", [session.pinned_url(session.strict_pinned)])
        build.write_recipe("cl-unpinned", [session.tag_url(session.unpinned)])
        build.write_recipe("cl-lock", [session.tag_url(session.to_lock)])
        start = time.monotonic()
        yield session
        summary = "\n".join(
            f"  {r.seconds:6.1f} s  rc={r.returncode}  {' '.join(r.args)}" for r in build.runs
        )
        print(f"\nOE {tree.release}: {time.monotonic() - start:.0f} s of bitbake commands\n{summary}")
    finally:
        if not os.environ.get("OE_KEEP_BUILD"):
            shutil.rmtree(workdir, ignore_errors=True)


def test_parse_with_layer(oe: OESession) -> None:
    """All of OE-Core and the test layer parse with the layer; skopeo is a host tool of the build."""
    oe.main_config()
    run = oe.build.bitbake("-p", timeout=PARSE_TIMEOUT)
    assert run.ok, run.describe()
    assert not run.errors(), run.describe()
    m = re.search(r"Parsing of (\d+) \.bb files complete .* (\d+) errors", run.output)
    assert m, run.describe()
    assert int(m[1]) > 500, f"only {m[1]} recipes parsed: OE-Core's recipes are missing\n{run.describe()}"
    assert int(m[2]) == 0, run.describe()
    # OE runs tasks with PATH = ${HOSTTOOLS_DIR}: the layer's skopeo must be linked there.
    skopeo = oe.build.tmpdir / "hosttools" / "skopeo"
    assert skopeo.is_symlink(), f"{skopeo} missing: skopeo is not in HOSTTOOLS(_NONFATAL)"
    assert Path(os.path.realpath(skopeo)).name == "skopeo"


def test_strict_unpinned_target_stops_before_registry(oe: OESession) -> None:
    """Strict mode: fetching an unpinned recipe fails, naming its URL, before any registry request."""
    oe.main_config()
    since = oe.registry.mark()
    run = oe.build.bitbake("-c", "fetch", "cl-unpinned")
    assert not run.ok, run.describe()
    url = oe.tag_url(oe.unpinned)
    assert run.errors(), run.describe()
    assert url in run.output[run.output.index("ERROR:") :], run.describe()
    assert oe.registry.requests(since) == [], "strict mode let a request reach the registry"


def test_strict_pinned_fetch_with_unpinned_neighbours(oe: OESession) -> None:
    """Strict mode: a pinned recipe fetches although unbuilt recipes of the layer are unpinned."""
    oe.main_config()
    since = oe.registry.mark()
    run = oe.build.bitbake("-c", "fetch", "cl-strict-pinned")
    assert run.ok, run.describe()
    repos = {g.repository for g in oe.registry.blob_gets(since)}
    assert repos == {oe.strict_pinned.repository}, f"blob downloads from {repos}"


def _layer_file(layer: Path, name: str) -> bytes:
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(layer.read_bytes()))) as tar:
        for member in tar.getmembers():
            if member.name.lstrip("./") == name:
                extracted = tar.extractfile(member)
                assert extracted is not None
                return extracted.read()
    raise AssertionError(f"{name} not in layer {layer}")


@pytest.mark.parametrize("machine", list(MACHINES))
def test_fetch_unpack_platform(oe: OESession, machine: str) -> None:
    """`bitbake -c unpack` of a pinned 4-platform index places only MACHINE's image in the unpack dir."""
    platform, arch = MACHINES[machine]
    oe.relaxed_config(machine)
    run = oe.build.bitbake("-c", "unpack", "cl-multi")
    assert run.ok, run.describe()
    where = oe.build.recipe_vars("cl-multi", "WORKDIR", "UNPACKDIR")
    for task in ("do_fetch", "do_unpack"):
        assert list(Path(where["WORKDIR"]).glob(f"temp/log.{task}.*")), f"{task} did not run"
    # OE-Core before styhead unpacks into WORKDIR, later releases into UNPACKDIR.
    images = Path(where["UNPACKDIR"] or where["WORKDIR"]) / "container-images"
    dirs = sorted(p for p in images.iterdir() if not p.name.startswith("."))
    assert len(dirs) == 1, f"expected one image under {images}: {dirs}"
    layout = dirs[0]
    want = oe.multi.platforms[platform]
    index = read_json(layout / "index.json")
    assert [m["digest"] for m in index["manifests"]] == [want.manifest_digest]
    blobs = layout / "blobs" / "sha256"
    manifest = read_json(blobs / want.manifest_digest.split(":")[1])
    assert manifest["config"]["digest"] == want.config_digest
    config = read_json(blobs / want.config_digest.split(":")[1])
    assert (config["os"], config["architecture"]) == ("linux", arch)
    expected_blobs = {want.manifest_digest, want.config_digest, *(layer.digest for layer in want.layers)}
    assert {f"sha256:{p.name}" for p in blobs.iterdir()} == expected_blobs, "other platforms' blobs unpacked"
    assert _layer_file(blobs / want.layers[0].digest.split(":")[1], "etc/platform") == platform.encode()
    facts = read_json(layout / "container-lock.json")
    assert facts["digest"] == oe.multi.digest
    assert facts["manifest"] == want.manifest_digest


def test_lock_records_resolved_digest(oe: OESession) -> None:
    """CONTAINER_LOCKFILE: fetching an unpinned recipe records the digest; the next parse pins it."""
    oe.relaxed_config(MAIN_MACHINE)
    assert not oe.lockfile.exists()
    run = oe.build.bitbake("-c", "fetch", "cl-lock")
    assert run.ok, run.describe()
    assert oe.lockfile.is_file(), f"no lockfile written\n{run.describe()}"
    lock = read_json(oe.lockfile)
    image = oe.to_lock
    key = f"{image.host}/{image.repository}:{image.tag}"
    assert lock["version"] == 1
    assert list(lock["images"]) == [key]
    entry = lock["images"][key]
    assert entry["digest"] == image.digest
    assert entry["platforms"] == {"linux/arm64": image.platforms["linux/arm64/v8"].manifest_digest}
    src_uri = oe.build.recipe_vars("cl-lock", "SRC_URI")["SRC_URI"]
    assert f"digest={image.digest}" in src_uri, "the lockfile did not pin the recipe at parse time"
