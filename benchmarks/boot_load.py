"""First-boot time on the booted device: the loader vs a bare `engine load` (issue 24 item 3).

The image of tests/test_isar_lifetime.py (upstream Isar master, qemuamd64, bookworm, TCG, 2 vCPUs,
2 GB) carries `cltest-bench-docker` and `cltest-bench-podman`: five images each (8 MiB of
incompressible data in one layer each, plus a small base), each package with its class's default
payload (docker: the registry's gzip layers; podman: a recompressed zstd archive). Their units are
held back at boot; in the guest, for each engine and repetition, with the images removed (podman:
its whole store, as on a first boot), `sync` and the page cache dropped before each run:

- `loader`: `systemctl restart cltest-bench-<engine>` (the unit's start to all five images loaded,
  tagged, verified, recorded, pruning done: the time from the loader's start to all images usable),
  with the class's default CONTAINER_LOADER_JOBS (docker-loader 2 at a time, podman-loader 1);
- `loader1`: the same with CONTAINER_LOADER_JOBS=1 (`systemctl set-environment`): one at a time;
- `bare`: the same archives by hand, one after the other: `zstd -dc <archive> | <engine> load`
  (podman) or `<engine> load < <archive>` (docker);
- `pairs`: the same, two loads at a time.

The order of the four turns with each repetition. Printed: medians (guest clock), loader / bare
(goal ≤ 1.1×), loader1 / bare and pairs / bare.

Run: `.venv/bin/python -m benchmarks.boot_load [--reps 4] [--disk <lifetime .wic>]`; without
`--disk` it builds the image first (a registry on loopback, ~10 min). A kept build of the test
(`CONTAINER_LOCK_KEEP_ISAR=1`) has the `.wic` under `<work dir>/lifetime-*/tmp/deploy/images/`.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from benchmarks.common import machine, registry_with_factory
from tests.harness.isar_boot import Section, disk_copy, parse_reports
from tests.test_isar_lifetime import (
    BENCH_IMAGES,
    BENCH_MIB,
    BOOT_TIMEOUT,
    DISK_SIZE,
    ENGINES,
    boot,
    build_image,
)

KINDS = ("loader", "loader1", "bare", "pairs")


def parse(section: Section, journal: str = "") -> dict[tuple[str, str], list[float]]:
    """Seconds per (engine, kind) from the guest's `bench` section; every run must have succeeded
    and left all images present (the loader's own exit status says its references verified)."""
    times: dict[tuple[str, str], list[float]] = {}
    for line in section.output.splitlines():
        words = line.split()
        if len(words) != 8:
            continue
        _rep, engine, kind, t0, t1, rc, _refs, ids = words
        if rc != "0" or ids != str(BENCH_IMAGES):
            raise SystemExit(f"{engine} {kind}: exit {rc}, {ids} images\n{section.output}\n{journal[-3000:]}")
        times.setdefault((engine, kind), []).append(float(t1) - float(t0))
    return times


def measure(disk: Path, workdir: Path, reps: int) -> dict[tuple[str, str], list[float]]:
    """Boot a copy of `disk` once and run the guest's benchmark; seconds per (engine, kind)."""
    start = time.monotonic()
    booted = boot(
        disk_copy(disk, workdir / "bench.img", DISK_SIZE),
        workdir,
        "bench",
        f"prepare bench reps={reps}",
        timeout=BOOT_TIMEOUT + reps * 8 * 90.0,  # 2 engines x 4 kinds a repetition
    )
    print(f"boot and benchmark: {time.monotonic() - start:.0f} s")
    return parse(booted.report["bench"], booted.report["bench journal"].output)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=4)
    parser.add_argument("--disk", type=Path, help="the lifetime test's .wic (else it is built)")
    parser.add_argument("--report", type=Path, help="summarize the report.log of an earlier run instead")
    args = parser.parse_args()
    print(machine())
    if args.report:
        summarize(parse(parse_reports(args.report.read_text(errors="replace"))[0]["bench"]), args.reps)
        return
    with tempfile.TemporaryDirectory(prefix="cl-bench-boot.") as tmp:
        workdir = Path(tmp)
        if args.disk:
            disk = args.disk
        else:
            with registry_with_factory(workdir) as (registry, factory):
                built = build_image(registry, factory, "bootbench")
            print(f"image built in {built.seconds:.0f} s")
            disk = built.disk
        times = measure(disk, workdir, args.reps)
    summarize(times, args.reps)


def summarize(times: dict[tuple[str, str], list[float]], reps: int) -> None:
    print(f"{BENCH_IMAGES} images x {BENCH_MIB} MiB, medians of {reps} (runs in parentheses), guest clock:")
    for engine in ENGINES:
        med = {kind: statistics.median(times[(engine, kind)]) for kind in KINDS}
        runs = {kind: " / ".join(f"{t:.2f}" for t in times[(engine, kind)]) for kind in KINDS}
        print(
            f"  {engine}: loader {med['loader']:.2f} s ({runs['loader']}), loader one at a time "
            f"{med['loader1']:.2f} s ({runs['loader1']}), bare {med['bare']:.2f} s ({runs['bare']}), "
            f"bare two at a time {med['pairs']:.2f} s ({runs['pairs']}); "
            f"loader / bare {med['loader'] / med['bare']:.2f}x, "
            f"loader1 / bare {med['loader1'] / med['bare']:.2f}x, "
            f"pairs / bare {med['pairs'] / med['bare']:.2f}x"
        )


if __name__ == "__main__":
    main()
