"""Inventory benchmark: listing an image's packages vs reading its layers once (`zcat | tar t`).

Two images as OCI layouts on disk (no registry): the ~100 MB compressible one (three
gzip layers) and a real Debian bookworm minbase root file system (mmdebstrap, one gzip
layer). Prints, for each, the median time of `containerlock.contents.inventory.of_layers` and of
`zcat <layer> | tar t` over all layers, and their ratio (goal ≤ 1.2).

Then a large synthetic image at 1×/10×/100× (`--scales`): a base layer with a dpkg
status of 50 packages, 10 Python packages (`*.dist-info/METADATA`, tracked files) and
1 000 other files per 1×; a second layer rewriting the status and whiting out 100
paths per 1× (a tenth of them Python packages), plus an opaque directory. Prints the
time and the cost per item (files + packages + whiteouts), which stays flat when the
stacking is linear, next to the previous whiteout-by-whiteout stacking.
Run: `.venv/bin/python -m benchmarks.inventory [--size-mb 100] [--runs 3] [--scales 1 10 100]
[--synthetic-only]`.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from benchmarks.common import machine, median_of
from containerlock.contents import inventory, layer_stack
from tests.harness.images import Layout, base_files, compressible_files, tar_bytes
from tests.harness.pkgdbs import dpkg_status, python_metadata
from tests.harness.rootfs import debian_minbase

SITE = "usr/lib/python3/dist-packages"


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


def synthetic_layers(workdir: Path, scale: int) -> tuple[list[tuple[str, Path]], int]:
    """(layers, items) of the large synthetic image at `scale` (see the module docstring)."""
    packages, pythons, others, whiteouts = 50 * scale, 10 * scale, 1000 * scale, 100 * scale
    status = [{"Package": f"pkg{n}", "Version": f"1.{n}-1", "Architecture": "amd64"} for n in range(packages)]
    base = {"var/lib/dpkg/status": dpkg_status(*status)}
    for n in range(packages):  # distroless: a status file per package (all tracked)
        base[f"var/lib/dpkg/status.d/dl{n}"] = dpkg_status({**status[n], "Package": f"dl{n}"})
    for n in range(pythons):
        base[f"{SITE}/py{n}-1.0.dist-info/METADATA"] = python_metadata(f"py{n}", "1.0", "MIT")
    for n in range(others):
        base[f"usr/share/d{n % 100}/f{n}"] = b"x"
    upper = {"var/lib/dpkg/status": dpkg_status(*status[: packages // 2]), "opt/.wh..wh..opq": b""}
    for n in range(whiteouts):
        target = f"{SITE}/py{n}-1.0.dist-info" if n < whiteouts // 10 else f"usr/share/d{n % 100}/f{n}"
        parent, _, name = target.rpartition("/")
        upper[f"{parent}/.wh.{name}"] = b""
    found = []
    for n, files in enumerate((base, upper)):
        path = workdir / f"synthetic{scale}-{n}"
        path.write_bytes(tar_bytes(files))
        found.append((f"sha256:{scale:032x}{n:032x}", path))
    return found, 2 * packages + pythons + others + whiteouts


def _whiteout_by_whiteout(files: dict[str, layer_stack.FileEntry], changes: layer_stack.LayerChanges) -> None:
    """The previous `layer_stack.apply`: every tracked file scanned once per whiteout."""
    for directory in changes.opaque:
        prefix = f"{directory}/" if directory else ""
        for path in [p for p in files if p.startswith(prefix)]:
            del files[path]
    for gone in changes.removed:
        for path in [p for p in files if p == gone or p.startswith(f"{gone}/")]:
            del files[path]
    files.update(changes.written)


def synthetic(workdir: Path, scales: list[int], runs: int) -> None:
    print("large synthetic image (2 uncompressed layers): scale, items, packages found, time, per item")
    linear = layer_stack.apply
    for scale in scales:
        blobs, items = synthetic_layers(workdir, scale)
        ours = median_of(lambda _, b=blobs: timed_inventory(b)[0], runs)  # type: ignore[misc]
        found = timed_inventory(blobs)[1]
        layer_stack.apply = _whiteout_by_whiteout  # type: ignore[assignment]
        try:
            before = timed_inventory(blobs)[0]
        finally:
            layer_stack.apply = linear  # type: ignore[assignment]
        print(
            f"{scale:>4}x {items:>7} items {found:>5} packages: "
            f"{ours:.2f} s = {ours / items * 1e6:.1f} µs/item "
            f"(whiteout by whiteout: {before:.2f} s = {before / items * 1e6:.1f} µs/item)"
        )
        for _, path in blobs:
            path.unlink()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size-mb", type=int, default=100)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rootfs-cache", type=Path, default=Path(tempfile.gettempdir()) / "cl-bench-rootfs")
    parser.add_argument("--scales", type=int, nargs="+", default=[1, 10, 100])
    parser.add_argument("--synthetic-only", action="store_true", help="only the large synthetic image")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="cl-bench-inventory."))
    print(f"machine: {machine()}")
    try:
        synthetic(workdir, args.scales, args.runs)
        if args.synthetic_only:
            return
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
