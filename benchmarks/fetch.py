"""Fetch benchmark: the docker:// fetcher vs a bare `skopeo copy`, and blob GETs for shared layers.

Prints ratios measured in one run (medians of a few repetitions) and the machine, and two
parts of the difference: one `skopeo inspect --raw` of the image and hashing every blob.
Run: `.venv/bin/python -m benchmarks.fetch [--size-mb 100] [--runs 3]`.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from benchmarks.common import build_dir, machine, median_of, pinned_url, registry_with_factory
from tests.harness.bitbake import BuildDir
from tests.harness.images import PushedImage


def fetch_with_bitbake(workdir: Path, image: PushedImage, name: str) -> tuple[BuildDir, float]:
    """Parse a recipe for `image` (untimed, as the worker does before a task), run do_fetch (timed)."""
    build = build_dir(workdir, name)
    d = build.parse(build.write_recipe(f"bench-{name}_1.0", f'SRC_URI = "{pinned_url(image)}"\n'))
    start = time.perf_counter()
    build.execute(d, "do_fetch")
    return build, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size-mb", type=int, default=100)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="cl-bench-fetch."))
    print(f"machine: {machine()}")
    try:
        with registry_with_factory(workdir) as (registry, factory):
            start = time.perf_counter()
            large = factory.large_compressible("bench/large", size_mb=args.size_mb)
            layer_bytes = sum(layer.size for layer in large.platforms["linux/amd64"].layers)
            print(
                f"image: {large.reference}, {layer_bytes / 1e6:.1f} MB of layers "
                f"(generated and pushed in {time.perf_counter() - start:.1f} s)"
            )

            def bare(i: int) -> float:
                start = time.perf_counter()
                subprocess.run(
                    ["skopeo", "copy", f"docker://{large.ref_by_digest}", f"oci:{workdir / f'bare-{i}'}"],
                    check=True,
                    capture_output=True,
                )
                return time.perf_counter() - start

            bare_s = median_of(bare, args.runs)
            ours_s = median_of(lambda i: fetch_with_bitbake(workdir, large, f"large-{i}")[1], args.runs)
            print(
                f"fetch ~{args.size_mb} MB image, median of {args.runs}: bare skopeo copy {bare_s:.2f} s, "
                f"do_fetch {ours_s:.2f} s, ratio {ours_s / bare_s:.2f}x"
            )

            def inspect(_: int) -> float:
                start = time.perf_counter()
                subprocess.run(
                    ["skopeo", "inspect", "--raw", f"docker://{large.ref_by_digest}"],
                    check=True,
                    capture_output=True,
                )
                return time.perf_counter() - start

            blobs = sorted((workdir / "bare-0" / "blobs" / "sha256").iterdir())

            def hash_blobs(_: int) -> float:
                start = time.perf_counter()
                for blob in blobs:
                    with blob.open("rb") as f:
                        hashlib.file_digest(f, "sha256")
                return time.perf_counter() - start

            size = sum(blob.stat().st_size for blob in blobs)
            inspect_s, hash_s = median_of(inspect, args.runs), median_of(hash_blobs, args.runs)
            print(
                f"  of the difference: one skopeo inspect --raw {inspect_s * 1e3:.0f} ms, hashing the "
                f"{len(blobs)} blobs ({size / 1e6:.1f} MB) {hash_s * 1e3:.0f} ms (medians of {args.runs})"
            )

            first, second = factory.shared_base_family("bench/family", 2)
            build, _ = fetch_with_bitbake(workdir, first, "shared")
            mark = registry.mark()
            build.run(
                build.write_recipe("bench-shared_1.0", f'SRC_URI = "{pinned_url(second)}"\n'), "do_fetch"
            )
            layers = {layer.digest for layer in second.platforms["linux/amd64"].layers}
            gets = [g.digest for g in registry.blob_gets(mark)]
            layer_gets = [g for g in gets if g in layers]
            print(
                f"second image sharing a base layer: {len(layer_gets)} layer GET(s) "
                f"for {len(layers)} layers, "
                f"{len(layers) - 1} of them not in DL_DIR yet (+{len(gets) - len(layer_gets)} config GET)"
            )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
