"""Build farm benchmark (issue 20): builder 2's wall time with a shared sstate mirror.

Real Isar master (qemuamd64, bookworm, as the build user), one podman-loader recipe with the
~100 MB compressible image (pinned) from a loopback registry:

1. builder 1 (this layer) builds the recipe (`bitbake <pn>`) with SSTATE_DIR in a shared
   directory; builder 1' does the same with the layer as it was before sstate support
   (`--baseline-rev`, default: the commit before it), same SSTATE_DIR (Isar's bootstrap and
   sbuild chroot come from it);
2. builder 2 and builder 2' — new build directories, empty DL_DIR, the shared SSTATE_DIR as a
   file:// SSTATE_MIRRORS entry — build the same recipe: wall time of `bitbake <pn>` (after a
   `bitbake -p`, so parsing is not in it; median of --runs new directories), the tasks of the
   recipe they ran, and the registry requests (access log) and bytes they caused.

Run: `.venv/bin/python -m benchmarks.sstate [--size-mb 100] [--runs 3] [--baseline-rev a00b307]`.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path

from benchmarks.common import machine, pinned_url, registry_with_factory
from tests.harness import farm
from tests.harness.isar import (
    REPO,
    IsarBuild,
    give_to_build_user,
    isar_checkout,
    loader_recipe,
    work_dir,
    work_root,
)
from tests.harness.registry import Registry

PN = "cl-bench-farm"
BASELINE = "a00b307"  # the last commit without the loader's sstate tasks


def baseline_layer(rev: str) -> Path:
    """The layer (`meta/`) at `rev`, unpacked where the build user can read it."""
    dest = work_root() / f"layer-{rev}"
    command = ["git", "-C", str(REPO), "archive", rev, "meta"]
    archive = subprocess.run(command, capture_output=True, check=True)
    with tarfile.open(fileobj=BytesIO(archive.stdout)) as tar:
        tar.extractall(dest, filter="tar")
    give_to_build_user(dest)
    return dest / "meta"


def timed(build: IsarBuild, registry: Registry) -> tuple[float, list[str], int, int]:
    """`bitbake PN` after a `bitbake -p` (parse cache warm): seconds, the recipe's tasks it ran,
    registry requests and bytes sent."""
    build.bitbake("-p").check()
    mark = registry.mark()
    start = time.monotonic()
    result = build.bitbake(PN)
    seconds = time.monotonic() - start
    result.check()
    requests = registry.requests(mark)
    return seconds, result.executed(PN), len(requests), sum(r.size for r in requests)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size-mb", type=int, default=100)
    parser.add_argument("--runs", type=int, default=3, help="builder 2 runs (new directories) per layer")
    parser.add_argument("--baseline-rev", default=BASELINE)
    args = parser.parse_args()
    print(f"machine: {machine()}")
    isar = isar_checkout("master")
    old_layer = baseline_layer(args.baseline_rev)
    with registry_with_factory(Path(tempfile.mkdtemp(prefix="cl-bench-sstate."))) as (registry, factory):
        image = factory.large_compressible("bench/farm-large", size_mb=args.size_mb)
        recipe = loader_recipe("podman", pinned_url(image))
        shared = work_dir("bench-sstate")
        rows = []
        for label, layer in (("this layer", None), (f"layer at {args.baseline_rev}", old_layer)):

            def builder(name: str, layer: Path | None = layer, **where: Path) -> IsarBuild:
                build = farm.builder(isar, name, registry.host, **where)
                if layer is not None:
                    build.cl_layer = layer
                build.add_recipe(PN, recipe)
                return build

            seconds_1, _, requests_1, bytes_1 = timed(builder("bench-first", sstate_dir=shared), registry)
            print(f"{label}: builder 1 {seconds_1:.1f} s ({requests_1} requests, {bytes_1 / 1e6:.1f} MB)")
            seconds: list[float] = []
            for _ in range(args.runs):
                second = builder("bench-second", mirror=shared)
                seconds_2, ran_2, requests_2, bytes_2 = timed(second, registry)
                shutil.rmtree(second.topdir, ignore_errors=True)
                seconds.append(seconds_2)
                print(f"{label}: builder 2 {seconds_2:.1f} s, {requests_2} requests, ran {', '.join(ran_2)}")
            rows.append((label, seconds_1, statistics.median(seconds), requests_2, bytes_2))
    print(f"\nimage: {args.size_mb} MiB compressible content, pinned; podman-loader (recompress, zstd -3)")
    print(f"builder 2: median of {args.runs} (each a new build directory, parse cache warm)")
    print("| layer | builder 1 | builder 2 (sstate mirror) | builder 2 registry requests | bytes |")
    print("| --- | --- | --- | --- | --- |")
    for label, s1, s2, r2, b2 in rows:
        print(f"| {label} | {s1:.1f} s | {s2:.1f} s | {r2} | {b2 / 1e6:.1f} MB |")


if __name__ == "__main__":
    main()
