"""Diff benchmark: `container-lock diff OLD NEW` of two release SBOMs of N images each (one run).

The images are those of benchmarks/sbom.py (a Debian bookworm base of ~200 dpkg packages over
three layers per image). NEW re-pins every fifth image (a new top layer; three packages upgraded,
one downgraded, one added, one removed), drops every 25th and adds N/25 new ones. Both SBOMs
are made by `container-lock sbom` (not timed); then `container-lock diff OLD NEW --json` runs
as a subprocess (process start, reading both SBOMs, the diff, the JSON), `--runs` times, the
fastest counting. Prints per N: wall and CPU time, wall per image, the marginal cost per image
((T(N) − T(smallest)) / (N − smallest)), the SBOM size, and the ratio of the marginal cost per
image at the largest N to that at the middle one (a quadratic step shows as ≫ 1), and what
decoding the two SBOMs (reading the files and `json.loads`, as changes/read.py does, in this
process, fastest of `--runs`) costs, as a share of the diff's wall time.
Run: `.venv/bin/python -m benchmarks.diff [--images 10 100 1000] [--packages 200] [--runs 3]`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import machine
from benchmarks.sbom import PER_PACKAGE, command, digest, image_facts
from containerlock.payload.archive import MANIFEST_VERSION
from sbom.memory import no_cycle_collection


def decoding(sboms: list[str], runs: int) -> float:
    """Fastest of `runs` wall times of reading and decoding the SBOMs, as the diff does."""
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        with no_cycle_collection():
            for sbom in sboms:
                json.loads(Path(sbom).read_bytes())
        best = min(best, time.perf_counter() - start)
    return best


def repinned(facts: dict[str, Any], n: int) -> dict[str, Any]:
    """`facts` at a new digest: a new top layer, packages upgraded, downgraded, added, removed."""
    facts = json.loads(json.dumps(facts))
    facts["manifest"] = digest("manifest", n, "new")
    facts["digest"] = digest("index", n, "new") if n % 2 else facts["manifest"]
    top = digest("layer", n, 2, "new")
    facts["layers"][2]["digest"] = top
    packages = facts["inventory"]["packages"]
    for package in packages[:3]:
        package["version"] += ".1"  # upgraded
    packages[3]["version"] = "0:0.0.1-1"  # downgraded
    removed = packages.pop(4)
    packages.append({**removed, "name": f"new-in-{n}", "version": "1.0-1", "layer": top})
    packages.sort(key=lambda f: f["name"])
    return facts


def release(images: int, packages: int, new: bool) -> list[dict[str, Any]]:
    """The image facts of the OLD or the NEW release."""
    found = []
    for n in range(images):
        if new and n % 25 == 24:
            continue  # removed
        facts = image_facts(n, packages)
        found.append(repinned(facts, n) if new and n % 5 == 0 else facts)
    if new:
        found += [image_facts(images + n, packages) for n in range(max(1, images // 25))]
    return found


def write_release(deploy: Path, facts: list[dict[str, Any]]) -> None:
    deploy.mkdir(parents=True)
    for p in range(0, len(facts), PER_PACKAGE):
        doc = {
            "version": MANIFEST_VERSION,
            "package": {"name": f"pkg{p // PER_PACKAGE:03d}", "version": "1.0", "arch": "amd64"},
            "engine": "podman",
            "source_date_epoch": 1700000000,
            "images": facts[p : p + PER_PACKAGE],
        }
        (deploy / f"pkg{p // PER_PACKAGE:03d}.json").write_text(json.dumps(doc, sort_keys=True))


def run(out: Path, *args: str) -> tuple[float, float]:
    """Wall and CPU seconds (user + system) of one `container-lock` child writing stdout to `out`."""
    start = time.perf_counter()
    with out.open("wb") as stdout:
        child = subprocess.Popen([*command(), *args], stdout=stdout, stderr=subprocess.PIPE)
        _, status, usage = os.wait4(child.pid, 0)
    elapsed = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    if code:
        stderr = child.stderr.read().decode() if child.stderr else ""
        raise SystemExit(f"container-lock {args[0]} failed ({code}): {stderr}")
    return elapsed, usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--packages", type=int, default=200)
    parser.add_argument("--runs", type=int, default=3, help="runs per size; the fastest counts")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="cl-bench-diff."))
    print(f"machine: {machine()}")
    print(
        f"{args.packages} dpkg packages and 3 layers per image; NEW re-pins 1 in 5, drops 1 in 25, adds N/25"
    )
    sizes = sorted(set(args.images))
    results: dict[int, tuple[float, float, float, dict[str, Any]]] = {}
    decode: dict[int, float] = {}
    try:
        for n in sizes:
            base = workdir / f"n{n}"
            sboms = []
            for side in ("old", "new"):
                write_release(base / side / "container-lock", release(n, args.packages, side == "new"))
                sbom = base / f"{side}.cdx.json"
                run(base / "sbom.out", "sbom", "--deploy-dir", str(base / side), "-o", str(sbom))
                sboms.append(str(sbom))
            timings = [run(base / "diff.json", "diff", *sboms, "--json") for _ in range(args.runs)]
            report = json.loads((base / "diff.json").read_text())
            size = Path(sboms[1]).stat().st_size / 1e6
            results[n] = (min(t for t, _ in timings), min(c for _, c in timings), size, report)
            decode[n] = decoding(sboms, args.runs)
            shutil.rmtree(base)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    low = sizes[0]
    wall = {n: r[0] for n, r in results.items()}
    print(
        f"{'images':>7} {'wall s':>8} {'CPU s':>8} {'ms/image':>9} {'marginal ms/image':>18} "
        f"{'SBOM MB':>8}  diff"
    )
    for n in sizes:
        _, cpu, size, report = results[n]
        marginal = (wall[n] - wall[low]) / (n - low) * 1e3 if n > low else float("nan")
        images = report["images"]
        changes = sum(len(r["packages"][c]) for r in images["repinned"] for c in r["packages"])
        print(
            f"{n:>7} {wall[n]:>8.2f} {cpu:>8.2f} {wall[n] / n * 1e3:>9.2f} {marginal:>18.2f} {size:>8.1f}  "
            f"{len(images['repinned'])} re-pinned, {len(images['added'])} added, "
            f"{len(images['removed'])} removed, {changes} package changes, "
            f"{report['update']['bytes'] / 1e6:.1f} MB to download"
        )
    if len(sizes) >= 3:
        mid, high = sizes[-2], sizes[-1]
        ratio = ((wall[high] - wall[low]) / (high - low)) / ((wall[mid] - wall[low]) / (mid - low))
        print(f"marginal cost per image, {high} vs {mid} images: {ratio:.2f}x")
    for n in sizes:
        print(
            f"{n} images: decoding the two SBOMs (read + json.loads) {decode[n]:.2f} s = "
            f"{decode[n] / wall[n]:.0%} of the diff's wall time"
        )
    goal = 100 if 100 in wall else None
    if goal:
        print(
            f"goal: diff of two 100-image SBOMs < 1 s: {wall[100]:.2f} s "
            f"({'met' if wall[100] < 1 else 'NOT met'})"
        )


if __name__ == "__main__":
    main()
