"""Fetch benchmark: the docker:// fetcher vs a bare `skopeo copy`, and blob GETs for shared layers.

Prints ratios measured in one run (medians of a few repetitions) and the machine.
Run: `.venv/bin/python -m benchmarks.fetch [--size-mb 100] [--runs 3]`.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from tests.harness.bitbake import BuildDir
from tests.harness.containers_conf import write_registries_conf
from tests.harness.images import ImageFactory, PushedImage
from tests.harness.registry import Registry


def machine() -> str:
    cpu = next(
        (
            ln.split(":", 1)[1].strip()
            for ln in Path("/proc/cpuinfo").read_text().splitlines()
            if ln.startswith("model name")
        ),
        platform.processor(),
    )
    return f"{platform.node()}: {os.cpu_count()} cores, {cpu}, Python {platform.python_version()}"


def median_seconds(action: Callable[[int], float], runs: int) -> float:
    """Median of what `action(i)` reports as its own duration."""
    return statistics.median(action(i) for i in range(runs))


def fetch_with_bitbake(workdir: Path, image: PushedImage, name: str) -> tuple[BuildDir, float]:
    """Parse a recipe for `image` (untimed, as the worker does before a task), run do_fetch (timed)."""
    build = BuildDir(workdir / f"build-{name}")
    build.set(DL_DIR=str(workdir / f"dl-{name}"), TMPDIR=str(workdir / f"build-{name}" / "tmp"))
    url = f"docker://{image.host}/{image.repository};tag={image.tag};digest={image.digest}"
    d = build.parse(build.write_recipe(f"bench-{name}_1.0", f'SRC_URI = "{url}"\n'))
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
    registry = Registry(workdir / "registry").start()
    try:
        write_registries_conf(workdir / "home", insecure=[registry.host])
        os.environ["HOME"] = str(workdir / "home")
        factory = ImageFactory(workdir / "images", registry.host)
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

        def ours(i: int) -> float:
            return fetch_with_bitbake(workdir, large, f"large-{i}")[1]

        bare_s = median_seconds(bare, args.runs)
        ours_s = median_seconds(ours, args.runs)
        print(
            f"fetch ~{args.size_mb} MB image, median of {args.runs}: bare skopeo copy {bare_s:.2f} s, "
            f"do_fetch {ours_s:.2f} s, ratio {ours_s / bare_s:.2f}x"
        )

        first, second = factory.shared_base_family("bench/family", 2)
        build, _ = fetch_with_bitbake(workdir, first, "shared")
        mark = registry.mark()
        build.run(
            build.write_recipe(
                "bench-shared_1.0",
                f'SRC_URI = "docker://{second.host}/'
                f'{second.repository};tag={second.tag};digest={second.digest}"\n',
            ),
            "do_fetch",
        )
        layers = second.platforms["linux/amd64"].layers
        gets = [g.digest for g in registry.blob_gets(mark)]
        layer_gets = [g for g in gets if g in {layer.digest for layer in layers}]
        print(
            f"second image sharing a base layer: {len(layer_gets)} layer GET(s) of {len(layers)} layers "
            f"(+{len(gets) - len(layer_gets)} config GET); shared base layer downloaded again: "
            f"{'yes' if layers[0].digest in layer_gets else 'no'}"
        )
    finally:
        registry.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
