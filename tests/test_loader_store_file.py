"""podman-loader reads podman's store file instead of starting podman to list and verify.

On a slow device each podman start costs about a second (docs/loader.md, *First-boot time*), so
the loader reads `<graphroot>/<driver>-images/images.json` (where containers/storage keeps every
image's ID and names) when it is sure that is the file root's podman uses, and asks podman
otherwise. Checked on a real podman store: which engine calls a first and a second run make
under each storage configuration (and with the file's reading turned off), and that the images
are right either way.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from pathlib import Path
from typing import NamedTuple

import pytest

from tests.harness.bitbake import PACKAGE_TASKS
from tests.harness.podman import Podman
from tests.test_loader import install_deb, loader_recipe

IMAGES = 3


class StoreConfig(NamedTuple):
    """A storage configuration and whether the loader reads the store file under it."""

    reads_file: bool
    driver: str | None = "vfs"
    options: str = ""
    env: tuple[tuple[str, str], ...] = ()
    recipe: str = ""
    graphroot: str = "graphroot = '{root}'"


def _conf(podman: Podman, config: StoreConfig, extra: Path) -> None:
    """Rewrite the store's storage.conf (the same store: graphroot and runroot unchanged)."""
    lines = ["# written by the test", "[storage]"]
    if config.driver:
        lines.append(f'driver = "{config.driver}"  # a comment')
    lines += [
        config.graphroot.format(root=podman.workdir / "root", workdir=podman.workdir),
        f'runroot = "{podman.runroot}"',
        config.options.format(extra=extra),
    ]
    podman.storage_conf.write_text("\n".join(lines) + "\n")


CONFIGS = {
    "default": StoreConfig(True),
    "no-driver": StoreConfig(True, driver=None),  # podman picks one; the loader finds its one store
    "empty-lists": StoreConfig(
        True, options="[storage.options]\nadditionalimagestores = [\n  # none\n]\nadditionallayerstores=[]"
    ),
    "asked": StoreConfig(False, env=(("CONTAINER_LOADER_READ_STORE", "0"),)),
    "asked-by-recipe": StoreConfig(False, recipe='CONTAINER_LOADER_READ_STORE = "0"'),
    "other-image-store": StoreConfig(
        False, options='[storage.options]\nadditionalimagestores = [\n  "{extra}",\n]'
    ),
    # a graphroot the loader does not parse (an escape, a quoted key), which podman reads: asked
    "escaped-root": StoreConfig(False, graphroot='graphroot = "{workdir}/\\u0072oot"'),
    "quoted-key": StoreConfig(False, graphroot="\"graphroot\" = '{root}'"),
}


def _calling_podman(directory: Path, podman: Podman) -> tuple[Path, Path]:
    """A `podman` that logs each call's subcommand and runs the test store's; (its dir, log)."""
    directory.mkdir(parents=True)
    log = directory / "calls.log"
    shim = directory / "podman"
    shim.write_text(
        "#!/bin/sh\n"
        f'echo "$1 ${{2:-}}" >> {shlex.quote(str(log))}\n'
        f'exec {shlex.quote(str(podman.shims / "podman"))} "$@"\n'
    )
    shim.chmod(0o755)
    return directory, log


def _run(share: Path, env: dict[str, str], log: Path) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    log.unlink(missing_ok=True)
    result = subprocess.run(
        [str(share / "container-loader.sh")], capture_output=True, text=True, env=env, timeout=300
    )
    calls = log.read_text().splitlines() if log.exists() else []
    return result, calls


@pytest.mark.parametrize("config", list(CONFIGS))
def test_podman_is_started_only_to_load_when_its_store_file_can_be_read(
    build, tmp_path, image_factory, podman, config
) -> None:
    store = CONFIGS[config]
    extra = tmp_path / "extra-store"
    extra.mkdir()
    _conf(podman, store, extra)
    images = [image_factory.single_arch(f"store/file-{i}", tag="1.0") for i in range(IMAGES)]
    share = install_deb(
        build.run(
            loader_recipe(build, "sfile", *images, extra=store.recipe),
            *PACKAGE_TASKS,
        ),
        tmp_path / "target",
    )
    bin_dir, log = _calling_podman(tmp_path / "calls", podman)
    env = {**podman.env(), **dict(store.env), "PATH": f"{bin_dir}:{podman.env()['PATH']}"}

    first, calls = _run(share, env, log)
    assert first.returncode == 0, first.stderr
    for image in images:
        want = image.platforms["linux/amd64"].config_digest.split(":")[1]
        assert podman.image_id(image.reference) == want
        assert f"{image.reference}: loaded ({want})" in first.stderr
    loads = ["load -q"] * IMAGES
    if store.reads_file:
        assert calls == loads  # no listing before, no inspection after
    else:
        assert calls == ["image ls", *loads, "image inspect"]

    second, calls = _run(share, env, log)
    assert second.returncode == 0, second.stderr
    assert f"nothing to do: {IMAGES} image(s) already present" in second.stderr
    # Whether a present reference names its image is always asked (podman checks the image is whole).
    assert calls == (["image inspect"] if store.reads_file else ["image ls", "image inspect"])


def test_a_reference_the_store_file_does_not_confirm_is_asked_and_repaired(
    build, tmp_path, image_factory, podman
) -> None:
    """The store file only ever confirms: a reference it shows on another image (here the tag was
    moved by hand after the load) is asked of podman and tagged right."""
    images = [image_factory.single_arch(f"store/moved-{i}", tag="1.0") for i in range(2)]
    share = install_deb(
        build.run(loader_recipe(build, "smoved", *images), *PACKAGE_TASKS), tmp_path / "target"
    )
    bin_dir, log = _calling_podman(tmp_path / "calls", podman)
    # A podman whose loads leave the first reference on the second image.
    moving = tmp_path / "moving"
    moving.mkdir()
    store = shlex.quote(str(podman.shims / "podman"))
    (moving / "podman").write_text(
        "#!/bin/sh\n"
        f'{shlex.quote(str(bin_dir / "podman"))} "$@" || exit\n'
        f'if [ "$1" = load ] && {store} image exists {images[1].reference}; then\n'
        f"  {store} tag {images[1].reference} {images[0].reference}\n"
        "fi\n"
    )
    (moving / "podman").chmod(0o755)
    env = {
        **podman.env(),
        "PATH": f"{moving}:{podman.env()['PATH']}",
        "CONTAINER_LOADER_DELETE_AFTER_LOAD": "0",
    }
    result, calls = _run(share, env, log)
    assert result.returncode == 0, result.stderr
    for image in images:
        assert podman.image_id(image.reference) == image.platforms["linux/amd64"].config_digest.split(":")[1]
    # Both loaded; the file confirmed the second; the first was asked (the batch, then load_one:
    # the reference, the ID), tagged and verified.
    first_id = images[0].platforms["linux/amd64"].config_digest.split(":")[1]
    assert calls == [
        "load -q",
        "load -q",
        "image inspect",
        "image inspect",
        "image inspect",
        f"tag {first_id}",
        "image inspect",
    ], calls


def test_in_a_store_with_layers_already_podman_verifies_the_loads(
    build, tmp_path, image_factory, podman
) -> None:
    """The store file confirms loads only in a store that had no layer before the run: a layer an
    interrupted load left behind can be reused by a load that succeeds and still be unreadable,
    which only podman's inspection finds."""
    earlier = image_factory.single_arch("store/earlier", tag="1.0")
    images = [image_factory.single_arch(f"store/later-{i}", tag="1.0") for i in range(2)]
    share = install_deb(
        build.run(loader_recipe(build, "slater", *images), *PACKAGE_TASKS), tmp_path / "target"
    )
    # Another image in the store (here loaded by hand from the registry): the store has layers.
    podman("pull", "--tls-verify=false", earlier.reference)
    bin_dir, log = _calling_podman(tmp_path / "calls", podman)
    env = {**podman.env(), "PATH": f"{bin_dir}:{podman.env()['PATH']}"}
    result, calls = _run(share, env, log)
    assert result.returncode == 0, result.stderr
    assert calls == ["load -q", "load -q", "image inspect"]  # the listing read, the loads inspected
    for image in images:
        assert podman.image_id(image.reference) == image.platforms["linux/amd64"].config_digest.split(":")[1]


def test_a_layer_a_power_cut_left_unreadable_is_found_and_loaded_again(
    build, tmp_path, image_factory, podman
) -> None:
    """What a power cut during a load left in podman's overlay store in the lifetime tier, made
    here by hand: a layer on record whose `link` file is empty, and no image. The next load reuses the
    layer, exits 0, and the image cannot be read (`readlink …/overlay/l: invalid argument`); the
    store file names the right ID all the same. The loader asks podman, removes the image, loads
    it again, and the reference works."""
    base = {"etc/base": b"the shared base layer\n"}
    first = image_factory.single_arch("store/cut-base", files=base)
    app = image_factory.single_arch("store/cut-app", base=base, files={"etc/app": b"app\n"})
    base_layer = first.platforms["linux/amd64"].layers[0].diff_id.split(":")[1]
    assert app.platforms["linux/amd64"].layers[0].diff_id.split(":")[1] == base_layer
    _conf(podman, StoreConfig(True, driver="overlay"), tmp_path)
    share = install_deb(build.run(loader_recipe(build, "scut", app), *PACKAGE_TASKS), tmp_path / "target")
    podman("pull", "--tls-verify=false", first.reference)
    # The power cut's leftover, by hand: the base layer's link never flushed, the image never recorded.
    (podman.workdir / "root" / "overlay" / base_layer / "link").write_text("")
    images_json = podman.workdir / "root" / "overlay-images" / "images.json"
    kept = [i for i in json.loads(images_json.read_text()) if first.reference not in i.get("names", [])]
    images_json.with_suffix(".new").write_text(json.dumps(kept))
    os.replace(images_json.with_suffix(".new"), images_json)
    assert podman.image_id(first.reference) is None

    result = subprocess.run(
        [str(share / "container-loader.sh")], capture_output=True, text=True, env=podman.env(), timeout=300
    )
    want = app.platforms["linux/amd64"].config_digest.split(":")[1]
    assert result.returncode == 0, result.stderr
    assert f"{app.reference}: removed image {want}, left unusable in the store" in result.stderr
    assert podman.image_id(app.reference) == want
    assert podman("image", "inspect", app.reference, check=False).returncode == 0
