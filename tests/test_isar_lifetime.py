"""Issue 24: loader packages over a device's lifetime, on the real booted Isar image, both engines.

One `isar-image-base` (qemuamd64, bookworm) holds:

- `cltest-life-docker` and `cltest-life-podman` 1.0: image A under `<registry>/cltest/life:stable`;
- their 2.0 `.deb`s (image B under the same reference, plus a new image C), built by the same
  build from the recipes `cltest-life-{docker,podman}-v2` (PN differs, `BPN` and so the Debian
  package name is the same) and carried as files in `/usr/share/cltest-life-check/debs`, to be
  installed with `dpkg -i` as a device would get an update;
- `cltest-bench-docker` and `cltest-bench-podman` (five images each) for benchmarks/boot_load.py,
  held back at boot by a `ConditionPathExists=` drop-in;
- `cltest-life-check`: a oneshot unit after the loaders that runs the phases the host names for
  each boot (qemu `-fw_cfg opt/cltest/scenario`), writes raw observations to ttyS1 and powers off.
  It also installs a drop-in for the test's loader units whose PATH puts a wrapper before the
  engines: `<engine> load` is marked on ttyS2 (start, end, exit status) and its PID kept in
  /run/cltest, so the host can cut the power, and the guest kill the engine, in the middle of a
  load. The journal is volatile (a full disk does not silence it).

Every start of qemu boots a sparse copy of the disk without -snapshot, so state survives qemu
processes: the first boot (on a copy of the `.wic` grown to 6 GiB: expand-on-first-boot grows
the root file system) loads v1; the update, the engine kills, the full disk and the power cuts
each start from their own copy of that disk (no test depends on another one's boots: `-k
full_disk` runs the first boot and the full-disk boots only).

The moments of the engine kills and of the power cuts are drawn from one seed, printed at the
start of the module and in every failure report (`lifetime seed: CONTAINER_LOCK_LIFETIME_SEED=…`);
set CONTAINER_LOCK_LIFETIME_SEED to that number to draw the same moments again. Each draw is a
fraction of a window derived from the first boot's load times, so a replay on a slower or faster
machine hits the same point of the load, not the same second.

- update: a podman container is created from A, podman's pruning is turned off (a unit drop-in
  sets CONTAINER_LOADER_PRUNE=0), both 2.0 packages are installed with `dpkg -i`; after a reboot
  both references name B, C is there, docker's A is gone, podman's A is kept; with pruning on
  again, A is kept because the container uses it (and the journal says so); the container
  removed, the next run prunes A.
- engine SIGKILL mid-load (dockerd; the `podman load` process), several trials per engine: the
  unit's state tells the truth (success only with the right image under the reference), no
  half-loaded image is tagged, a rerun converges, and after the last kill the next boot does.
- full data partition: the loaders fail with "no space left on device" in their journal, nothing
  is tagged; with the space freed, the next boot converges.
- power cuts: qemu killed with SIGKILL at a random moment while the loaders load; every next boot
  converges (right IDs, units active/success, nothing half-loaded tagged).
"""

from __future__ import annotations

import os
import random
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.harness.images import ImageFactory, PushedImage, base_files
from tests.harness.isar import (
    IsarBuild,
    docker_url,
    give_to_build_user,
    isar_checkout,
    loader_recipe,
    same_package_recipe_extra,
    work_dir,
)
from tests.harness.isar_boot import (
    QemuVM,
    Report,
    disk_copy,
    isar_environment,
    print_uncaptured,
    require_tools,
)
from tests.harness.registry import Registry

pytestmark = [pytest.mark.isar, pytest.mark.boot]

IMAGE = "isar-image-base"
BUILD_TIMEOUT = 30 * 60.0
BOOT_TIMEOUT = 20 * 60.0  # one boot, until the guest reports and powers off (a slow, shared CPU too)
ENGINES = ("docker", "podman")
REPOSITORY = "cltest/life"
LIFE_MIB = 24  # incompressible: a load takes seconds under TCG
BENCH_MIB = 8
BENCH_IMAGES = 5
KILL_TRIALS = 2  # per engine, each followed by a rerun in the same boot; then one more, then a boot
POWER_CUTS = 4
# The moments, as fractions of a load timed in the same boot (an engine's own load for a kill;
# from the first start to the last end of both engines' loads for a cut): a few cuts land just
# after the loads (a cut 2-3 s after dockerd's load returned once lost its image).
KILL_REACH = 0.9
CUT_REACH = 1.15
DISK_SIZE = 6 << 30
SEED_ENV = "CONTAINER_LOCK_LIFETIME_SEED"


# -- the image -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class LifeImages:
    a: PushedImage  # v1: REPOSITORY:stable
    b: PushedImage  # v2: the same reference
    c: PushedImage  # new in v2
    bench: tuple[PushedImage, ...]

    @property
    def ref(self) -> str:
        return self.a.reference


def config_hex(image: PushedImage) -> str:
    return image.platforms["linux/amd64"].config_digest.removeprefix("sha256:")


def _noise(seed: int, mib: int) -> bytes:
    return random.Random(seed).randbytes(mib << 20)


def push_images(factory: ImageFactory, bench: bool = True) -> LifeImages:
    """A and B under the same tag (pushed in that order: the recipes pin digests), C, the bench set."""

    def layered(repository: str, tag: str, seed: int, mib: int) -> PushedImage:
        files = {**base_files(repository), "etc/cltest-seed": f"{seed}\n".encode()}
        return factory.layered(repository, [files, {"data/noise": _noise(seed, mib)}], tag=tag)

    a = layered(REPOSITORY, "stable", 1, LIFE_MIB)
    b = layered(REPOSITORY, "stable", 2, LIFE_MIB)
    c = factory.single_arch(f"{REPOSITORY}-extra", "1.0")
    marks = (
        tuple(layered(f"cltest/bench-{i}", "1.0", 10 + i, BENCH_MIB) for i in range(BENCH_IMAGES))
        if bench
        else ()
    )
    return LifeImages(a, b, c, marks)


def _url(image: PushedImage) -> str:
    return docker_url(image.host, image.repository, image.tag, image.digest)


_CHECK_RECIPE = """\
DESCRIPTION = "container-lock lifetime test: run the host's phases, report on ttyS1"
inherit dpkg-raw
SRC_URI = "file://cltest-life file://cltest-life.service file://cltest-mark file://10-cltest.network \\
           file://journald.conf file://life.conf file://bench.conf"
DEBIAN_DEPENDS = "docker.io, podman"
V2 = "${TMPDIR}/work/${DISTRO}-${DISTRO_ARCH}"
UNITS = "${D}/usr/lib/systemd/system"
do_install[depends] += "cltest-life-docker-v2:do_dpkg_build cltest-life-podman-v2:do_dpkg_build"
do_install() {
    install -D -m 755 ${WORKDIR}/cltest-life ${D}/usr/libexec/cltest-life
    install -D -m 644 ${WORKDIR}/10-cltest.network ${D}/etc/systemd/network/10-cltest.network
    install -D -m 644 ${WORKDIR}/journald.conf ${D}/usr/lib/systemd/journald.conf.d/cltest.conf
    install -d ${D}/usr/share/cltest-life-check/debs
    for e in docker podman; do
        install -D -m 755 ${WORKDIR}/cltest-mark ${D}/usr/libexec/cltest/$e
        install -D -m 644 ${WORKDIR}/life.conf ${UNITS}/cltest-life-$e.service.d/cltest.conf
        install -D -m 644 ${WORKDIR}/bench.conf ${UNITS}/cltest-bench-$e.service.d/cltest.conf
        cp ${V2}/cltest-life-$e-v2/2.0-r0/cltest-life-$e"_2.0_"*.deb ${D}/usr/share/cltest-life-check/debs/
    done
}
do_prepare_build:append() {
    install -m 644 ${WORKDIR}/cltest-life.service ${S}/debian/${BPN}.service
    # the carried .debs hold incompressible images: no second compression
    cat <<EOF >> ${S}/debian/rules

override_dh_builddeb:
	dh_builddeb -- -Znone
EOF
}
"""

_CHECK_UNIT = """\
[Unit]
Description=container-lock lifetime test
After=cltest-life-docker.service cltest-life-podman.service docker.service

[Service]
Type=oneshot
TimeoutStartSec=infinity
ExecStart=/usr/libexec/cltest-life

[Install]
WantedBy=multi-user.target
"""

_NETWORK = "[Match]\nType=ether\n\n[Network]\nDHCP=yes\n"
_JOURNALD = "[Journal]\nStorage=volatile\n"
_PATH = "/usr/libexec/cltest:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_LIFE_DROPIN = f"[Service]\nEnvironment=PATH={_PATH}\n"
_BENCH_DROPIN = "[Unit]\nConditionPathExists=/run/cltest/bench\n"

# The engine for the test's loader units (their PATH starts with /usr/libexec/cltest).
_MARK = r"""#!/bin/bash
# container-lock lifetime test: `<engine> load` is marked on ttyS2 (start, end, exit status); its
# PID, start and end time are kept in /run/cltest/load-<engine>.{pid,started,end}; every other
# command goes to the engine as it is.
engine=${0##*/}
[ "${1:-}" = load ] || exec "/usr/bin/$engine" "$@"
mkdir -p /run/cltest
started=$(date +%s.%N)
echo "$started" > "/run/cltest/load-$engine.started"
echo "@@MARK load-start $engine $started" > /dev/ttyS2
exec 3<&0
"/usr/bin/$engine" "$@" <&3 3<&- &
pid=$!
exec 3<&- 0</dev/null
echo "$pid" > "/run/cltest/load-$engine.pid"
wait "$pid"
rc=$?
ended=$(date +%s.%N)
echo "$ended" > "/run/cltest/load-$engine.end"
echo "@@MARK load-end $engine $rc $ended" > /dev/ttyS2
exit "$rc"
"""

# Raw observations only; the host asserts.
_GUEST = r"""#!/bin/bash
# container-lock lifetime test (tests/test_isar_lifetime.py, benchmarks/boot_load.py): runs the
# phases the host names for this boot (qemu fw_cfg opt/cltest/scenario, else the SMBIOS OEM string
# "cltest-scenario=<words>") and writes raw observations to ttyS1, in the blocks
# tests/harness/isar_boot.py parses. The host asserts; this script only acts and observes.
set -u
out=/dev/ttyS1
marks=/dev/ttyS2
REF=@REF@
ENGINES="docker podman"
DEBS=/usr/share/cltest-life-check/debs
state=/var/lib/cltest-life
mkdir -p "$state" /run/cltest

scenario() {
    local f=/sys/firmware/qemu_fw_cfg/by_name/opt/cltest/scenario/raw i
    modprobe qemu_fw_cfg 2>/dev/null
    for i in $(seq 25); do
        if [ -r "$f" ]; then cat "$f"; return; fi
        sleep 0.2
    done
    modprobe dmi_sysfs 2>/dev/null
    tr '\0' '\n' < /sys/firmware/dmi/entries/11-0/raw 2>/dev/null |
        sed -n 's/^.*cltest-scenario=//p' | head -n1
}
SCENARIO=$(scenario)
[ -n "$SCENARIO" ] || exit 0
boot=$(( $(cat "$state/boots" 2>/dev/null || echo 0) + 1 ))
echo "$boot" > "$state/boots"
sync

has() { local w; for w in $SCENARIO; do [ "$w" = "$1" ] && return 0; done; return 1; }
setting() {
    local w
    for w in $SCENARIO; do case $w in "$1"=*) echo "${w#*=}"; return ;; esac; done
    echo "$2"
}
run() { local name=$1; shift; echo "@@CLTEST section $name"; "$@" 2>&1; echo "@@CLTEST exit $?"; }
say() { echo "@@CLTEST section $1"; shift; printf '%s\n' "$@"; echo "@@CLTEST exit 0"; }
now() { date +%s.%N; }
mark() { echo "@@MARK $* $(now)" > "$marks"; }
unit() { echo "cltest-life-$1.service"; }

# The loader's own lines of a unit's latest run.
journal_last() {
    local id
    id=$(systemctl show -p InvocationID --value "$1")
    [ -n "$id" ] && journalctl --no-pager -o cat "_SYSTEMD_INVOCATION_ID=$id"
}

# Wait until a unit has no job and is not (de)activating: at most $2 seconds.
settle() {
    local u=$1 limit=${2:-300} i s
    for i in $(seq "$limit"); do
        s=$(systemctl show -p ActiveState --value "$u")
        case $s in
            activating|deactivating|reloading) ;;
            *) systemctl list-jobs --no-legend 2>/dev/null | grep -q " $u " || return 0 ;;
        esac
        sleep 1
    done
    return 1
}

engine_up() {
    local e=$1 i
    if [ "$e" = docker ]; then
        systemctl reset-failed docker.service docker.socket 2>/dev/null
        systemctl start docker.service 2>/dev/null
    fi
    for i in $(seq 180); do
        "$e" info >/dev/null 2>&1 && return 0
        sleep 1
    done
    return 1
}

show_units() {  # tag engines...
    local tag=$1 e; shift
    for e in "$@"; do
        run "$tag show $e" systemctl show -p ActiveState -p Result -p ExecMainStatus "$(unit "$e")"
        run "$tag journal $e" journal_last "$(unit "$e")"
    done
}
show_images() {  # tag engines...
    local tag=$1 e; shift
    for e in "$@"; do
        run "$tag images $e" "$e" image ls --no-trunc --format '{{.Repository}}:{{.Tag}} {{.ID}}'
        run "$tag inspect $e" "$e" image inspect --format '{{.Id}}' "$REF"
        run "$tag containers $e" "$e" ps -a --no-trunc --format '{{.ID}} {{.Image}}'
    done
}
observe() { show_units "$@"; show_images "$@"; }

# -- faults -----------------------------------------------------------------------------------------

# `timed_load ENGINE...`: the test's image goes from each engine, their loader units run again
# side by side; prints the seconds from the first load's start to the last one's end (the PATH
# wrapper's times; 0 when no load ran). The kill and cut moments are fractions of this, measured
# in the same boot, so a slow or shared CPU stretches them with the loads.
timed_load() {
    local e
    for e in "$@"; do
        "$e" rmi -f "$REF" >/dev/null 2>&1
        rm -f "/run/cltest/load-$e".*
    done
    sync
    for e in "$@"; do systemctl restart --no-block "$(unit "$e")"; done
    for e in "$@"; do settle "$(unit "$e")" 300; done
    for e in "$@"; do
        echo "$(cat "/run/cltest/load-$e.started" 2>/dev/null) $(cat "/run/cltest/load-$e.end" 2>/dev/null)"
    done | awk 'NF == 2 { if (!n++ || $1 < s) s = $1; if ($2 > t) t = $2 }
                END { if (n) printf "%.2f\n", t - s; else print 0 }'
}

scaled() { awk -v f="$1" -v s="$2" 'BEGIN { printf "%.2f", f * s }'; }

# SIGKILL to the engine while the loader's `<engine> load` runs: dockerd, or the `podman load`
# process (podman has no daemon). The PATH wrapper of the test's loader units writes the load's
# PID to /run/cltest/load-<engine>.pid when it starts it.
kill_trial() {
    local e=$1 tag=$2 delay=$3 converge=$4 i ended pid since
    "$e" rmi -f "$REF" >/dev/null 2>&1
    since=$(date +%s)
    rm -f "/run/cltest/load-$e".*
    sync
    systemctl restart --no-block "$(unit "$e")"
    for i in $(seq 1500); do
        [ -s "/run/cltest/load-$e.pid" ] && break
        sleep 0.2
    done
    sleep "$delay"
    ended=no
    [ -e "/run/cltest/load-$e.end" ] && ended=yes
    if [ "$e" = docker ]; then
        pid=$(systemctl show -p MainPID --value docker.service)
    else
        pid=$(cat "/run/cltest/load-$e.pid" 2>/dev/null)
    fi
    kill -9 "$pid"
    say "$tag kill $e" "delay=$delay load_ended_before_kill=$ended pid=$pid"
    settle "$(unit "$e")" 300
    show_units "$tag after" "$e"
    run "$tag since kill $e" journalctl -b --no-pager -o cat -u "$(unit "$e")" --since "@$since"
    engine_up "$e"
    settle "$(unit "$e")" 300
    show_units "$tag settled" "$e"
    show_images "$tag settled" "$e"
    if [ "$converge" = yes ]; then
        systemctl restart "$(unit "$e")"
        observe "$tag rerun" "$e"
    fi
}

# The host draws the moments (`<engine>fractions=f1,f2,…`, fractions of a load timed first in
# this boot): one trial each, a rerun after all but the last.
phase_kill() {
    local t e n span fractions
    for e in $ENGINES; do
        span=$(timed_load "$e")
        say "timed load $e" "seconds=$span"
        IFS=, read -r -a fractions <<< "$(setting "${e}fractions" 0.5)"
        n=${#fractions[@]}
        for ((t = 1; t < n; t++)); do
            kill_trial "$e" "kill$t" "$(scaled "${fractions[t - 1]}" "$span")" yes
        done
        kill_trial "$e" "killlast" "$(scaled "${fractions[n - 1]}" "$span")" no
    done
}

# fallocate FILE STEP: as large as the free blocks allow, trying smaller by STEP bytes.
fill() {
    local free bs size
    read -r free bs < <(stat -f -c '%f %S' /var/lib)
    size=$(( free * bs ))
    until [ "$size" -le 0 ] || fallocate -l "$size" "$1" 2>/dev/null; do
        size=$(( size - $2 ))
    done
}

# The engines' partition full: the loaders must fail and say so; then the space is freed.
phase_diskfull() {
    local e
    for e in $ENGINES; do "$e" rmi -f "$REF" >/dev/null 2>&1; done
    sync
    for e in $ENGINES; do run "records before $e" cat "/var/lib/container-loader/$e/loaded"; done
    # every block, the root's reserve too (the engines run as root): 1 MiB steps, then 4 KiB
    fill /var/cltest-fill 1048576
    fill /var/cltest-fill2 4096
    run "full df" df -B1 /var/lib
    for e in $ENGINES; do systemctl restart "$(unit "$e")"; done
    show_units full $ENGINES
    for e in $ENGINES; do run "full records $e" cat "/var/lib/container-loader/$e/loaded"; done
    rm -f /var/cltest-fill /var/cltest-fill2
    sync
    run "freed df" df -B1 /var/lib
    show_images freed $ENGINES
}

# Arm a power cut: both loads timed once (the host's window), the images go, the loaders start
# again; the host pulls the plug a fraction of that window after the first load-start marker.
phase_cut() {
    local e
    say "cut window" "seconds=$(timed_load $ENGINES)"
    for e in $ENGINES; do "$e" rmi -f "$REF" >/dev/null 2>&1; done
    rm -f /run/cltest/load-*
    sync
    say cut "armed at $(now)"
}

# -- update -----------------------------------------------------------------------------------------

phase_update() {
    run create podman create --pull=never --name cltest-keep "$REF"
    mkdir -p /etc/systemd/system/cltest-life-podman.service.d
    printf '[Service]\nEnvironment=CONTAINER_LOADER_PRUNE=0\n' \
        > /etc/systemd/system/cltest-life-podman.service.d/prune-off.conf
    systemctl daemon-reload
    run dpkg dpkg -i "$DEBS"/*.deb
    run versions dpkg-query -W cltest-life-docker cltest-life-podman
    observe installed $ENGINES
}

phase_updated() {
    run versions dpkg-query -W cltest-life-docker cltest-life-podman
    observe reboot $ENGINES
    rm -f /etc/systemd/system/cltest-life-podman.service.d/prune-off.conf
    systemctl daemon-reload
    systemctl restart "$(unit podman)"
    observe "prune on" podman
    run "rm container" podman rm cltest-keep
    systemctl restart "$(unit podman)"
    observe "container removed" podman
}

# -- first-boot benchmark -----------------------------------------------------------------------------

bench_list() { cat "/usr/share/cltest-bench-$1/image.list"; }
bench_clean() {
    local e=$1 file ref id
    if [ "$e" = podman ]; then
        # a first boot's store: none (podman has no daemon to stop; podman-loader trusts its store
        # file to confirm loads only in a new store)
        rm -rf /var/lib/containers/storage /run/containers/storage
    else
        while read -r file ref id _; do
            "$e" rmi -f "$ref" "$id" >/dev/null 2>&1
        done < <(bench_list "$e")
    fi
    sync
    echo 3 > /proc/sys/vm/drop_caches
}
bench_usable() {  # how many references name their image, how many image IDs are present
    local e=$1 refs=0 ids=0 file ref id got
    while read -r file ref id _; do
        got=$("$e" image inspect --format '{{.Id}}' "$ref" 2>/dev/null)
        [ "${got#sha256:}" = "${id#sha256:}" ] && refs=$((refs + 1))  # podman: no prefix
        "$e" image inspect "${id#sha256:}" >/dev/null 2>&1 && ids=$((ids + 1))
    done < <(bench_list "$e")
    echo "$refs $ids"
}
bench_one() {  # engine archive: decompress | load, as the loader does
    case "$2" in
        *.tar.zst) zstd -dcq -- "$2" ;;
        *) cat -- "$2" ;;
    esac | "$1" load -q >/dev/null
}
bench_loader() { systemctl restart "cltest-bench-$1.service"; }
bench_loader1() { bench_loader "$1"; }  # with CONTAINER_LOADER_JOBS=1 (set by phase_bench)
bench_bare() {
    local e=$1 file
    while read -r file _; do
        bench_one "$e" "/usr/share/cltest-bench-$e/images/$file" || return 1
    done < <(bench_list "$e")
}
bench_pairs() {
    local e=$1 file rc=0 pids=()
    while read -r file _; do
        bench_one "$e" "/usr/share/cltest-bench-$e/images/$file" &
        pids+=($!)
        if [ "${#pids[@]}" -ge 2 ]; then wait "${pids[0]}" || rc=1; pids=("${pids[@]:1}"); fi
    done < <(bench_list "$e")
    for p in "${pids[@]}"; do wait "$p" || rc=1; done
    return $rc
}
phase_bench() {
    local r e kind t0 t1 rc kinds
    touch /run/cltest/bench  # the bench units' condition
    echo "@@CLTEST section bench"
    for r in $(seq "$(setting reps 3)"); do
        # the order turns each repetition, so no kind always runs first
        case $((r % 4)) in
            1) kinds="loader bare pairs loader1" ;;
            2) kinds="bare pairs loader1 loader" ;;
            3) kinds="pairs loader1 loader bare" ;;
            0) kinds="loader1 loader bare pairs" ;;
        esac
        for e in $ENGINES; do
            for kind in $kinds; do
                bench_clean "$e"
                if [ "$kind" = loader1 ]; then
                    systemctl set-environment CONTAINER_LOADER_JOBS=1
                else
                    systemctl unset-environment CONTAINER_LOADER_JOBS
                fi
                t0=$(now)
                "bench_$kind" "$e" </dev/null >/dev/null 2>&1
                rc=$?
                t1=$(now)
                echo "$r $e $kind $t0 $t1 $rc $(bench_usable "$e")"
            done
        done
    done
    echo "@@CLTEST exit 0"
    run "bench journal" journalctl -b --no-pager -o cat -u cltest-bench-docker.service \
        -u cltest-bench-podman.service
}

{
echo "@@CLTEST begin boot=$boot"
say scenario "$SCENARIO"
has prepare && { observe prepare $ENGINES; run df df -B1 /var/lib; }
has converge && observe converge $ENGINES
has kill && phase_kill
has diskfull && phase_diskfull
has update && phase_update
has updated && phase_updated
has bench && phase_bench
has cut && phase_cut
echo "@@CLTEST end boot=$boot"
} > "$out" 2>&1
if has cut; then
    mark armed
    for e in $ENGINES; do systemctl restart --no-block "$(unit "$e")"; done
    exit 0  # the host pulls the plug
fi
systemctl poweroff
"""


def write_layer(build: IsarBuild, images: LifeImages) -> list[str]:
    """The test's recipes in the build's test layer; the packages the image installs."""
    for engine in ENGINES:
        about = f'DESCRIPTION = "container-lock lifetime test: {engine} loader"\n'
        build.add_recipe(f"cltest-life-{engine}", about + loader_recipe(engine, _url(images.a)))
        v2 = loader_recipe(
            engine, _url(images.b), _url(images.c), extra=same_package_recipe_extra(f"cltest-life-{engine}")
        )
        build.add_recipe(f"cltest-life-{engine}-v2", about + v2, version="2.0")
        build.add_recipe(f"cltest-bench-{engine}", about + loader_recipe(engine, *map(_url, images.bench)))
    recipe = build.add_recipe("cltest-life-check", _CHECK_RECIPE)
    files = recipe.parent / "files"
    files.mkdir(exist_ok=True)
    for name, text in {
        "cltest-life": _GUEST.replace("@REF@", images.ref),
        "cltest-life.service": _CHECK_UNIT,
        "cltest-mark": _MARK,
        "10-cltest.network": _NETWORK,
        "journald.conf": _JOURNALD,
        "life.conf": _LIFE_DROPIN,
        "bench.conf": _BENCH_DROPIN,
    }.items():
        (files / name).write_text(text)
    give_to_build_user(build.test_layer)
    packages = [f"cltest-{kind}-{engine}" for kind in ("life", "bench") for engine in ENGINES]
    return [*packages, "cltest-life-check", "expand-on-first-boot"]


@dataclass
class Built:
    build: IsarBuild
    images: LifeImages
    disk: Path  # the .wic
    seconds: float


def build_image(registry: Registry, factory: ImageFactory, name: str = "lifetime") -> Built:
    """Push the images and build the image (upstream Isar master, qemuamd64, bookworm)."""
    require_tools()
    images = push_images(factory)
    isar = isar_checkout("master")
    build = IsarBuild(isar, work_dir(name), machine="qemuamd64")
    build.env.update(isar_environment(isar))
    build.registries(insecure=[registry.host])
    build.set(IMAGE_INSTALL=" ".join(write_layer(build, images)))
    build.conf_append = 'ROOTFS_FEATURES:remove = "generate-sbom"\n'
    started = time.monotonic()
    build.bitbake(IMAGE, timeout=BUILD_TIMEOUT).check()
    disk = build.deploy_dir / "images" / build.machine / f"{IMAGE}-{build.distro}-{build.machine}.wic"
    assert disk.is_file(), f"no image at {disk}"
    return Built(build, images, disk, time.monotonic() - started)


# -- booting -------------------------------------------------------------------------------------


@dataclass
class Boot:
    """One start of qemu: what the guest reported, its ttyS2 markers, how long, the power cut."""

    name: str
    scenario: str
    report: Report
    markers: list[str]
    seconds: float
    cut: dict[str, object] | None = None


def _first_report(vm: QemuVM, deadline: float) -> Report:
    while True:
        reports = vm.reports()
        if reports:
            return reports[0]
        if not vm.running:
            raise AssertionError(f"qemu ended before the guest reported:\n{vm.console_tail()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"no report in time:\n{vm.console_tail()}")
        time.sleep(1)


def _pull_plug(vm: QemuVM, delay: float, deadline: float) -> dict[str, object]:
    """After the guest armed the cut and a load started: wait `delay` s, SIGKILL qemu."""
    while True:
        lines = vm.marker_lines()
        armed = max((i for i, line in enumerate(lines) if line.startswith("@@MARK armed")), default=None)
        if armed is not None and any(line.startswith("@@MARK load-start") for line in lines[armed:]):
            break
        if not vm.running:
            raise AssertionError(f"qemu ended before a load started:\n{vm.console_tail()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"no load started in time:\n{vm.console_tail()}")
        time.sleep(0.05)
    time.sleep(delay)
    vm.kill()
    after = vm.marker_lines()[armed:]  # what the guest marked before the plug was pulled
    started = {line.split()[2] for line in after if line.startswith("@@MARK load-start")}
    ended = {line.split()[2] for line in after if line.startswith("@@MARK load-end")}
    return {"delay": round(delay, 2), "loading": sorted(started - ended), "loaded": sorted(ended)}


def _cut_window(report: Report) -> float:
    """The seconds the guest's timed loads of this boot took (`cut window`), 5 if none ran."""
    section = report["cut window"]
    seconds = float(section.output.strip().removeprefix("seconds=") or 0)
    return seconds if seconds > 0 else 5.0


def boot(
    disk: Path,
    workdir: Path,
    name: str,
    scenario: str,
    cut: float | None = None,
    timeout: float = BOOT_TIMEOUT,
) -> Boot:
    """Start qemu on `disk` (a copy of the image) with `scenario`; wait for the report, then for the
    power-off, or pull the plug `cut` times the guest's `cut window` (both loads timed in this
    boot) after the first load the guest started once armed."""
    vm = QemuVM(
        disk,
        workdir / name,
        snapshot=False,
        fw_cfg={"opt/cltest/scenario": scenario},
        oem_strings=[f"cltest-scenario={scenario}"],
        markers=True,
    )
    started = time.monotonic()
    deadline = started + timeout
    with vm:
        report = _first_report(vm, deadline)
        if cut is None:
            assert vm.wait_exit(deadline) == 0
            pulled = None
        else:
            window = _cut_window(report)
            pulled = {"window": window, **_pull_plug(vm, round(cut * window, 2), deadline)}
    return Boot(name, scenario, report, vm.marker_lines(), time.monotonic() - started, pulled)


def load_spans(markers: list[str]) -> dict[str, float]:
    """Seconds from `load-start` to `load-end` per engine (the last of each), guest clock."""
    start: dict[str, float] = {}
    spans: dict[str, float] = {}
    for line in markers:
        words = line.split()
        if len(words) >= 4 and words[1] == "load-start":
            start[words[2]] = float(words[3])
        elif len(words) >= 5 and words[1] == "load-end" and words[2] in start:
            spans[words[2]] = float(words[4]) - start[words[2]]
    return spans


@dataclass
class Chain:
    """The boots of one disk, each run once and in order, when a test first asks for one."""

    disk: Path
    workdir: Path
    steps: list[tuple[str, str, float | None]]  # name, scenario, power cut (fraction of the window)
    boots: dict[str, Boot] = field(default_factory=dict)
    broken: str | None = None

    def __getitem__(self, name: str) -> Boot:
        for step, scenario, cut in self.steps:
            if step in self.boots:
                if step == name:
                    return self.boots[step]
                continue
            if self.broken:
                raise AssertionError(f"boot {name!r} not reached: {self.broken}")
            try:
                self.boots[step] = boot(self.disk, self.workdir, step, scenario, cut)
            except BaseException as err:
                self.broken = f"boot {step!r} failed: {str(err)[:2000]}"
                raise
            if step == name:
                return self.boots[step]
        raise KeyError(name)


# -- reading reports -----------------------------------------------------------------------------


def show(report: Report, name: str) -> dict[str, str]:
    section = report[name]
    assert section.status == 0, section.output
    return dict(line.split("=", 1) for line in section.output.splitlines() if "=" in line)


SUCCESS = {"ActiveState": "active", "Result": "success", "ExecMainStatus": "0"}


def listed(report: Report, name: str) -> list[tuple[str, str]]:
    """(`repository:tag`, ID hex) of an `images` section; untagged ones as `<none>:<none>`."""
    section = report[name]
    assert section.status == 0, f"{name}: exit {section.status}\n{section.output}"
    pairs = (line.split() for line in section.output.splitlines() if line.strip())
    return [(p[0], p[1].removeprefix("sha256:")) for p in pairs if len(p) == 2]


def tagged(report: Report, name: str) -> dict[str, str]:
    return {ref: id_ for ref, id_ in listed(report, name) if "<none>" not in ref}


def converged(
    report: Report, tag: str, want: dict[str, str], engines: tuple[str, ...] = ENGINES
) -> list[str]:
    """What is wrong with `tag`'s observations if the loaders have not converged to `want`
    (reference -> ID) of the test's repository: unit state, IDs, a wrong image tagged."""
    problems = []
    for engine in engines:
        state = show(report, f"{tag} show {engine}")
        if state != SUCCESS:
            problems.append(f"{engine}: unit {state}\n{report[f'{tag} journal {engine}'].output}")
        mine = {r: i for r, i in tagged(report, f"{tag} images {engine}").items() if f"/{REPOSITORY}" in r}
        if mine != want:
            problems.append(f"{engine}: tagged {mine}, expected {want}")
        # listed is not enough: an image an interrupted load left behind is listed, yet unusable
        inspect = report[f"{tag} inspect {engine}"]
        usable = inspect.output.strip().removeprefix("sha256:") if inspect.status == 0 else None
        main = next((i for r, i in want.items() if not r.split("/", 1)[1].startswith(f"{REPOSITORY}-")), None)
        if usable != main:
            problems.append(
                f"{engine}: inspecting the reference gives {usable}, expected {main}: {inspect.output}"
            )
    return problems


def tells_the_truth(report: Report, tag: str, engine: str, ref: str, want: str) -> list[str]:
    """The unit reports success exactly when the reference names the expected image, and no other
    image is tagged with it."""
    state = show(report, f"{tag} show {engine}")
    got = tagged(report, f"{tag} images {engine}").get(ref)
    inspect = report[f"{tag} inspect {engine}"]
    if got is not None and (inspect.status != 0 or inspect.output.strip().removeprefix("sha256:") != got):
        got = f"{got} (listed, but unusable: {inspect.output.strip()[-200:]})"
    problems = []
    if got not in (None, want):
        problems.append(f"{engine}: {ref} names {got}, a half-loaded or wrong image")
    if (state == SUCCESS) != (got == want):
        problems.append(f"{engine}: unit {state} while {ref} names {got or 'nothing'}")
    return problems


# -- the tests -----------------------------------------------------------------------------------


@dataclass
class Life:
    built: Built
    workdir: Path  # the disks
    logs: Path  # each boot's console, report and markers, in a directory of its name
    prepared: Path  # the disk after the first boot (a sparse copy of the .wic, grown)
    first: Boot
    spans: dict[str, float]  # each engine's load of A at the first boot, seconds


@pytest.fixture(scope="module")
def boot_logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the boots' logs go: under pytest's base temporary directory, which outlives the run
    (the build tree does not), so a failure's consoles can be read afterwards."""
    return tmp_path_factory.mktemp("lifetime-boots")


@pytest.fixture(scope="module")
def life(registry: Registry, image_factory: ImageFactory, boot_logs: Path) -> Life:
    built = build_image(registry, image_factory)
    workdir = built.build.topdir / "lifetime"
    workdir.mkdir()
    prepared = disk_copy(built.disk, workdir / "first.img", DISK_SIZE)
    first = boot(prepared, boot_logs, "first", "prepare")
    return Life(built, workdir, boot_logs, prepared, first, load_spans(first.markers))


@pytest.fixture(scope="module")
def update(life: Life) -> Chain:
    disk = disk_copy(life.prepared, life.workdir / "update.img")
    return Chain(disk, life.logs, [("update", "update", None), ("updated", "updated", None)])


def lifetime_seed(environ: dict[str, str] | None = None) -> int:
    """The seed of the module's random draws: CONTAINER_LOCK_LIFETIME_SEED to replay a run's, else
    a new one."""
    text = (os.environ if environ is None else environ).get(SEED_ENV, "").strip()
    if not text:
        return random.SystemRandom().randrange(1 << 32)
    try:
        return int(text, 0)
    except ValueError:
        raise ValueError(
            f"{SEED_ENV}={text!r} is not an integer: set it to the seed a lifetime run printed "
            "('lifetime seed: …'), or unset it for a new one"
        ) from None


def draws(seed: int, purpose: str) -> random.Random:
    """The random numbers of one purpose (`kill-docker`, `cut3`): the same for the same seed,
    whichever tests run, in whatever order."""
    return random.Random(f"{seed}:{purpose}")


def _seed_note(seed: int) -> str:
    return f"lifetime seed: {SEED_ENV}={seed} draws the same kill and cut moments again"


@pytest.fixture(scope="module")
def seed(request: pytest.FixtureRequest) -> int:
    value = lifetime_seed()
    print_uncaptured(request, _seed_note(value))
    return value


@pytest.fixture(autouse=True)
def _seed_in_failure_reports(request: pytest.FixtureRequest, seed: int, boot_logs: Path) -> None:
    request.node.add_report_section("setup", "seed", f"{_seed_note(seed)}\nboot logs: {boot_logs}")


@pytest.fixture(scope="module")
def kills(life: Life, seed: int) -> Chain:
    """Engine kills mid-load (a rerun after each but the last) -> the next boot converges."""
    # fractions of a load of the same engine timed in the same boot (the first boot's loads ran
    # beside the boot, two to three times slower than later ones: windows taken from them let
    # half of the kills land after the load)
    fractions = []
    for engine in ENGINES:
        rng = draws(seed, f"kill-{engine}")
        drawn = ",".join(f"{rng.uniform(0.0, KILL_REACH):.3f}" for _ in range(KILL_TRIALS + 1))
        fractions.append(f"{engine}fractions={drawn}")
    steps: list[tuple[str, str, float | None]] = [
        ("kill", f"kill {' '.join(fractions)}", None),
        ("killed", "converge", None),
    ]
    return Chain(disk_copy(life.prepared, life.workdir / "kill.img"), life.logs, steps)


@pytest.fixture(scope="module")
def diskfull(life: Life) -> Chain:
    """The data partition full while the loaders run, then freed -> the next boot converges."""
    steps: list[tuple[str, str, float | None]] = [("diskfull", "diskfull", None), ("freed", "converge", None)]
    return Chain(disk_copy(life.prepared, life.workdir / "diskfull.img"), life.logs, steps)


@pytest.fixture(scope="module")
def cuts(life: Life, seed: int) -> Chain:
    """Power cuts during the loads, each boot converging after the previous cut -> a last boot."""
    steps: list[tuple[str, str, float | None]] = [
        (f"cut{i}", "converge cut", round(draws(seed, f"cut{i}").uniform(0.0, CUT_REACH), 3))
        for i in range(1, POWER_CUTS + 1)
    ]
    steps.append(("final", "converge", None))
    return Chain(disk_copy(life.prepared, life.workdir / "cuts.img"), life.logs, steps)


def _say(capsys: pytest.CaptureFixture[str], *lines: str) -> None:
    with capsys.disabled():
        print("\n" + "\n".join(lines))


def test_first_boot_loads_version_1(life: Life, capsys: pytest.CaptureFixture[str]) -> None:
    images, report = life.built.images, life.first.report
    a = config_hex(images.a)
    assert converged(report, "prepare", {images.ref: a}) == []
    for engine in ENGINES:
        journal = report[f"prepare journal {engine}"].output
        assert f"container-loader(cltest-life-{engine}): {images.ref}: loaded ({a})" in journal, journal
    assert set(life.spans) == set(ENGINES), life.first.markers  # the PATH wrapper marked both loads
    df = report["df"].output.splitlines()[-1].split()
    assert int(df[1]) > 4 * 10**9, f"the root file system was not expanded: {report['df'].output}"
    spans = ", ".join(f"{e} {s:.1f} s" for e, s in sorted(life.spans.items()))
    _say(
        capsys,
        f"lifetime: build {life.built.seconds:.0f} s, first boot {life.first.seconds:.0f} s "
        f"(load of A, {LIFE_MIB} MiB: {spans})",
    )


def test_update_replaces_the_image_and_prunes_the_old_one(
    life: Life, update: Chain, capsys: pytest.CaptureFixture[str]
) -> None:
    images = life.built.images
    ref, a, b, c = images.ref, config_hex(images.a), config_hex(images.b), config_hex(images.c)
    setup, after = update["update"].report, update["updated"].report
    assert setup["create"].status == 0, setup["create"].output  # podman: a container from A
    assert setup["dpkg"].status == 0, setup["dpkg"].output
    for report in (setup, after):
        versions = dict(line.split() for line in report["versions"].output.splitlines() if line.strip())
        assert versions == {"cltest-life-docker": "2.0", "cltest-life-podman": "2.0"}, versions
    want = {ref: b, images.c.reference: c}
    assert converged(after, "reboot", want) == []
    # docker, pruning on: A is gone, and the journal says why
    assert a not in {i for _, i in listed(after, "reboot images docker")}
    docker_journal = setup["installed journal docker"].output + after["reboot journal docker"].output
    assert f"container-loader(cltest-life-docker): pruned {ref} ({a}): no installed package lists it" in (
        docker_journal
    ), docker_journal
    # podman, pruning off: A is kept
    assert a in {i for _, i in listed(after, "reboot images podman")}
    podman_journal = setup["installed journal podman"].output + after["reboot journal podman"].output
    assert "pruned" not in podman_journal, podman_journal
    # pruning on again: the container created from A keeps it
    assert converged(after, "prune on", want, ("podman",)) == []
    assert a in {i for _, i in listed(after, "prune on images podman")}
    journal = after["prune on journal podman"].output
    kept = (
        f"container-loader(cltest-life-podman): kept {ref} ({a}): "
        "no installed package lists it, but container(s) "
    )
    assert kept in journal, journal
    # the container gone, the next run prunes A
    assert after["rm container"].status == 0, after["rm container"].output
    assert converged(after, "container removed", want, ("podman",)) == []
    assert a not in {i for _, i in listed(after, "container removed images podman")}
    journal = after["container removed journal podman"].output
    assert f"container-loader(cltest-life-podman): pruned {ref} ({a})" in journal, journal
    _say(
        capsys,
        f"lifetime update: dpkg -i boot {update['update'].seconds:.0f} s, "
        f"reboot {update['updated'].seconds:.0f} s",
    )


def _kill_facts(text: str) -> dict[str, str]:
    return dict(word.split("=", 1) for word in text.split() if "=" in word)


def test_engine_killed_mid_load(
    life: Life, kills: Chain, seed: int, capsys: pytest.CaptureFixture[str]
) -> None:
    images = life.built.images
    ref, a = images.ref, config_hex(images.a)
    report = kills["kill"].report
    problems: list[str] = []
    lines = []
    mid_load = {engine: 0 for engine in ENGINES}
    for engine in ENGINES:
        timed = _kill_facts(report[f"timed load {engine}"].output).get("seconds")
        for tag in [*(f"kill{t}" for t in range(1, KILL_TRIALS + 1)), "killlast"]:
            facts = _kill_facts(report[f"{tag} kill {engine}"].output)
            during = facts.get("load_ended_before_kill") == "no"
            mid_load[engine] += during
            state = show(report, f"{tag} settled show {engine}")
            got = tagged(report, f"{tag} settled images {engine}").get(ref)
            problems += [f"{tag}: {p}" for p in tells_the_truth(report, f"{tag} settled", engine, ref, a)]
            if tag != "killlast":
                problems += [
                    f"{tag} rerun: {p}" for p in converged(report, f"{tag} rerun", {ref: a}, (engine,))
                ]
            since = report[f"{tag} since kill {engine}"].output
            if "status=15/TERM" in since:
                killed = "systemd stopped the run with the engine (Requires=) and started it again"
            elif " failed: " in since:
                killed = "the run failed and said so"
            else:
                killed = "the run had loaded"
            lines.append(
                f"  {engine} {tag}: SIGKILL {facts.get('delay')} s after the load started (a timed load: "
                f"{timed} s), {killed} "
                f"({'mid-load' if during else 'after the load'}); unit then "
                f"{state.get('ActiveState')}/{state.get('Result')}, {ref.rsplit('/', 1)[-1]} -> "
                f"{'A' if got == a else got or 'nothing'}"
            )
    after = kills["killed"].report
    problems += [f"next boot: {p}" for p in converged(after, "converge", {ref: a})]
    total = (KILL_TRIALS + 1) * len(ENGINES)
    _say(
        capsys,
        f"lifetime engine SIGKILL: {total} trials, mid-load {sum(mid_load.values())}, "
        f"problems {len(problems)} (boots {kills['kill'].seconds:.0f} s, {kills['killed'].seconds:.0f} s; "
        f"seed {seed})",
        *lines,
    )
    assert not problems, "\n".join([*problems, _seed_note(seed)])
    assert all(mid_load.values()), f"no kill landed in the middle of a load: {mid_load}; {_seed_note(seed)}"


def test_full_disk_fails_visibly_then_converges(
    life: Life, diskfull: Chain, capsys: pytest.CaptureFixture[str]
) -> None:
    images = life.built.images
    ref, a = images.ref, config_hex(images.a)
    report = diskfull["diskfull"].report
    available = int(report["full df"].output.splitlines()[-1].split()[3])
    assert available < 1 << 20, report["full df"].output
    for engine in ENGINES:
        state = show(report, f"full show {engine}")
        journal = report[f"full journal {engine}"].output
        assert state == {"ActiveState": "failed", "Result": "exit-code", "ExecMainStatus": "1"}, (
            state,
            journal,
        )
        assert re.search(
            rf"container-loader\(cltest-life-{engine}\): {re.escape(ref)}: loading \S+ failed", journal
        )
        assert "no space left on device" in journal.lower(), journal
        assert ref not in tagged(report, f"freed images {engine}")
        # what the loader had loaded is still on record (it prunes what no package lists any more)
        before = report[f"records before {engine}"].output
        assert f"{a} {ref}" in before.splitlines(), before
        assert report[f"full records {engine}"].output == before
    after = diskfull["freed"].report
    assert converged(after, "converge", {ref: a}) == []
    _say(
        capsys,
        f"lifetime full disk: both units failed naming 'no space left on device', next boot converged "
        f"(boots {diskfull['diskfull'].seconds:.0f} s, {diskfull['freed'].seconds:.0f} s)",
    )


def test_power_cuts_mid_load(life: Life, cuts: Chain, seed: int, capsys: pytest.CaptureFixture[str]) -> None:
    images = life.built.images
    ref, a = images.ref, config_hex(images.a)
    lines, failed, during = [], 0, 0
    for i in range(1, POWER_CUTS + 1):
        cut = cuts[f"cut{i}"]
        following = cuts[f"cut{i + 1}" if i < POWER_CUTS else "final"]
        assert cut.cut is not None
        problems = converged(following.report, "converge", {ref: a})
        failed += bool(problems)
        during += bool(cut.cut["loading"])
        lines.append(
            f"  cut {i}: {cut.cut['delay']} s after the first load started (window {cut.cut['window']} s), "
            f"loading {cut.cut['loading'] or 'nothing'}"
            f" (finished {cut.cut['loaded'] or 'none'}); next boot "
            + ("converged" if not problems else "NOT converged: " + "; ".join(problems))
        )
    _say(
        capsys,
        f"lifetime power cuts: {POWER_CUTS} cuts, {during} mid-load, {POWER_CUTS - failed} converged "
        f"(seed {seed})",
        *lines,
    )
    assert failed == 0, "\n".join([*lines, _seed_note(seed)])
    assert during > 0, f"no cut landed in the middle of a load; {_seed_note(seed)}"
