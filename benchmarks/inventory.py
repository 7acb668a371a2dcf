"""Inventory benchmark: listing an image's packages vs reading its layers once (`zcat | tar t`).

Two images as OCI layouts on disk (no registry): the ~100 MB compressible one (three
gzip layers) and a real Debian bookworm minbase root file system (mmdebstrap, one gzip
layer). Prints, for each, the median time of `containerlock.inventory.of_layers` and of
`zcat <layer> | tar t` over all layers, and their ratio (goal ≤ 1.2).
Run: `.venv/bin/python -m benchmarks.inventory [--size-mb 100] [--runs 3]`.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from benchmarks.common import machine, median_of
from containerlock import inventory
from tests.harness.images import Layout, base_files, compressible_files
from tests.harness.rootfs import debian_minbase


def layers_of(layout: Layout, descs: list) -> list[tuple[str, Path]]:
    return [
        (str(d["digest"]), layout.root / "blobs" / "sha256" / str(d["digest"]).split(":")[1])
        for d, _ in descs
    ]


def timed_inventory(blobs: list[tuple[str, Path]]) -> tuple[float, int]:
    start = time.perf_counter()
    found = inventory.of_layers(blobs, "bench")
    return time.perf_counter() - start, len(found.packages)


def timed_tar_listing(blobs: list[tuple[str, Path]]) -> float:
    start = time.perf_counter()
    for _, path in blobs:
        subprocess.run(f"zcat {path} | tar t > /dev/null", shell=True, check=True)
    return time.perf_counter() - start


def compare(name: str, blobs: list[tuple[str, Path]], runs: int) -> None:
    ours = median_of(lambda _: timed_inventory(blobs)[0], runs)
    baseline = median_of(lambda _: timed_tar_listing(blobs), runs)
    size = sum(p.stat().st_size for _, p in blobs) / 1e6
    packages = timed_inventory(blobs)[1]
    print(
        f"{name} ({len(blobs)} layers, {size:.1f} MB compressed, {packages} packages): "
        f"inventory {ours:.2f} s, "
        f"zcat | tar t {baseline:.2f} s, ratio {ours / baseline:.2f}x (goal ≤ 1.2)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size-mb", type=int, default=100)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rootfs-cache", type=Path, default=Path(tempfile.gettempdir()) / "cl-bench-rootfs")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="cl-bench-inventory."))
    print(f"machine: {machine()}")
    try:
        layout = Layout(workdir / "large")
        files = compressible_files(args.size_mb)
        names = sorted(files)
        half = (len(names) + 1) // 2
        parts = [
            base_files("bench"),
            {k: files[k] for k in names[:half]},
            {k: files[k] for k in names[half:]},
        ]
        descs = [layout.layer(part, 1) for part in parts]
        compare(f"~{args.size_mb} MB compressible image", layers_of(layout, descs), args.runs)
        tar = debian_minbase(args.rootfs_cache)
        minbase = Layout(workdir / "minbase")
        compare(
            "Debian bookworm minbase", layers_of(minbase, [minbase.tar_layer(tar.read_bytes(), 6)]), args.runs
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
