"""Ready at first boot, measured on the booted device (issue 30 item 3): preloaded vs loader mode.

One Isar build tree (upstream Isar master, qemuamd64, bookworm) with shared packages:

- `cltest-fb-docker` (docker-loader) and `cltest-fb-podman` (podman-loader), each carrying the same
  N images of M MiB of incompressible data (default 5 x 8 MiB), one image of B MiB (default 100)
  and a web image: Debian's static busybox as `busybox httpd -f -p <port> -h /srv` serving a file
  the script knows, run by the package's service `web-<engine>` (CONTAINER_SERVICES,
  `--network host`); each package with its class's default payload and
  CONTAINER_DELETE_AFTER_LOAD = "0";
- `cltest-fb-check`: a unit that starts early in every boot (not ordered after the loaders) and
  asks both services over HTTP from inside the guest every 0.2 s until each answers; it notes the
  guest's /proc/uptime (seconds since the kernel started) when each first answers, then (boot
  finished) systemd-analyze, the loaders' journals and `du -sxB1` of each engine's store, the
  packages' archive directories and the loaders' record, `df` of /, and reboots (boot 1) or
  powers off (boot 2);
- three image recipes that `require` isar-image-base with the packages above and a wks whose
  root partition has 1.5 GiB of extra space (no expand-on-first-boot, which would cost the first
  boot alone): `cltest-fb-loader` (CONTAINER_PRELOAD = "0"; built first: it pays for everything
  the images share), `cltest-fb-preload` ("1") and `cltest-fb-loader2` ("0", as loader) — the
  last two are the image-only build times compared.

Each of the two booted images (preload, loader) boots twice in one qemu run on a sparse copy of its
`.wic` (TCG, 2 vCPUs, 2 GiB): the first boot, then a reboot (the images are there). Both engines'
loaders run in the same boot (as on a device with both), so in loader mode they share the two CPUs.

Printed: every figure, and the ratios against the goals: preloaded first boot to both services
answering <= 1.1x its second boot; bytes of preloaded (store + archives + record) <= 1.05x the
store alone (the loader-mode store after its first boot); loader mode with and without
delete-after-load (without: store + archives + record as measured; with: the archives are deleted
after the load, so store + record); image build time with preload vs without.

Run: `.venv/bin/python -m benchmarks.first_boot [--images 5 --mib 8 --big-mib 100] [--topdir DIR]`
(--topdir keeps the build tree there and reuses it on the next run: the images are deterministic,
so a rerun after a failed boot rebuilds nothing; its build times are then not comparable).
`--report-dir DIR` re-reads the report.log files of an earlier run instead.
"""

from __future__ import annotations

import argparse
import random
import struct
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.common import machine, registry_with_factory
from tests.harness.images import ImageFactory, PushedImage, base_files
from tests.harness.isar import (
    IsarBuild,
    docker_url,
    give_to_build_user,
    isar_checkout,
    loader_recipe,
    work_dir,
)
from tests.harness.isar_boot import QemuVM, Report, disk_copy, isar_environment, parse_reports, require_tools

ENGINES = ("docker", "podman")
PORTS = {"docker": 8081, "podman": 8082}
STORES = {"docker": "/var/lib/docker", "podman": "/var/lib/containers/storage"}
BUSYBOX = Path("/bin/busybox")  # Debian's busybox-static (.ci/setup installs it)
MODES = ("preload", "loader")
IMAGES = {"preload": "cltest-fb-preload", "loader": "cltest-fb-loader", "loader2": "cltest-fb-loader2"}
BUILD_TIMEOUT = 60 * 60.0
BOOT_TIMEOUT = 40 * 60.0  # one qemu run: two boots, the first loading ~2 x 140 MiB under TCG
EXTRA_SPACE_MIB = 1536


def package(engine: str) -> str:
    return f"cltest-fb-{engine}"


def content(engine: str) -> str:
    return f"cltest firstboot {engine}"


# -- the images ----------------------------------------------------------------------------------


@dataclass
class FbImages:
    data: list[PushedImage]  # the N small ones and the big one, shared by both packages
    web: dict[str, PushedImage]  # engine -> its service's image

    def urls(self, engine: str) -> list[str]:
        return [docker_url(i.host, i.repository, i.tag, i.digest) for i in (*self.data, self.web[engine])]


def push_images(factory: ImageFactory, count: int, mib: int, big_mib: int) -> FbImages:
    """Deterministic images (seeded data): a rerun pushes the same digests."""
    if not BUSYBOX.is_file():
        raise SystemExit(f"{BUSYBOX} is missing: apt-get install busybox-static (as .ci/setup does)")
    rng = random.Random(30)
    sizes = [(f"cltest/fb-{n}", mib) for n in range(1, count + 1)]
    if big_mib:
        sizes.append(("cltest/fb-big", big_mib))
    data = []
    for repository, size in sizes:
        files = {**base_files(repository), "data/blob": rng.randbytes(size << 20)}
        data.append(factory.layered(repository, [files], tag="1.0"))
    web = {}
    for engine in ENGINES:
        repository = f"cltest/fb-web-{engine}"
        files = {**base_files(repository), "srv/index.html": f"{content(engine)}\n".encode()}
        cmd = ("/bin/busybox", "httpd", "-f", "-p", str(PORTS[engine]), "-h", "/srv")
        web[engine] = factory.layered(repository, [{"bin/busybox": BUSYBOX.read_bytes()}, files], cmd=cmd)
    return FbImages(data, web)


# -- the build -----------------------------------------------------------------------------------

_CHECK_RECIPE = """\
DESCRIPTION = "container-lock first-boot benchmark: time to the services answering, bytes used"
inherit dpkg-raw
SRC_URI = "file://cltest-fb file://cltest-fb.service"
do_install() {
    install -D -m 755 ${WORKDIR}/cltest-fb ${D}/usr/libexec/cltest-fb
}
do_prepare_build:append() {
    install -m 644 ${WORKDIR}/cltest-fb.service ${S}/debian/${BPN}.service
}
"""

# Type=simple: started at once, so the boot can finish (systemd-analyze) while it polls.
_CHECK_UNIT = """\
[Unit]
Description=container-lock first-boot benchmark

[Service]
Type=simple
ExecStart=/usr/libexec/cltest-fb

[Install]
WantedBy=multi-user.target
"""

_GUEST = r"""#!/bin/bash
# container-lock first-boot benchmark (benchmarks/first_boot.py): the guest's clock when each
# service first answers, then what the host prints; boot 1 reboots, boot 2 powers off.
set -u
out=/dev/ttyS1
declare -A PORT=([docker]=@PORT_DOCKER@ [podman]=@PORT_PODMAN@)
state=/var/lib/cltest-fb
mkdir -p "$state"
boot=$(( $(cat "$state/boots" 2>/dev/null || echo 0) + 1 ))
echo "$boot" > "$state/boots"
sync

answers() {
    exec 3<>"/dev/tcp/127.0.0.1/$1" || return 1
    printf 'GET / HTTP/1.0\r\nHost: localhost\r\n\r\n' >&3
    timeout 5 cat <&3 | grep -q '^cltest firstboot'
    local rc=$?
    exec 3<&-
    return $rc
}
declare -A AT=()
limit=$(( $(cut -d. -f1 /proc/uptime) + 2400 ))
while [ "${#AT[@]}" -lt 2 ] && [ "$(cut -d. -f1 /proc/uptime)" -lt "$limit" ]; do
    for e in docker podman; do
        [ -n "${AT[$e]:-}" ] && continue
        if answers "${PORT[$e]}" 2>/dev/null; then AT[$e]=$(cut -d' ' -f1 /proc/uptime); fi
    done
    sleep 0.2
done
systemctl is-system-running --wait >/dev/null 2>&1

run() { local n=$1; shift; echo "@@CLTEST section $n"; "$@" 2>&1; echo "@@CLTEST exit $?"; }
bytes() { local p; for p in "$@"; do if [ -e "$p" ]; then du -sxB1 "$p"; else echo "0 $p"; fi; done; }
{
echo "@@CLTEST begin boot=$boot"
run answered echo "docker=${AT[docker]:-none} podman=${AT[podman]:-none}"
run analyze systemd-analyze
for e in docker podman; do
    run "journal $e" journalctl -b --no-pager -o cat -u "cltest-fb-$e.service"
    run "show $e" systemctl show -p ActiveState -p Result \
        -p InactiveExitTimestampMonotonic -p ExecMainExitTimestampMonotonic "cltest-fb-$e.service"
    run "service $e" systemctl show -p ActiveState -p SubState \
        -p ActiveEnterTimestampMonotonic "web-$e.service"
done
run bytes bytes @STORES@ /usr/share/cltest-fb-docker/images /usr/share/cltest-fb-podman/images \
    /var/lib/container-loader
run df df -B1 --output=used /
run failed systemctl --failed --no-legend --plain
echo "@@CLTEST end boot=$boot"
} > "$out" 2>&1
sync
if [ "$boot" -lt 2 ]; then systemctl reboot; else systemctl poweroff; fi
"""

_IMAGE_RECIPE = """\
require recipes-core/images/isar-image-base.bb
DESCRIPTION = "container-lock first-boot benchmark image ({mode})"
CONTAINER_PRELOAD = "{preload}"
WKS_FILE = "{wks}"
"""

# meta-isar's sdimage-efi.wks (qemuamd64's) with extra space in the root partition.
_WKS = (
    'part /boot --source bootimg-efi-isar --sourceparams "loader=grub-efi" --ondisk sda --label efi '
    "--part-type EF00 --align 1024\n"
    'part / --source rootfs --ondisk sda --fstype ext4 --mkfs-extraopts "-T default" --label platform '
    f"--align 1024 --use-uuid --exclude-path boot/ --extra-space {EXTRA_SPACE_MIB}M\n"
    'bootloader --ptable gpt --timeout 3 --append "rootwait console=ttyS0,115200 console=tty0"\n'
)


def write_layer(build: IsarBuild, images: FbImages) -> None:
    for engine in ENGINES:
        web = images.web[engine]
        extra = (
            f'CONTAINER_SERVICES = "web-{engine}"\n'
            f'CONTAINER_SERVICE_IMAGE[web-{engine}] = "{web.reference}"\n'
            f'CONTAINER_SERVICE_ARGS[web-{engine}] = "--network host"\n'
        )
        about = f'DESCRIPTION = "container-lock first-boot benchmark: {engine} loader"\n'
        build.add_recipe(package(engine), about + loader_recipe(engine, *images.urls(engine), extra=extra))
    recipe = build.add_recipe("cltest-fb-check", _CHECK_RECIPE)
    files = recipe.parent / "files"
    files.mkdir(exist_ok=True)
    guest = (
        _GUEST.replace("@PORT_DOCKER@", str(PORTS["docker"]))
        .replace("@PORT_PODMAN@", str(PORTS["podman"]))
        .replace("@STORES@", " ".join(STORES[e] for e in ENGINES))
    )
    (files / "cltest-fb").write_text(guest)
    (files / "cltest-fb.service").write_text(_CHECK_UNIT)
    wks = build.test_layer / "cltest-fb.wks"
    wks.write_text(_WKS)
    for name, preload in (("loader", "0"), ("preload", "1"), ("loader2", "0")):
        build.add_recipe(IMAGES[name], _IMAGE_RECIPE.format(mode=name, preload=preload, wks=wks))
    give_to_build_user(build.test_layer)


@dataclass
class Built:
    disks: dict[str, Path]  # mode -> .wic
    seconds: dict[str, float] = field(default_factory=dict)  # image -> build time
    tasks: dict[str, int] = field(default_factory=dict)  # image -> tasks executed


def build_images(build: IsarBuild) -> Built:
    built = Built({})
    for name in ("loader", "preload", "loader2"):
        image = IMAGES[name]
        started = time.monotonic()
        result = build.bitbake(image, timeout=BUILD_TIMEOUT).check()
        built.seconds[name] = time.monotonic() - started
        built.tasks[name] = len(result.tasks)
        print(f"built {image}: {built.seconds[name]:.0f} s, {len(result.tasks)} tasks executed", flush=True)
        if name in MODES:
            wic = build.deploy_dir / "images" / build.machine / f"{image}-{build.distro}-{build.machine}.wic"
            if not wic.is_file():
                raise SystemExit(f"no image at {wic}")
            built.disks[name] = wic
    return built


# -- the boots -----------------------------------------------------------------------------------


# The image's systemd-networkd manages no link without it: systemd-networkd-wait-online fails after
# its 2 min timeout and holds network-online.target (which the services are ordered after) that long.
_NETWORK = "[Match]\nType=ether\n\n[Network]\nDHCP=yes\n"


def root_partition(disk: Path) -> tuple[int, int]:
    """(offset, size) in bytes of the GPT partition labelled `platform` (wic's root)."""
    with disk.open("rb") as f:
        f.seek(512)
        header = f.read(92)
        if header[:8] != b"EFI PART":
            raise SystemExit(f"{disk}: no GPT")
        entries, count, size = struct.unpack("<QII", header[72:88])
        f.seek(entries * 512)
        for _ in range(count):
            entry = f.read(size)
            first, last = struct.unpack("<QQ", entry[32:48])
            if entry[56:128].decode("utf-16-le").rstrip("\0") == "platform":
                return first * 512, (last - first + 1) * 512
    raise SystemExit(f"{disk}: no partition 'platform'")


def add_network_config(disk: Path) -> None:
    """Give the guest's networkd the qemu NIC (DHCP), as tests/test_isar_ready.py's check package
    does; written into the disk copy (the same for both modes)."""
    offset, size = root_partition(disk)
    with tempfile.TemporaryDirectory(prefix="cl-fb-mnt.") as mnt:
        subprocess.run(["mount", "-o", f"loop,offset={offset},sizelimit={size}", str(disk), mnt], check=True)
        try:
            path = Path(mnt) / "etc/systemd/network/10-cltest.network"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(_NETWORK)
        finally:
            subprocess.run(["umount", mnt], check=True)


def boot_twice(wic: Path, logs: Path, mode: str) -> tuple[list[Report], float]:
    """Boot a copy of `wic` until the guest reported both boots and powered off."""
    logs.mkdir(parents=True, exist_ok=True)
    disk = disk_copy(wic, logs / f"{mode}.img")
    add_network_config(disk)
    vm = QemuVM(disk, logs / mode, snapshot=False)
    started = time.monotonic()
    deadline = started + BOOT_TIMEOUT
    with vm:
        reports = [vm.wait_for_report(n, deadline) for n in (1, 2)]
        vm.wait_exit(deadline)
    disk.unlink()
    return reports, time.monotonic() - started


@dataclass
class Boot:
    answered: dict[str, float]  # engine -> guest seconds since kernel start
    loaded: dict[str, int]  # engine -> images the loader loaded
    bytes: dict[str, int]  # path -> du bytes
    used: int  # df used bytes of /
    analyze: str
    spans: dict[str, tuple[float, float, float]]  # engine -> loader start, loader end, service active

    @property
    def ready(self) -> float:
        return max(self.answered.values())


def read_boot(report: Report, mode: str) -> Boot:
    words = dict(w.split("=", 1) for w in report["answered"].output.split())
    if "none" in words.values():
        raise SystemExit(f"{mode} boot {report.boot}: a service never answered ({words})\n{_context(report)}")
    failed = report["failed"].output.strip()
    if failed:  # printed with the figures: a failed unit may have cost the boot time
        print(f"WARNING: {mode} boot {report.boot}: failed units: {failed}", flush=True)
    loaded = {e: report[f"journal {e}"].output.count(": loaded (") for e in ENGINES}
    sizes = {}
    for line in report["bytes"].output.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0].isdigit():
            sizes[parts[1]] = int(parts[0])
    used = int(report["df"].output.split()[-1])
    analyze = report["analyze"].output.strip().splitlines()
    spans = {}
    for e in ENGINES:
        show = _props(report[f"show {e}"].output) | _props(report[f"service {e}"].output)
        spans[e] = tuple(
            int(show.get(k, "0")) / 1e6
            for k in (
                "InactiveExitTimestampMonotonic",
                "ExecMainExitTimestampMonotonic",
                "ActiveEnterTimestampMonotonic",
            )
        )
    answered = {e: float(v) for e, v in words.items()}
    return Boot(answered, loaded, sizes, used, analyze[0] if analyze else "", spans)  # type: ignore[arg-type]


def _props(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def _context(report: Report) -> str:
    return "\n".join(f"--- {n} (exit {s.status})\n{s.output[-1500:]}" for n, s in report.sections.items())


# -- summary -------------------------------------------------------------------------------------


def mib(n: int) -> str:
    return f"{n / (1 << 20):.1f} MiB"


def summarize(boots: dict[str, list[Boot]], built: Built | None) -> None:
    for mode in MODES:
        for n, boot in enumerate(boots[mode], 1):
            answers = ", ".join(f"{e} {boot.answered[e]:.1f} s" for e in ENGINES)
            loads = ", ".join(f"{e} {boot.loaded[e]}" for e in ENGINES)
            print(
                f"{mode} boot {n}: services answered (guest clock since kernel start): {answers}; "
                f"images loaded: {loads}\n    {boot.analyze}"
            )
            for e in ENGINES:
                start, end, active = boot.spans[e]
                print(
                    f"    {e}: loader unit {start:.1f} -> {end:.1f} s ({end - start:.1f} s), "
                    f"web-{e} active {active:.1f} s, answered {boot.answered[e]:.1f} s"
                )
    pre, load = boots["preload"], boots["loader"]
    print("time to both services answering, from kernel start (guest clock):")
    print(
        f"  preloaded: first boot {pre[0].ready:.1f} s, second boot {pre[1].ready:.1f} s: "
        f"first / second {pre[0].ready / pre[1].ready:.2f}x (goal <= 1.1x)"
    )
    print(
        f"  loader mode: first boot {load[0].ready:.1f} s, second boot {load[1].ready:.1f} s: "
        f"first / second {load[0].ready / load[1].ready:.2f}x; loader first / preloaded first "
        f"{load[0].ready / pre[0].ready:.2f}x"
    )
    for e in ENGINES:
        print(
            f"  {e} alone: preloaded first {pre[0].answered[e]:.1f} s / second {pre[1].answered[e]:.1f} s "
            f"= {pre[0].answered[e] / pre[1].answered[e]:.2f}x; loader first {load[0].answered[e]:.1f} s"
        )
    print("bytes on the device after the first boot (du -sxB1 in the guest):")
    record = "/var/lib/container-loader"
    for e in ENGINES:
        archives = f"/usr/share/{package(e)}/images"
        store = load[0].bytes[STORES[e]]
        p = pre[0].bytes
        preloaded = p[STORES[e]] + p[archives] + p[record]
        without = store + load[0].bytes[archives] + load[0].bytes[record]
        with_delete = store + load[0].bytes[record]
        print(
            f"  {e}: store alone (loader mode) {mib(store)}; preloaded: store {mib(p[STORES[e]])} + "
            f"archives {mib(p[archives])} = {mib(preloaded)} ({preloaded / store:.3f}x the store alone, "
            f"goal <= 1.05x); loader mode without delete-after-load: store + archives "
            f"{mib(load[0].bytes[archives])} = {mib(without)} ({without / store:.2f}x); with "
            f"delete-after-load (archives removed after the load): {mib(with_delete)} "
            f"({with_delete / store:.3f}x)"
        )
    print(
        f"  the loaders' records: preloaded {pre[0].bytes[record]} B, loader mode {load[0].bytes[record]} B "
        "(both engines; counted in each engine's total above)"
    )
    print(
        f"  df used on /: preloaded {mib(pre[0].used)}, loader mode {mib(load[0].used)} "
        f"(loader - preloaded = {mib(load[0].used - pre[0].used)})"
    )
    if built is not None:
        s = built.seconds
        print(
            f"image build time: {IMAGES['loader']} (first: all it shares) {s['loader']:.0f} s; "
            f"image only: preload {s['preload']:.0f} s ({built.tasks['preload']} tasks) vs without "
            f"{s['loader2']:.0f} s ({built.tasks['loader2']} tasks): {s['preload'] / s['loader2']:.2f}x, "
            f"+{s['preload'] - s['loader2']:.0f} s on the build host"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=5, help="small images per package (5)")
    parser.add_argument("--mib", type=int, default=8, help="MiB of data in each small image (8)")
    parser.add_argument("--big-mib", type=int, default=100, help="MiB of the big image (100; 0: none)")
    parser.add_argument("--topdir", type=Path, help="build tree to use and keep (reused when it exists)")
    parser.add_argument("--report-dir", type=Path, help="summarize the boots of an earlier run's logs")
    parser.add_argument(
        "--boot-only", action="store_true", help="boot the images an earlier run built in --topdir (no build)"
    )
    args = parser.parse_args()
    print(machine(), flush=True)
    if args.report_dir:
        boots = {
            m: [
                read_boot(r, m)
                for r in parse_reports((args.report_dir / m / "report.log").read_text(errors="replace"))
            ]
            for m in MODES
        }
        summarize(boots, None)
        return
    require_tools()
    if args.topdir:
        args.topdir.mkdir(parents=True, exist_ok=True)
        give_to_build_user(args.topdir)
    topdir = args.topdir or work_dir("firstboot")
    print(
        f"{args.images} images x {args.mib} MiB + {args.big_mib} MiB + a web image per engine; {topdir}",
        flush=True,
    )
    built: Built | None = None
    if args.boot_only:
        deploy = topdir / "tmp" / "deploy" / "images" / "qemuamd64"
        disks = {m: deploy / f"{IMAGES[m]}-debian-bookworm-qemuamd64.wic" for m in MODES}
    else:
        built = build(isar_checkout("master"), topdir, args.images, args.mib, args.big_mib)
        disks = built.disks
    logs = topdir / "boots"
    boots: dict[str, list[Boot]] = {}
    for mode in MODES:
        reports, seconds = boot_twice(disks[mode], logs, mode)
        boots[mode] = [read_boot(r, mode) for r in reports]
        print(f"{mode}: two boots in {seconds:.0f} s (host clock); logs {logs / mode}", flush=True)
    summarize(boots, built)


def build(isar: Path, topdir: Path, count: int, mib: int, big_mib: int) -> Built:
    """Push the images, write the layer and build the three images."""
    with registry_with_factory(topdir / "bench") as (registry, factory):
        images = push_images(factory, count, mib, big_mib)
        build = IsarBuild(isar, topdir, machine="qemuamd64")
        build.env.update(isar_environment(isar))
        build.registries(insecure=[registry.host])
        build.set(IMAGE_INSTALL=" ".join([*(package(e) for e in ENGINES), "cltest-fb-check"]))
        build.conf_append = 'ROOTFS_FEATURES:remove = "generate-sbom"\n'
        write_layer(build, images)
        return build_images(build)


if __name__ == "__main__":
    main()
