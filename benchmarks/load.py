"""Target load benchmark: the loader with a zstd archive vs an uncompressed one (goal ≤ 1.1×).

Builds the ~100 MB compressible image into loader packages (CONTAINER_COMPRESSION
zst and none) through real BitBake, then times `container-loader.sh` into a fresh
podman store (root, vfs). Prints the medians and the ratio from one run.
Run: `.venv/bin/python -m benchmarks.load [--size-mb 100] [--runs 3]`.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from benchmarks.common import build_dir, machine, median_of, pinned_url, registry_with_factory
from tests.harness.bitbake import PAYLOAD_TASKS
from tests.harness.podman import Podman


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size-mb", type=int, default=100)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="cl-bench-load."))
    print(f"machine: {machine()}")
    try:
        with registry_with_factory(workdir) as (_, factory):
            image = factory.large_compressible("bench/large", size_mb=args.size_mb)
            dl_dir = workdir / "downloads"
            medians = {}
            for kind in ("none", "zst"):
                build = build_dir(workdir, kind, dl_dir)
                build.set(CONTAINER_COMPRESSION=kind)
                rec = build.write_recipe(
                    "bench-load_1.0", f'inherit podman-loader\nSRC_URI += "{pinned_url(image)}"\n'
                )
                d = build.run(rec, *PAYLOAD_TASKS)
                share = Path(d.getVar("D")) / "usr" / "share" / "bench-load"
                size = sum(p.stat().st_size for p in (share / "images").iterdir())

                def load_once(i: int, share: Path = share, kind: str = kind) -> float:
                    podman = Podman(workdir / f"podman-{kind}-{i}")
                    try:
                        start = time.perf_counter()
                        subprocess.run(
                            [str(share / "container-loader.sh")],
                            env=podman.env(),
                            check=True,
                            capture_output=True,
                        )
                        return time.perf_counter() - start
                    finally:
                        podman.close()
                        shutil.rmtree(workdir / f"podman-{kind}-{i}", ignore_errors=True)

                medians[kind] = median_of(load_once, args.runs)
                print(
                    f"{kind:>4}: archive {size / 1e6:.1f} MB, "
                    f"load median of {args.runs}: {medians[kind]:.2f} s"
                )
            print(f"load ratio zst/none: {medians['zst'] / medians['none']:.2f}x (goal <= 1.1x)")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
