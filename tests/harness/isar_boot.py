"""Boot an Isar qemuamd64 image under qemu (TCG) and read what the guest reports.

The guest's console is the first serial port (written to `console.log`). A test unit in the
image writes its observations to the second serial port (`report.log`), in blocks:

    @@CLTEST begin boot=<n>
    @@CLTEST section <name>
    <raw output of one command>
    @@CLTEST exit <status>
    ...
    @@CLTEST end boot=<n>

so the host parses plain text that the kernel and getty never interleave with, and asserts on
it. `-snapshot` keeps the built disk image unchanged; guest reboots keep the snapshot, because
they happen inside one qemu process. For state that must outlive a qemu process (a power cut is
`QemuVM.kill()`: SIGKILL to qemu), boot a copy of the image (`disk_copy()`) with `snapshot=False`.
`fw_cfg` entries and SMBIOS OEM strings pass per-start settings to the guest, and `markers=True`
adds a third serial port (`markers.log`) for short time-stamped lines the guest writes while the
report port is in use.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.harness import processes

MARK = "@@CLTEST"
OVMF = Path("/usr/share/ovmf/OVMF.fd")
QEMU = "qemu-system-x86_64"

_BEGIN = re.compile(rf"^{MARK} begin boot=(\d+)$")
_END = re.compile(rf"^{MARK} end boot=(\d+)$")
_SECTION = re.compile(rf"^{MARK} section (.+)$")
_EXIT = re.compile(rf"^{MARK} exit (\d+)$")


@dataclass(frozen=True)
class Section:
    """One command's combined output and exit status, as the guest ran it."""

    output: str
    status: int


@dataclass(frozen=True)
class Report:
    """Everything the guest reported during one boot."""

    boot: int
    sections: dict[str, Section]

    def __getitem__(self, name: str) -> Section:
        if name not in self.sections:
            raise KeyError(f"boot {self.boot} reported no section {name!r}; it has {sorted(self.sections)}")
        return self.sections[name]


def parse_reports(text: str) -> list[Report]:
    """The complete reports (begin … end) in `text`, in order; an unfinished one is left out."""
    reports: list[Report] = []
    boot: int | None = None
    sections: dict[str, Section] = {}
    name: str | None = None
    lines: list[str] = []
    for raw in text.replace("\r", "").split("\n"):
        line = raw.strip("\x00")
        if m := _BEGIN.match(line):
            boot, sections, name, lines = int(m[1]), {}, None, []
        elif boot is None:
            continue
        elif m := _SECTION.match(line):
            name, lines = m[1], []
        elif (m := _EXIT.match(line)) and name is not None:
            sections[name] = Section("\n".join(lines), int(m[1]))
            name = None
        elif (m := _END.match(line)) and int(m[1]) == boot:
            reports.append(Report(boot, sections))
            boot = None
        elif name is not None:
            lines.append(line)
    return reports


def isar_environment(isar: Path) -> dict[str, str]:
    """What `. isar-init-build-env` exports that a full image build needs, for `IsarBuild.env`.

    Isar's tasks call `${SCRIPTSDIR}/lockrun.py` (bootstrap, rootfs, imager) and wic finds its
    helpers on PATH; bitbake keeps these variables only when BB_ENV_PASSTHROUGH_ADDITIONS names them.
    """
    scripts, bitbake = isar / "scripts", isar / "bitbake"
    return {
        "SCRIPTSDIR": str(scripts),
        "BITBAKEDIR": str(bitbake),
        "TESTSUITEDIR": str(isar / "testsuite"),
        "PATH": f"{bitbake / 'bin'}:{scripts}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "BB_ENV_PASSTHROUGH_ADDITIONS": "BITBAKEDIR SCRIPTSDIR TESTSUITEDIR",
    }


def require_tools() -> None:
    """Fail (never skip) with a clear message when qemu or the UEFI firmware is missing."""
    missing = [QEMU] if shutil.which(QEMU) is None else []
    if not OVMF.is_file():
        missing.append(f"{OVMF} (package ovmf)")
    if missing:
        raise AssertionError(
            f"booting the image needs {', '.join(missing)} (apt-get install qemu-system-x86 ovmf)"
        )


def disk_copy(source: Path, path: Path, size: int | None = None) -> Path:
    """A sparse copy of the raw disk image `source` at `path`, grown to `size` bytes if given, for a
    guest whose writes must persist across qemu processes while `source` stays as it is."""
    subprocess.run(["cp", "--sparse=always", str(source), str(path)], check=True, capture_output=True)
    if size is not None and size > path.stat().st_size:
        with path.open("r+b") as disk:
            disk.truncate(size)
    return path


class QemuVM:
    """qemu-system-x86_64 with TCG, UEFI, the disk image as a snapshot, no display.

    The NIC is qemu's user-mode network with `restrict=on`: the guest gets an address by DHCP
    (so `network-online.target` is reached) and no route anywhere. With `snapshot=False` the
    guest writes to `disk` (a `disk_copy()`); `fw_cfg` maps names (`opt/cltest/x`) to
    strings the guest reads under /sys/firmware/qemu_fw_cfg/by_name/; `oem_strings` become SMBIOS
    type 11 strings.
    """

    def __init__(
        self,
        disk: Path,
        workdir: Path,
        memory_mb: int = 2048,
        cpus: int = 2,
        *,
        snapshot: bool = True,
        fw_cfg: Mapping[str, str] | None = None,
        oem_strings: Iterable[str] = (),
        markers: bool = False,
    ) -> None:
        self.disk = disk
        self.workdir = workdir
        self.memory_mb = memory_mb
        self.cpus = cpus
        self.snapshot = snapshot
        self.fw_cfg = dict(fw_cfg or {})
        self.oem_strings = list(oem_strings)
        self.console = workdir / "console.log"
        self.report = workdir / "report.log"
        self.markers = workdir / "markers.log" if markers else None
        self.stderr = workdir / "qemu.stderr"
        self._process: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        """The qemu command line."""
        fmt = "qcow2" if self.disk.suffix == ".qcow2" else "raw"
        extra: list[str] = [] if not self.snapshot else ["-snapshot"]
        for name, value in self.fw_cfg.items():
            extra += ["-fw_cfg", f"name={name},string={value.replace(',', ',,')}"]
        for value in self.oem_strings:
            extra += ["-smbios", f"type=11,value={value.replace(',', ',,')}"]
        if self.markers is not None:
            extra += ["-serial", f"file:{self.markers}"]
        return [
            QEMU,
            "-accel", "tcg",
            "-M", "q35",
            "-m", str(self.memory_mb),
            "-smp", str(self.cpus),
            "-bios", str(OVMF),
            "-drive", f"file={self.disk},format={fmt},if=ide",
            "-nic", "user,model=virtio-net-pci,restrict=on",
            "-display", "none",
            "-monitor", "none",
            "-serial", f"file:{self.console}",
            "-serial", f"file:{self.report}",
            *extra,
        ]  # fmt: skip

    def start(self) -> QemuVM:
        """Start qemu in the background."""
        require_tools()
        self.workdir.mkdir(parents=True, exist_ok=True)
        with self.stderr.open("wb") as err:
            self._process = subprocess.Popen(
                self.command(), stdin=subprocess.DEVNULL, stdout=err, stderr=subprocess.STDOUT
            )
        return self

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def _text(self, path: Path) -> str:
        return path.read_bytes().decode(errors="replace") if path.exists() else ""

    def console_tail(self, chars: int = 4000) -> str:
        """The end of the guest's console output (and qemu's own messages), for failure messages."""
        return f"{self._text(self.stderr)[-1000:]}\n--- console ---\n{self._text(self.console)[-chars:]}"

    def reports(self) -> list[Report]:
        """The complete reports the guest has written so far."""
        return parse_reports(self._text(self.report))

    def wait_for_report(self, boot: int, deadline: float) -> Report:
        """Wait (until the monotonic `deadline`) for the report of boot number `boot`."""
        while True:
            found = [r for r in self.reports() if r.boot == boot]
            if found:
                return found[-1]
            if not self.running:
                raise AssertionError(f"qemu ended before boot {boot} reported:\n{self.console_tail()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no report of boot {boot} in time:\n{self.console_tail()}")
            time.sleep(2)

    def wait_exit(self, deadline: float) -> int:
        """Wait (until the monotonic `deadline`) for the guest to power off; qemu's exit status."""
        assert self._process is not None, "qemu was not started"
        try:
            return self._process.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the guest did not power off in time:\n{self.console_tail()}") from None

    def marker_lines(self) -> list[str]:
        """The complete lines the guest wrote to the third serial port so far (`markers=True`)."""
        text = self._text(self.markers) if self.markers is not None else ""
        return [line.strip("\r\x00") for line in text.split("\n")[:-1] if line.strip("\r\x00")]

    def kill(self) -> None:
        """Pull the plug: SIGKILL to qemu (no shutdown, nothing flushed by the guest after this)."""
        assert self._process is not None, "qemu was not started"
        self._process.send_signal(signal.SIGKILL)
        self._process.wait()

    def close(self) -> None:
        """Stop qemu if it still runs."""
        process, self._process = self._process, None
        processes.stop(process)

    def __enter__(self) -> QemuVM:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def print_uncaptured(request: pytest.FixtureRequest, text: str) -> None:
    """Print `text` past pytest's capture (a seed must show even in a passing, quiet run)."""
    capture = request.config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled():
        print(f"\n{text}", flush=True)
