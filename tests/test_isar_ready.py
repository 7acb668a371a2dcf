"""Issue 30: ready at first boot — preloaded stores and services on the real booted Isar image.

One `isar-image-base` (qemuamd64, bookworm) built with `CONTAINER_PRELOAD = "1"` holds:

- `cltest-ready-docker` and `cltest-ready-podman` 1.0, each with image A of its engine
  (`<registry>/cltest/ready-<engine>:stable`, pinned) and a service (`CONTAINER_SERVICES`),
  `web-<engine>`, running A with `--network host`: Debian's static busybox as
  `busybox httpd -f -p <port> -h /srv`, serving a file whose content the test knows
  (`cltest ready <engine> A`);
- their 2.0 `.deb`s (image B under the same reference, content `… B`), built by the same build
  from the recipes `cltest-ready-{docker,podman}-v2` (PN differs, `BPN` is the same) and carried
  as files in the check package, to be installed with `dpkg -i` as a device would get an update;
- `cltest-ready-check`: a oneshot unit after the loaders that runs the phase the host names for
  each boot (qemu `-fw_cfg opt/cltest/scenario`: `name=<disk> phases=<p1>,<p2>,…`, boot n of that
  disk runs phase n), asks the services over HTTP (bash's /dev/tcp), writes raw observations to
  ttyS1 and reboots (more phases) or powers off. A drop-in of the loader units marks each start
  on ttyS2 (`@@MARK loader-start`), the check unit marks `@@MARK answered` when both services
  answer.

Boots (three qemu runs on sparse copies of the `.wic`, no -snapshot):

- main: `first` (nothing loaded, the pinned IDs present, the services answer), then a reboot:
  `reboot` (the same again) and `dpkg -i` of both 2.0 packages in that boot (`installed`: one
  restart transaction, the services run B, A is pruned);
- cut: qemu is killed (SIGKILL: a power cut) a seeded moment after the first loader unit of the
  first boot started, a fraction of the window the main disk's first boot took from there to both
  services answering; `converge` on the next start. The seed is printed (`ready seed:
  CONTAINER_LOCK_READY_SEED=…`); set that variable to draw the same moment again.
"""

from __future__ import annotations

import os
import random
import time
from dataclasses import dataclass
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
BOOT_TIMEOUT = 15 * 60.0  # one boot, until the guest reports (a slow, shared CPU too)
ENGINES = ("docker", "podman")
PORTS = {"docker": 8081, "podman": 8082}
BUSYBOX = Path("/bin/busybox")  # Debian's busybox-static (.ci/setup installs it)
CUT_REACH = 1.2  # the cut: up to this fraction of the first boot's window (a few after it)
SEED_ENV = "CONTAINER_LOCK_READY_SEED"
SUCCESS = {"ActiveState": "active", "Result": "success", "ExecMainStatus": "0"}


def package(engine: str) -> str:
    return f"cltest-ready-{engine}"


def service(engine: str) -> str:
    return f"web-{engine}"


def content(engine: str, version: str) -> str:
    return f"cltest ready {engine} {version}"


# -- the image -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReadyImages:
    a: dict[str, PushedImage]  # engine -> v1 image
    b: dict[str, PushedImage]  # engine -> v2 image, same reference


def config_hex(image: PushedImage) -> str:
    return image.platforms["linux/amd64"].config_digest.removeprefix("sha256:")


def push_images(factory: ImageFactory) -> ReadyImages:
    """Per engine: A then B under `cltest/ready-<engine>:stable` (the recipes pin the digests)."""
    if not BUSYBOX.is_file():
        raise AssertionError(f"{BUSYBOX} is missing: apt-get install busybox-static (as .ci/setup does)")
    server = {"bin/busybox": BUSYBOX.read_bytes()}
    a: dict[str, PushedImage] = {}
    b: dict[str, PushedImage] = {}
    for engine in ENGINES:
        repository = f"cltest/ready-{engine}"
        cmd = ("/bin/busybox", "httpd", "-f", "-p", str(PORTS[engine]), "-h", "/srv")
        for version, into in (("A", a), ("B", b)):
            files = {**base_files(repository), "srv/index.html": f"{content(engine, version)}\n".encode()}
            into[engine] = factory.layered(repository, [server, files], tag="stable", cmd=cmd)
    return ReadyImages(a, b)


def _url(image: PushedImage) -> str:
    return docker_url(image.host, image.repository, image.tag, image.digest)


def _services(engine: str, image: PushedImage) -> str:
    name = service(engine)
    return (
        f'CONTAINER_SERVICES = "{name}"\n'
        f'CONTAINER_SERVICE_IMAGE[{name}] = "{image.reference}"\n'
        f'CONTAINER_SERVICE_ARGS[{name}] = "--network host"\n'
    )


_CHECK_RECIPE = """\
DESCRIPTION = "container-lock ready-at-first-boot test: run the host's phase, report on ttyS1"
inherit dpkg-raw
SRC_URI = "file://cltest-ready file://cltest-ready.service file://cltest-mark file://10-cltest.network \\
           file://mark.conf"
DEBIAN_DEPENDS = "docker.io, podman"
V2 = "${TMPDIR}/work/${DISTRO}-${DISTRO_ARCH}"
UNITS = "${D}/usr/lib/systemd/system"
do_install[depends] += "cltest-ready-docker-v2:do_dpkg_build cltest-ready-podman-v2:do_dpkg_build"
do_install() {
    install -D -m 755 ${WORKDIR}/cltest-ready ${D}/usr/libexec/cltest-ready
    install -D -m 755 ${WORKDIR}/cltest-mark ${D}/usr/libexec/cltest-mark
    install -D -m 644 ${WORKDIR}/10-cltest.network ${D}/etc/systemd/network/10-cltest.network
    install -d ${D}/usr/share/cltest-ready-check/debs
    for e in docker podman; do
        install -D -m 644 ${WORKDIR}/mark.conf ${UNITS}/cltest-ready-$e.service.d/cltest.conf
        cp ${V2}/cltest-ready-$e-v2/2.0-r0/cltest-ready-$e"_2.0_"*.deb ${D}/usr/share/cltest-ready-check/debs/
    done
}
do_prepare_build:append() {
    install -m 644 ${WORKDIR}/cltest-ready.service ${S}/debian/${BPN}.service
}
"""

_CHECK_UNIT = """\
[Unit]
Description=container-lock ready-at-first-boot test
After=cltest-ready-docker.service cltest-ready-podman.service docker.service

[Service]
Type=oneshot
TimeoutStartSec=infinity
ExecStart=/usr/libexec/cltest-ready

[Install]
WantedBy=multi-user.target
"""

_NETWORK = "[Match]\nType=ether\n\n[Network]\nDHCP=yes\n"
_MARK_DROPIN = "[Service]\nExecStartPre=-/usr/libexec/cltest-mark loader-start %n\n"
_MARK = '#!/bin/sh\necho "@@MARK $* $(date +%s.%N)" > /dev/ttyS2\n'

# Raw observations only; the host asserts.
_GUEST = r"""#!/bin/bash
# container-lock ready-at-first-boot test (tests/test_isar_ready.py): runs the phase the host
# names for this boot of this disk and writes raw observations to ttyS1, in the blocks
# tests/harness/isar_boot.py parses. The host asserts; this script only acts and observes.
set -u
out=/dev/ttyS1
ENGINES="docker podman"
declare -A PORT=([docker]=@PORT_DOCKER@ [podman]=@PORT_PODMAN@)
REFS="@REFS@"
DEBS=/usr/share/cltest-ready-check/debs
state=/var/lib/cltest-ready
mkdir -p "$state"

scenario() {
    local f=/sys/firmware/qemu_fw_cfg/by_name/opt/cltest/scenario/raw i
    modprobe qemu_fw_cfg 2>/dev/null
    for i in $(seq 25); do
        if [ -r "$f" ]; then cat "$f"; return; fi
        sleep 0.2
    done
}
SCENARIO=$(scenario)
[ -n "$SCENARIO" ] || exit 0
setting() {
    local w
    for w in $SCENARIO; do case $w in "$1"=*) echo "${w#*=}"; return ;; esac; done
}
name=$(setting name)
IFS=, read -r -a phases <<< "$(setting phases)"
boot=$(( $(cat "$state/$name.boots" 2>/dev/null || echo 0) + 1 ))
echo "$boot" > "$state/$name.boots"
sync
phase=${phases[boot - 1]:-none}

run() { local n=$1; shift; echo "@@CLTEST section $n"; "$@" 2>&1; echo "@@CLTEST exit $?"; }
mark() { /usr/libexec/cltest-mark "$@"; }

# GET / from a service on the loopback, with bash's /dev/tcp; prints the response.
answer() {
    exec 3<>"/dev/tcp/127.0.0.1/$1" || return 1
    printf 'GET / HTTP/1.0\r\nHost: localhost\r\n\r\n' >&3
    timeout 10 cat <&3
    local rc=$?
    exec 3<&-
    return $rc
}
answers() { answer "$1" 2>/dev/null | grep -q '^cltest ready'; }
# Wait (at most $2 s) until the service on port $1 answers; prints the seconds waited.
wait_answer() {
    local i
    for i in $(seq "$2"); do
        answers "$1" && { echo "$i"; return 0; }
        sleep 1
    done
    echo "$2"
    return 1
}
settle() {  # no job and not (de)activating, at most $2 s
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
ready() {
    local e
    for e in $ENGINES; do settle "cltest-ready-$e.service" 600; done
    for e in $ENGINES; do run "$1 wait $e" wait_answer "${PORT[$e]}" 600; done
}

observe() {  # tag [journalctl options]
    local tag=$1 e; shift
    for e in $ENGINES; do
        run "$tag loader show $e" systemctl show -p ActiveState -p Result -p ExecMainStatus \
            "cltest-ready-$e.service"
        run "$tag loader journal $e" journalctl --no-pager -o cat -u "cltest-ready-$e.service" "$@"
        run "$tag service show $e" systemctl show -p ActiveState -p SubState -p NRestarts "web-$e.service"
        run "$tag service journal $e" journalctl --no-pager -o cat -u "web-$e.service" "$@"
        run "$tag images $e" "$e" image ls --no-trunc --format '{{.Repository}}:{{.Tag}} {{.ID}}'
        run "$tag running $e" "$e" inspect --format '{{.Image}}' "web-$e"
        run "$tag answer $e" answer "${PORT[$e]}"
        run "$tag records $e" cat "/var/lib/container-loader/$e/loaded"
    done
    run "$tag failed" systemctl --failed --no-legend --plain
}

phase_update() {
    local since
    since=$(date +%s)
    sleep 1
    run dpkg dpkg -i "$DEBS"/*.deb
    run versions dpkg-query -W cltest-ready-docker cltest-ready-podman
    ready installed
    observe installed --since "@$since"
}

{
echo "@@CLTEST begin boot=$boot"
run scenario echo "$SCENARIO phase=$phase"
case $phase in
    first|reboot|converge)
        ready "$phase"
        mark answered
        observe "$phase" -b
        ;;
    update)
        ready reboot
        observe reboot -b
        phase_update
        ;;
    cut)
        ready cut
        mark answered
        ;;
esac
echo "@@CLTEST end boot=$boot"
} > "$out" 2>&1
[ "$phase" = cut ] && exit 0  # the host pulls the plug
if [ "$boot" -lt "${#phases[@]}" ]; then systemctl reboot; else systemctl poweroff; fi
"""


def write_layer(build: IsarBuild, images: ReadyImages) -> list[str]:
    """The test's recipes in the build's test layer; the packages the image installs."""
    for engine in ENGINES:
        about = f'DESCRIPTION = "container-lock ready test: {engine} loader with a service"\n'
        a, b = images.a[engine], images.b[engine]
        build.add_recipe(package(engine), about + loader_recipe(engine, _url(a), extra=_services(engine, a)))
        extra = same_package_recipe_extra(f"cltest-ready-{engine}") + _services(engine, b)
        build.add_recipe(f"{package(engine)}-v2", about + loader_recipe(engine, _url(b), extra=extra), "2.0")
    recipe = build.add_recipe("cltest-ready-check", _CHECK_RECIPE)
    files = recipe.parent / "files"
    files.mkdir(exist_ok=True)
    refs = " ".join(images.a[e].reference for e in ENGINES)
    guest = (
        _GUEST.replace("@PORT_DOCKER@", str(PORTS["docker"]))
        .replace("@PORT_PODMAN@", str(PORTS["podman"]))
        .replace("@REFS@", refs)
    )
    for name, text in {
        "cltest-ready": guest,
        "cltest-ready.service": _CHECK_UNIT,
        "cltest-mark": _MARK,
        "10-cltest.network": _NETWORK,
        "mark.conf": _MARK_DROPIN,
    }.items():
        (files / name).write_text(text)
    give_to_build_user(build.test_layer)
    return [*(package(e) for e in ENGINES), "cltest-ready-check"]


@dataclass
class Built:
    build: IsarBuild
    images: ReadyImages
    disk: Path  # the .wic
    seconds: float


def build_image(registry: Registry, factory: ImageFactory) -> Built:
    """Push the images and build the image (upstream Isar master, qemuamd64, bookworm, preloaded)."""
    require_tools()
    images = push_images(factory)
    isar = isar_checkout("master")
    build = IsarBuild(isar, work_dir("ready"), machine="qemuamd64")
    build.env.update(isar_environment(isar))
    build.registries(insecure=[registry.host])
    build.set(IMAGE_INSTALL=" ".join(write_layer(build, images)), CONTAINER_PRELOAD="1")
    build.conf_append = 'ROOTFS_FEATURES:remove = "generate-sbom"\n'
    started = time.monotonic()
    build.bitbake(IMAGE, timeout=BUILD_TIMEOUT).check()
    disk = build.deploy_dir / "images" / build.machine / f"{IMAGE}-{build.distro}-{build.machine}.wic"
    assert disk.is_file(), f"no image at {disk}"
    return Built(build, images, disk, time.monotonic() - started)


# -- booting -------------------------------------------------------------------------------------


@dataclass
class Run:
    """One qemu process on a disk: the reports of its boots, its ttyS2 markers, how long."""

    reports: dict[str, Report]  # phase -> report
    markers: list[str]
    seconds: float
    cut: dict[str, object] | None = None


def _vm(disk: Path, logs: Path, name: str, phases: list[str]) -> QemuVM:
    scenario = f"name={name} phases={','.join(phases)}"
    return QemuVM(disk, logs / name, snapshot=False, fw_cfg={"opt/cltest/scenario": scenario}, markers=True)


def run_phases(disk: Path, logs: Path, name: str, phases: list[str]) -> Run:
    """Boot `disk` until the guest has run every phase (a reboot between) and powered off."""
    vm = _vm(disk, logs, name, phases)
    started = time.monotonic()
    reports = {}
    with vm:
        for n, phase in enumerate(phases, 1):  # each boot its own time
            reports[phase] = vm.wait_for_report(n, time.monotonic() + BOOT_TIMEOUT)
        assert vm.wait_exit(time.monotonic() + BOOT_TIMEOUT) == 0
    return Run(reports, vm.marker_lines(), time.monotonic() - started)


def marks(lines: list[str], what: str) -> list[float]:
    """The guest times of the `@@MARK <what> …` lines."""
    return [float(line.split()[-1]) for line in lines if line.split()[1:2] == [what]]


def ready_window(markers: list[str]) -> float:
    """Seconds from the first loader start to both services answering (the guest's clock)."""
    starts, answered = marks(markers, "loader-start"), marks(markers, "answered")
    assert starts and answered, f"the first boot marked no loader start or no answer: {markers}"
    return answered[0] - starts[0]


def cut_run(disk: Path, logs: Path, fraction: float, window: float) -> Run:
    """Boot `disk` for the first time; `fraction * window` s after the first loader unit started,
    SIGKILL qemu."""
    vm = _vm(disk, logs, "cut", ["cut"])
    started = time.monotonic()
    deadline = started + BOOT_TIMEOUT
    delay = round(fraction * window, 2)
    with vm:
        while not any(line.split()[1:2] == ["loader-start"] for line in vm.marker_lines()):
            if not vm.running:
                raise AssertionError(f"qemu ended before a loader started:\n{vm.console_tail()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no loader started in time:\n{vm.console_tail()}")
            time.sleep(0.05)
        time.sleep(delay)
        vm.kill()
        lines = vm.marker_lines()
    answered = bool(marks(lines, "answered"))
    cut = {"delay": delay, "window": round(window, 2), "answered_before": answered}
    return Run({}, lines, time.monotonic() - started, cut)


# -- reading reports -----------------------------------------------------------------------------


def show(report: Report, name: str) -> dict[str, str]:
    section = report[name]
    assert section.status == 0, section.output
    return dict(line.split("=", 1) for line in section.output.splitlines() if "=" in line)


def listed(report: Report, name: str) -> dict[str, str]:
    """`repository:tag` -> ID hex of an `images` section (tagged ones)."""
    section = report[name]
    assert section.status == 0, f"{name}: exit {section.status}\n{section.output}"
    pairs = (line.split() for line in section.output.splitlines() if line.strip())
    return {p[0]: p[1].removeprefix("sha256:") for p in pairs if len(p) == 2 and "<none>" not in p[0]}


def ids(report: Report, name: str) -> set[str]:
    section = report[name]
    assert section.status == 0, section.output
    return {
        line.split()[1].removeprefix("sha256:")
        for line in section.output.splitlines()
        if len(line.split()) == 2
    }


def serving(report: Report, tag: str, engine: str, image: PushedImage, version: str) -> list[str]:
    """What is wrong if `engine`'s service does not run `image` and answer with its content."""
    problems = []
    loader = show(report, f"{tag} loader show {engine}")
    if loader != SUCCESS:
        problems.append(f"{engine}: loader unit {loader}\n{report[f'{tag} loader journal {engine}'].output}")
    unit = show(report, f"{tag} service show {engine}")
    if (unit.get("ActiveState"), unit.get("SubState")) != ("active", "running"):
        problems.append(f"{engine}: service {unit}\n{report[f'{tag} service journal {engine}'].output}")
    want = config_hex(image)
    got = listed(report, f"{tag} images {engine}").get(image.reference)
    if got != want:
        problems.append(f"{engine}: {image.reference} names {got}, expected {want}")
    running = report[f"{tag} running {engine}"]
    if running.status != 0 or running.output.strip().removeprefix("sha256:") != want:
        problems.append(f"{engine}: the container runs {running.output.strip()!r}, expected {want}")
    text = report[f"{tag} answer {engine}"]
    if text.status != 0 or content(engine, version) not in text.output.splitlines():
        problems.append(f"{engine}: the service answered (exit {text.status}): {text.output[-500:]!r}")
    return problems


def loaded_nothing(report: Report, tag: str, engine: str) -> list[str]:
    journal = report[f"{tag} loader journal {engine}"].output
    prefix = f"container-loader({package(engine)}): "
    if ": loaded (" in journal or f"{prefix}nothing to do: 1 image(s) already present" not in journal:
        return [f"{engine}: the loader did not find the image present:\n{journal}"]
    return []


def runs(journal: str, engine: str) -> int:
    """How many loader runs a loader unit's journal shows (each ends with one summary line)."""
    prefix = f"container-loader({package(engine)}): "
    return sum(
        1
        for line in journal.splitlines()
        if line.startswith(f"{prefix}nothing to do:")
        or (line.startswith(prefix) and " already present, " in line)
    )


def starts(journal: str) -> int:
    """How many times systemd started a service (its `Started …` lines)."""
    return sum(1 for line in journal.splitlines() if line.startswith("Started "))


# -- the tests -----------------------------------------------------------------------------------


def ready_seed(environ: dict[str, str] | None = None) -> int:
    """CONTAINER_LOCK_READY_SEED to replay a run's cut, else a new seed."""
    text = (os.environ if environ is None else environ).get(SEED_ENV, "").strip()
    if not text:
        return random.SystemRandom().randrange(1 << 32)
    try:
        return int(text, 0)
    except ValueError:
        raise ValueError(
            f"{SEED_ENV}={text!r} is not an integer: set it to the seed a run printed ('ready seed: …'), "
            "or unset it for a new one"
        ) from None


def _seed_note(seed: int) -> str:
    return f"ready seed: {SEED_ENV}={seed} draws the same power cut again"


@pytest.fixture(scope="module")
def seed(request: pytest.FixtureRequest) -> int:
    value = ready_seed()
    print_uncaptured(request, _seed_note(value))
    return value


@pytest.fixture(scope="module")
def boot_logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The boots' consoles and reports, under pytest's base temporary directory (it outlives the
    build tree)."""
    return tmp_path_factory.mktemp("ready-boots")


@pytest.fixture(autouse=True)
def _seed_in_failure_reports(request: pytest.FixtureRequest, seed: int, boot_logs: Path) -> None:
    request.node.add_report_section("setup", "seed", f"{_seed_note(seed)}\nboot logs: {boot_logs}")


@pytest.fixture(scope="module")
def built(registry: Registry, image_factory: ImageFactory) -> Built:
    return build_image(registry, image_factory)


@pytest.fixture(scope="module")
def main(built: Built, boot_logs: Path) -> Run:
    disk = disk_copy(built.disk, built.build.topdir / "main.img")
    return run_phases(disk, boot_logs, "main", ["first", "update"])


@pytest.fixture(scope="module")
def cut(built: Built, main: Run, boot_logs: Path, seed: int) -> tuple[Run, Run]:
    """A power cut during the first boot, then the next boot."""
    window = ready_window(main.markers)
    fraction = random.Random(f"{seed}:cut").uniform(0.0, CUT_REACH)
    disk = disk_copy(built.disk, built.build.topdir / "cut.img")
    pulled = cut_run(disk, boot_logs, fraction, window)
    return pulled, run_phases(disk, boot_logs, "after-cut", ["converge"])


def _say(capsys: pytest.CaptureFixture[str], *lines: str) -> None:
    with capsys.disabled():
        print("\n" + "\n".join(lines))


def test_first_boot_is_ready_without_loading(
    main: Run, built: Built, capsys: pytest.CaptureFixture[str]
) -> None:
    report = main.reports["first"]
    problems = []
    for engine in ENGINES:
        a = built.images.a[engine]
        problems += serving(report, "first", engine, a, "A")
        problems += loaded_nothing(report, "first", engine)
        records = report[f"first records {engine}"].output.splitlines()
        if f"{config_hex(a)} {a.reference}" not in records:  # preloaded = loaded, for pruning
            problems.append(f"{engine}: the loaders' record does not name A: {records}")
    assert not problems, "\n".join(problems)
    waits = ", ".join(f"{e} {report[f'first wait {e}'].output.strip()} s" for e in ENGINES)
    _say(
        capsys,
        f"ready: build {built.seconds:.0f} s; first boot: first loader start to both answering "
        f"{ready_window(main.markers):.1f} s (check unit waited: {waits}); "
        f"main run (2 boots) {main.seconds:.0f} s",
    )


def test_reboot_changes_nothing(main: Run, built: Built) -> None:
    report = main.reports["update"]
    problems = []
    for engine in ENGINES:
        problems += serving(report, "reboot", engine, built.images.a[engine], "A")
        problems += loaded_nothing(report, "reboot", engine)
        first = listed(main.reports["first"], f"first images {engine}")
        if listed(report, f"reboot images {engine}") != first:
            problems.append(
                f"{engine}: images changed across the reboot: {first} -> "
                + report[f"reboot images {engine}"].output
            )
    assert not problems, "\n".join(problems)


def test_update_by_package_restarts_on_b_and_prunes_a(
    main: Run, built: Built, capsys: pytest.CaptureFixture[str]
) -> None:
    setup = main.reports["update"]
    assert setup["dpkg"].status == 0, setup["dpkg"].output
    versions = dict(line.split() for line in setup["versions"].output.splitlines() if line.strip())
    assert versions == {package(e): "2.0" for e in ENGINES}, versions
    problems, lines = [], []
    for engine in ENGINES:
        a, b = config_hex(built.images.a[engine]), config_hex(built.images.b[engine])
        image_b = built.images.b[engine]
        problems += [f"after dpkg -i: {p}" for p in serving(setup, "installed", engine, image_b, "B")]
        journal = setup[f"installed loader journal {engine}"].output
        ref = image_b.reference
        prefix = f"container-loader({package(engine)}): "
        if f"{prefix}{ref}: loaded ({b})" not in journal:
            problems.append(f"{engine}: the update did not load B:\n{journal}")
        if f"{prefix}pruned {ref} ({a}): no installed package lists it" not in journal:
            problems.append(f"{engine}: the update did not prune A:\n{journal}")
        if a in ids(setup, f"installed images {engine}"):
            problems.append(f"{engine}: A is still in the store after the update")
        service_journal = setup[f"installed service journal {engine}"].output
        loader_runs, service_starts = runs(journal, engine), starts(service_journal)
        lines.append(
            f"  {engine}: during dpkg -i the loader ran {loader_runs} time(s), "
            f"{service(engine)} started {service_starts} time(s)"
        )
        # one restart transaction (debhelper's): the class's own repeat ran both twice
        if (loader_runs, service_starts) != (1, 1):
            problems.append(
                f"{engine}: loader runs {loader_runs}, service starts {service_starts}, expected 1, 1"
            )
    _say(capsys, "ready update (dpkg -i of both 2.0 packages):", *lines)
    assert not problems, "\n".join(problems)


def test_power_cut_during_first_boot_converges(
    cut: tuple[Run, Run], built: Built, seed: int, capsys: pytest.CaptureFixture[str]
) -> None:
    pulled, after = cut
    report = after.reports["converge"]
    problems = []
    for engine in ENGINES:
        problems += serving(report, "converge", engine, built.images.a[engine], "A")
    failed = report["converge failed"].output.strip()
    if failed:
        problems.append(f"failed units: {failed}")
    assert pulled.cut is not None
    _say(
        capsys,
        f"ready power cut: {pulled.cut['delay']} s after the first loader start (window "
        f"{pulled.cut['window']} s; services answered before the cut: {pulled.cut['answered_before']}); "
        f"next boot {'converged' if not problems else 'NOT converged'} ({after.seconds:.0f} s; seed {seed})",
    )
    assert not problems, "\n".join([*problems, _seed_note(seed)])
