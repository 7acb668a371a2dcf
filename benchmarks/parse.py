"""Parse cost of the layer: `bitbake -p` with and without it, cold and warm cache (goal ≤ 1.03× cold).

Two trees, each parsed in fresh build directories (one with the layer in BBLAYERS, one without,
otherwise identical):
- OE-Core (default scarthgap, bitbake 2.8; from ../shared/oe or OE_DIR) for qemuarm64 with all of
  OE-Core's recipes and a test layer of four docker:// recipes (three pinned, one tag-only, so that
  strict mode writes its parse-time note; without the layer, which OE cannot parse without its
  fetcher, the same recipes with an empty SRC_URI), set up by tests/harness/oe.py;
- Isar master (bitbake 2.8) with meta-isar for qemuamd64 (its prebuilt-*-img recipes have docker://
  URLs), set up by tests/harness/isar.py.
Cold: the first `bitbake -p` of a new build directory (no parse or codeparser cache). Warm: the
next `bitbake -p`, which should parse no recipe; when it does parse some, one more run shows
whether that settles (BitBake 2.18 re-parses once: see benchmarks/README.md). Each run is timed
as wall time and as CPU time of the bitbake client, its server and the server's parser processes
(read from /proc while the server runs: the server is a daemon, not our child), which other load
on the machine disturbs less. Before the timed runs an untimed `bitbake -e` per tree compiles
BitBake's modules and reads the tree once. One run per configuration, interleaved.
Run: `.venv/bin/python -m benchmarks.parse [--only oe|isar] [--oe-release scarthgap|wrynose]`.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from benchmarks.common import machine
from tests.harness import isar as isar_harness
from tests.harness import oe as oe_harness
from tests.harness.bbparse import parse_counts

VARIANTS = ("without", "with")
_DIGEST = "sha256:" + "0" * 64


@dataclass(frozen=True)
class Parse:
    """One `bitbake -p`: wall and CPU seconds, recipes parsed (not served from the cache)."""

    wall: float
    cpu: float
    parsed: int
    recipes: int | None  # None when BitBake printed no parse summary (everything was cached)

    def describe(self) -> str:
        return f"{self.wall:6.1f} s wall, {self.cpu:6.1f} s CPU, parsed {self.parsed}"


def _server_pid(topdir: Path) -> int | None:
    try:
        first = (topdir / "bitbake.lock").read_text().split()[:1]
    except OSError:
        return None
    return int(first[0]) if first and first[0].isdigit() else None


def _proc_cpu(pid: int) -> tuple[float, bool] | None:
    """(CPU seconds of `pid` and of its reaped children, still running?) or None if gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    ticks = sum(int(f) for f in fields[11:15])  # utime stime cutime cstime
    return ticks / os.sysconf("SC_CLK_TCK"), fields[0] != "Z"


class ServerCpu:
    """Samples the CPU time of the bitbake server(s) of `topdir` until stopped; the total."""

    def __init__(self, topdir: Path) -> None:
        self.topdir = topdir
        self.seen: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.05):
            pid = _server_pid(self.topdir)
            cpu = _proc_cpu(pid) if pid else None
            if pid and cpu:
                self.seen[pid] = max(self.seen.get(pid, 0.0), cpu[0])

    def start(self) -> ServerCpu:
        self._thread.start()
        return self

    def finish(self, timeout: float = 120.0) -> float:
        """Wait for the server to exit (it saves the caches first); its CPU seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pid = _server_pid(self.topdir)
            state = _proc_cpu(pid) if pid else None
            if state is None or not state[1]:
                break
            time.sleep(0.05)
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        return sum(self.seen.values())


def timed_parse(topdir: Path, run: Callable[[], str]) -> Parse:
    """Run one `bitbake -p` (`run` returns its output) and time it with its server."""
    ServerCpu(topdir).finish()  # a previous server still exiting would delay this one
    sampler = ServerCpu(topdir).start()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    output = run()
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    client = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    server = sampler.finish()
    counts = parse_counts(output)
    return Parse(wall, client + server, counts.parsed, counts.recipes)


# -- the two trees ---------------------------------------------------------------------------


class OEParse:
    """Build directories for one OE-Core tree, with and without the layer."""

    def __init__(self, release: str, workdir: Path) -> None:
        self.user = oe_harness.BuildUser.for_this_process()
        if os.environ.get("OE_DIR"):
            release = oe_harness.CUSTOM
        self.tree = oe_harness.oe_tree(release, workdir / "oe", self.user)
        self.workdir = workdir
        self.layer = oe_harness.layer_under_test()

    @property
    def title(self) -> str:
        version = isar_harness.bitbake_version(self.tree.root)
        return f"OE-Core {self.tree.release} (bitbake {version}), MACHINE qemuarm64, all of OE-Core's recipes"

    def build(self, variant: str, core_recipes: bool = True) -> oe_harness.OEBuild:
        build = oe_harness.OEBuild(self.tree, self.workdir / variant, self.user, self.layer)
        if variant != "with":  # the same bblayers.conf without the layer
            conf = build.topdir / "conf" / "bblayers.conf"
            conf.write_text(conf.read_text().replace(f"    {self.layer} \\\n", ""))
        # Without the layer OE has no docker:// fetcher: the same recipes with an empty SRC_URI.
        urls = {f"cl-bench-pinned{n}": f"bench/p{n};tag=1;digest={_DIGEST}" for n in range(3)}
        urls["cl-bench-unpinned"] = "bench/unpinned;tag=1"
        for name, url in urls.items():
            build.write_recipe(name, [f"docker://127.0.0.1:5000/{url}"] if variant == "with" else [])
        build.configure("qemuarm64", core_recipes=core_recipes)
        return build

    def warm_up(self) -> None:
        build = self.build("warm-up", core_recipes=False)
        run = build.bitbake("-e", timeout=oe_harness.PARSE_TIMEOUT)
        if not run.ok:
            raise RuntimeError(run.describe())

    def parser(self, variant: str) -> Callable[[], Parse]:
        """A new build directory for `variant`; each call of the result is one timed `bitbake -p`."""
        build = self.build(variant)

        def run() -> str:
            result = build.bitbake("-p", timeout=oe_harness.PARSE_TIMEOUT)
            if not result.ok or result.errors():
                raise RuntimeError(result.describe())
            return result.output

        return lambda: timed_parse(build.topdir, run)


class IsarParse:
    """Build directories for Isar master with meta-isar, with and without the layer."""

    def __init__(self) -> None:
        self.isar = isar_harness.isar_checkout("master")

    @property
    def title(self) -> str:
        version = isar_harness.bitbake_version(self.isar)
        return f"Isar master (bitbake {version}), meta-isar, MACHINE qemuamd64, {isar_harness.DEFAULT_DISTRO}"

    def build(self, variant: str) -> isar_harness.IsarBuild:
        topdir = isar_harness.work_dir(f"parse-{variant}")
        return isar_harness.IsarBuild(
            self.isar, topdir, machine="qemuamd64", cl_layer=variant == "with" or None
        )

    def warm_up(self) -> None:
        self.build("warm-up").bitbake("-e").check()

    def parser(self, variant: str) -> Callable[[], Parse]:
        """A new build directory for `variant`; each call of the result is one timed `bitbake -p`."""
        build = self.build(variant)

        def run() -> str:
            result = build.bitbake("-p").check()
            if result.errors():
                raise RuntimeError(result.tail())
            return result.output

        return lambda: timed_parse(build.topdir, run)


# -- report ----------------------------------------------------------------------------------


@dataclass
class Runs:
    """One variant's parses: cold ones (one per new build directory), then warm re-runs of the first."""

    cold: list[Parse]
    warm: list[Parse]

    @property
    def cold_wall(self) -> float:
        return statistics.median(p.wall for p in self.cold)

    @property
    def cold_cpu(self) -> float:
        return statistics.median(p.cpu for p in self.cold)


def measure(tree: OEParse | IsarParse, cold_runs: int) -> dict[str, Runs]:
    """Per variant: `cold_runs` cold parses (interleaved with the other variant's), the first
    build directory's warm re-run, and a second one only when the first parsed recipes."""
    tree.warm_up()
    runs = {v: Runs([], []) for v in VARIANTS}
    first: dict[str, Callable[[], Parse]] = {}
    for _ in range(cold_runs):
        for variant in VARIANTS:
            parse = tree.parser(variant)
            first.setdefault(variant, parse)
            runs[variant].cold.append(parse())
    for round_ in range(2):
        for variant in VARIANTS:
            if round_ == 0 or runs[variant].warm[0].parsed:
                runs[variant].warm.append(first[variant]())
    return runs


def report(title: str, runs: dict[str, Runs]) -> None:
    count = len(runs["with"].cold)
    print(f"{title}: {runs['with'].cold[0].recipes} recipes")
    for variant in VARIANTS:
        r = runs[variant]
        cold = (
            r.cold[0].describe()
            if count == 1
            else (
                f"{r.cold_wall:6.1f} s wall, {r.cold_cpu:6.1f} s CPU (medians of {count}), "
                f"parsed {r.cold[0].parsed}"
            )
        )
        line = f"  {variant:>7} layer  cold: {cold}  |  warm: {r.warm[0].describe()}"
        if len(r.warm) > 1:
            line += f"  |  warm again: {r.warm[1].describe()}"
        print(line)
    with_, without = runs["with"], runs["without"]
    print(
        f"  cold ratio with/without: wall {with_.cold_wall / without.cold_wall:.3f}x, "
        f"CPU {with_.cold_cpu / without.cold_cpu:.3f}x (goal <= 1.03x)"
    )
    if count > 1:
        cpu = ", ".join(f"{w.cpu / wo.cpu:.3f}" for w, wo in zip(with_.cold, without.cold, strict=True))
        print(f"  cold CPU ratios of the {count} pairs: {cpu}")
    print(
        f"  warm re-run parsed: with {with_.warm[0].parsed}, without {without.warm[0].parsed} (goal 0); "
        f"warm wall with/without {with_.warm[0].wall / without.warm[0].wall:.2f}x"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", choices=("oe", "isar"))
    parser.add_argument("--oe-release", default="scarthgap", choices=sorted(oe_harness.RELEASES))
    parser.add_argument("--oe-runs", type=int, default=1, help="cold OE parses per variant (median)")
    parser.add_argument("--isar-runs", type=int, default=5, help="cold Isar parses per variant (median)")
    parser.add_argument("--keep", action="store_true", help="keep the build directories")
    args = parser.parse_args()
    if args.keep:
        os.environ["CONTAINER_LOCK_KEEP_ISAR"] = "1"
    print(f"machine: {machine()}", flush=True)
    if args.only != "isar":
        workdir = oe_harness.new_workdir(oe_harness.BuildUser.for_this_process())
        try:
            oe = OEParse(args.oe_release, workdir)
            report(oe.title, measure(oe, args.oe_runs))
        finally:
            if args.keep:
                print(f"OE build directories kept in {workdir}")
            else:
                shutil.rmtree(workdir, ignore_errors=True)
    if args.only != "oe":
        isar = IsarParse()
        report(isar.title, measure(isar, args.isar_runs))
        if args.keep:
            print(f"Isar build directories kept in {isar_harness.work_root()}")


if __name__ == "__main__":
    main()
