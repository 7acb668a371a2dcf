"""Issue 11: a real Isar image with the layer's loader packages, booted under qemu (TCG).

Upstream Isar (master) builds `isar-image-base` for qemuamd64 (Debian bookworm) with this
project's layer and a test layer of four packages: a `docker-loader` and a `podman-loader`
package of images pushed to the loopback registry (host:port, pinned digests), a third loader
package whose archive is damaged in the build, and `cltest-boot-check`, whose oneshot unit
runs after the loaders, writes what it observes to the second serial port, then reboots (first
boot) or powers off (second boot). The test asserts on those observations:

- boot 1: both good loader units succeeded and logged the load with the expected image IDs;
  `docker run --rm --pull=never --network none` and the same with podman print the test image's
  output and leave no container; the damaged package's unit failed, its journal names the image,
  and `systemctl --failed` lists it (and neither good loader nor engine);
- boot 2: the good loaders load nothing (their journal says "nothing to do"), the images are
  still there with the same IDs and run again; the damaged one fails again.

How the archive is damaged: `cltest-broken-img` has a task after
`do_install_fetched_containers` that overwrites bytes in the middle of the compressed archive in
`${D}`, so the .deb and the image carry it with its unchanged `image.list` line. Each good
package carries its class's default payload: docker the registry's layer blobs as fetched (and
pigz comes with it, for dockerd's unpigz), podman a recompressed zstd archive, as does the broken
one: on the host, `tar -t` reads the first, `zstd -t` accepts the second and rejects the damaged
one.

The guest has a user-mode NIC with `restrict=on` (no route to the host or beyond) and a DHCP
network file from the check package, so `network-online.target` (which docker.service waits
for) is reached at once instead of after systemd-networkd-wait-online's two-minute timeout.
"""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import pytest

from tests.harness.images import ImageFactory, PushedImage
from tests.harness.isar import (
    IsarBuild,
    docker_url,
    give_to_build_user,
    isar_checkout,
    loader_recipe,
    work_dir,
)
from tests.harness.isar_boot import QemuVM, Report, isar_environment, require_tools
from tests.harness.registry import Registry

pytestmark = [pytest.mark.isar, pytest.mark.boot]

HELLO = "hello from the container-lock test image"
IMAGE = "isar-image-base"
BUILD_TIMEOUT = 20 * 60.0  # a cold build took 6 min here
BOOT_TIMEOUT = 15 * 60.0  # both boots, until the guest powers off
GOOD = {"cltest-docker-img": "docker", "cltest-podman-img": "podman"}
# Both payload kinds on a real device, each the default of its class: docker-loader the blobs
# as fetched, podman-loader (and the broken package) a recompressed zstd archive.
RECOMPRESS = 'CONTAINER_PAYLOAD = "recompress"\n'
BROKEN = "cltest-broken-img"

_BROKEN_TASK = """
# The test's damaged package: bytes in the middle of each archive are overwritten
# after packaging, so the loader's decompress/load must fail on the target.
do_damage_archive() {
    for f in ${D}/usr/share/${BPN}/images/*; do
        half=$(expr $(stat -c %s "$f") / 2)  # bitbake's shell parser has no $((...))
        printf 'this is not zstd data' | dd of="$f" bs=1 seek="$half" conv=notrunc status=none
    done
}
addtask damage_archive after do_install_fetched_containers before do_prepare_build
"""

_CHECK_RECIPE = """\
DESCRIPTION = "container-lock boot test: report what the loaders did on ttyS1"
inherit dpkg-raw
SRC_URI = "file://cltest-boot-check file://cltest-boot-check.service file://10-cltest.network"
DEBIAN_DEPENDS = "docker.io, podman"
do_install() {
    install -D -m 755 ${WORKDIR}/cltest-boot-check ${D}/usr/libexec/cltest-boot-check
    install -D -m 644 ${WORKDIR}/10-cltest.network ${D}/etc/systemd/network/10-cltest.network
}
do_prepare_build:append() {
    install -m 644 ${WORKDIR}/cltest-boot-check.service ${S}/debian/${BPN}.service
}
"""

_CHECK_UNIT = f"""\
[Unit]
Description=container-lock boot test report
After={" ".join(f"{pn}.service" for pn in [*GOOD, BROKEN])} docker.service

[Service]
Type=oneshot
ExecStart=/usr/libexec/cltest-boot-check

[Install]
WantedBy=multi-user.target
"""

_NETWORK = "[Match]\nType=ether\n\n[Network]\nDHCP=yes\n"

# Raw observations only; the host asserts. Blocks as tests/harness/isar_boot.py parses them.
_CHECK_SCRIPT = """\
#!/bin/bash
out=/dev/ttyS1
state=/var/lib/cltest-boot-check
mkdir -p "$state"
boot=$(( $(cat "$state/boots" 2>/dev/null || echo 0) + 1 ))
echo "$boot" > "$state/boots"
sync
run() {
    local name=$1; shift
    echo "@@CLTEST section $name"
    "$@" 2>&1
    echo "@@CLTEST exit $?"
}
{
echo "@@CLTEST begin boot=$boot"
for unit in @UNITS@; do
    run "show $unit" systemctl show -p ActiveState -p Result -p ExecMainStatus "$unit.service"
    run "journal $unit" journalctl -b --no-pager -o cat -u "$unit.service"
done
run failed systemctl --failed --no-legend --plain
run unpigz command -v unpigz
run "docker images" docker image ls --no-trunc --format '{{.Repository}}:{{.Tag}} {{.ID}}'
run "podman images" podman image ls --no-trunc --format '{{.Repository}}:{{.Tag}} {{.ID}}'
run "docker run" docker run --rm --pull=never --network none @DOCKER_REF@
run "podman run" podman run --rm --pull=never --network none @PODMAN_REF@
run "docker containers" docker ps --all --quiet
run "podman containers" podman ps --all --quiet
echo "@@CLTEST end boot=$boot"
} > "$out" 2>&1
if [ "$boot" -lt 2 ]; then systemctl reboot; else systemctl poweroff; fi
"""


def _loader_recipe(engine: str, image: PushedImage, extra: str = "") -> str:
    url = docker_url(image.host, image.repository, image.tag, image.digest)
    return f'DESCRIPTION = "container-lock boot test: {engine} loader"\n' + loader_recipe(
        engine, url, extra=extra
    )


def _write_layer(build: IsarBuild, images: dict[str, PushedImage]) -> None:
    """The four test packages in the build's test layer."""
    for pn, engine in GOOD.items():
        build.add_recipe(pn, _loader_recipe(engine, images[pn]))
    build.add_recipe(BROKEN, _loader_recipe("podman", images[BROKEN], RECOMPRESS + _BROKEN_TASK))
    recipe = build.add_recipe("cltest-boot-check", _CHECK_RECIPE)
    files = recipe.parent / "files"
    files.mkdir()
    script = (
        _CHECK_SCRIPT.replace("@UNITS@", " ".join([*GOOD, BROKEN]))
        .replace("@DOCKER_REF@", images["cltest-docker-img"].reference)
        .replace("@PODMAN_REF@", images["cltest-podman-img"].reference)
    )
    (files / "cltest-boot-check").write_text(script)
    (files / "cltest-boot-check.service").write_text(_CHECK_UNIT)
    (files / "10-cltest.network").write_text(_NETWORK)
    give_to_build_user(build.test_layer)


def _config_hex(image: PushedImage) -> str:
    return image.platforms["linux/amd64"].config_digest.removeprefix("sha256:")


def _show(report: Report, pn: str) -> dict[str, str]:
    section = report[f"show {pn}"]
    assert section.status == 0, section.output
    return dict(line.split("=", 1) for line in section.output.splitlines() if "=" in line)


def _image_ids(report: Report, engine: str) -> dict[str, str]:
    section = report[f"{engine} images"]
    assert section.status == 0, section.output
    pairs = (line.split() for line in section.output.splitlines() if line.strip())
    return {p[0]: p[1].removeprefix("sha256:") for p in pairs if len(p) == 2}


def _failed_units(report: Report) -> list[str]:
    section = report["failed"]
    assert section.status == 0, section.output
    return [line.split()[0] for line in section.output.splitlines() if line.strip()]


def _check_boot(report: Report, images: dict[str, PushedImage], first: bool) -> None:
    """What both boots must show; `first` selects loaded vs. nothing to do."""
    for pn, engine in GOOD.items():
        image = images[pn]
        prefix = f"container-loader({pn}): "
        assert _show(report, pn) == {"ActiveState": "active", "Result": "success", "ExecMainStatus": "0"}
        journal = report[f"journal {pn}"].output
        loaded = f"{prefix}{image.reference}: loaded ({_config_hex(image)})"
        if first:
            assert loaded in journal, journal
            assert f"{prefix}1 loaded, 0 already present, 0 with errors" in journal, journal
        else:
            assert ": loaded (" not in journal, journal
            assert f"{prefix}nothing to do: 1 image(s) already present" in journal, journal
        assert _image_ids(report, engine).get(image.reference) == _config_hex(image), report[
            f"{engine} images"
        ].output
        run = report[f"{engine} run"]
        assert run.status == 0 and HELLO in run.output, f"{engine} run: exit {run.status}\n{run.output}"
        containers = report[f"{engine} containers"]
        assert containers.status == 0 and not containers.output.strip(), containers.output  # --rm

    broken = images[BROKEN]
    assert _show(report, BROKEN) == {"ActiveState": "failed", "Result": "exit-code", "ExecMainStatus": "1"}
    journal = report[f"journal {BROKEN}"].output
    assert re.search(
        rf"container-loader\({BROKEN}\): {re.escape(broken.reference)}: loading \S+ failed", journal
    )
    assert f"container-loader({BROKEN}): 0 loaded, 0 already present, 1 with errors" in journal, journal
    assert broken.reference not in _image_ids(report, "podman")

    unpigz = report["unpigz"]  # installed with the docker package: dockerd gunzips layers with it
    assert unpigz.status == 0 and unpigz.output.strip() == "/usr/bin/unpigz", unpigz.output

    failed = _failed_units(report)
    assert f"{BROKEN}.service" in failed, failed
    assert not {f"{pn}.service" for pn in GOOD} & set(failed), failed
    assert not {"docker.service", "podman.service"} & set(failed), failed


def _archive(build: IsarBuild, pn: str) -> Path:
    found = sorted((build.image_dir(pn) / "usr" / "share" / pn / "images").glob("*.tar*"))
    assert len(found) == 1, f"{pn}: expected one archive in ${{D}}, found {found}"
    return found[0]


def test_isar_image_boots_and_loads_the_images(
    registry: Registry, image_factory: ImageFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    require_tools()
    images = {
        pn: image_factory.single_arch(f"cltest/{pn.removesuffix('-img')}", "1.0") for pn in [*GOOD, BROKEN]
    }
    isar = isar_checkout("master")
    build = IsarBuild(isar, work_dir("boot"), machine="qemuamd64")
    build.env.update(isar_environment(isar))
    build.registries(insecure=[registry.host])
    build.set(IMAGE_INSTALL=" ".join([*GOOD, BROKEN, "cltest-boot-check"]))
    build.conf_append = 'ROOTFS_FEATURES:remove = "generate-sbom"\n'
    _write_layer(build, images)

    started = time.monotonic()
    build.bitbake(IMAGE, timeout=BUILD_TIMEOUT).check()
    built = time.monotonic()

    layers = _archive(build, "cltest-docker-img")
    assert layers.name.endswith(".tar")
    subprocess.run(["tar", "-tf", str(layers)], check=True, capture_output=True)
    subprocess.run(["zstd", "-tq", str(_archive(build, "cltest-podman-img"))], check=True)
    damaged = subprocess.run(["zstd", "-tq", str(_archive(build, BROKEN))], capture_output=True, check=False)
    assert damaged.returncode != 0, "the broken package's archive is expected to be damaged"

    disk = build.deploy_dir / "images" / build.machine / f"{IMAGE}-{build.distro}-{build.machine}.wic"
    assert disk.is_file(), f"no image at {disk}"
    with QemuVM(disk, build.topdir / "qemu") as vm:
        deadline = time.monotonic() + BOOT_TIMEOUT
        first = vm.wait_for_report(1, deadline)
        _check_boot(first, images, first=True)
        second = vm.wait_for_report(2, deadline)
        _check_boot(second, images, first=False)
        assert vm.wait_exit(deadline) == 0
    booted = time.monotonic()
    with capsys.disabled():
        print(f"\nisar boot test: build {built - started:.0f} s, two boots {booted - built:.0f} s")
