"""Issue 20 on OpenEmbedded-Core: a full sstate match fetches nothing from the registry.

Two build directories at different paths (own TMPDIR, DL_DIR, copy of the layer when the build
user needs one) of one OE release (the first of the selected ones). A recipe with a docker://
URL has an sstate task after do_unpack (OE's `deploy` class: do_deploy copies the unpacked
image). Builder 1 runs it with its SSTATE_DIR; builder 2, with an empty DL_DIR and builder 1's
SSTATE_DIR as a file:// SSTATE_MIRRORS entry, runs do_deploy_setscene only: no do_fetch, no
request in the registry's access log, the same deployed files. Nothing the layer adds to
do_fetch/do_unpack (the fetcher's [file-checksums], the lockfile, strict-mode events) forces a
fetch or differs between the builders.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness.containers_conf import write_registries_conf
from tests.harness.images import ImageFactory
from tests.harness.oe import (
    BuildUser,
    OEBuild,
    check_host_tools,
    layer_under_test,
    new_workdir,
    oe_tree,
    selected_releases,
)
from tests.harness.registry import Registry

pytestmark = pytest.mark.oe

MACHINE = "qemux86-64"
PN = "cl-oe-farm"
DEPLOY_TASK = """
inherit deploy
do_deploy() {
    cp -r ${S}/container-images ${DEPLOYDIR}/cl-oe-farm
}
addtask deploy after do_unpack before do_build
"""


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    check_host_tools()
    path = new_workdir(BuildUser.for_this_process())
    yield path
    if not os.environ.get("OE_KEEP_BUILD"):
        shutil.rmtree(path, ignore_errors=True)


def test_full_sstate_match_fetches_nothing(
    workdir: Path, registry: Registry, image_factory: ImageFactory
) -> None:
    """Builder 2 (SSTATE_MIRRORS = builder 1's SSTATE_DIR, empty DL_DIR): do_deploy_setscene only,
    0 registry requests, builder 1's files."""
    user = BuildUser.for_this_process()
    tree = oe_tree(selected_releases()[0], workdir / "oe", user)
    image = image_factory.single_arch("oe/farm", "1.0")
    url = f"docker://{image.host}/{image.repository};tag={image.tag};digest={image.digest}"
    builds = []
    for name in ("builder-a", "builder-b"):
        (workdir / name).mkdir()
        user.own(workdir / name)
        build = OEBuild(tree, workdir / name, user, layer_under_test())
        write_registries_conf(build.home, insecure=[registry.host])
        user.own(build.home)
        build.write_recipe(PN, [url], extra=DEPLOY_TASK)
        builds.append(build)
    first, second = builds
    shared = first.topdir / "sstate-cache"
    first.configure(MACHINE, variables={"BB_STRICT_CHECKSUM:forcevariable": "0"})
    mirror = f"file://.* file://{shared}/PATH"
    second.configure(MACHINE, variables={"BB_STRICT_CHECKSUM:forcevariable": "0", "SSTATE_MIRRORS": mirror})

    run = first.bitbake("-c", "deploy", PN)
    assert run.ok, run.describe()
    assert "do_fetch" in run.output and "do_deploy" in run.output, run.describe()
    assert list(shared.rglob(f"sstate:{PN}:*_deploy.tar.zst")), f"no sstate object of do_deploy in {shared}"

    since = registry.mark()
    again = second.bitbake("-c", "deploy", PN)
    assert again.ok, again.describe()
    assert registry.requests(since) == [], "builder 2 asked the registry"
    assert ": task do_deploy_setscene: Succeeded" in again.output, again.describe()
    for task in ("do_fetch", "do_unpack", "do_deploy"):
        assert f": task {task}: Started" not in again.output, f"{task} ran in builder 2\n{again.describe()}"
    assert not (second.dl_dir / "containers").exists()
    deployed = [
        p for p in (first.tmpdir / "deploy" / "images").rglob(PN) if p.is_dir() and p.parent.name == MACHINE
    ]
    assert deployed, f"nothing deployed under {first.tmpdir / 'deploy' / 'images'}"
    mirror_copy = second.tmpdir / "deploy" / "images" / MACHINE / PN
    assert _files(mirror_copy) == _files(deployed[0])
