"""Fetch + package benchmark (one run, medians of a few repetitions).

1. The ~100 MB compressible image: do_fetch + do_unpack + do_install_fetched_containers
   (zstd) vs a bare `skopeo copy docker://… docker-archive:` + one `zstd` pass (goal ≤ 1.25×),
   and vs upstream Isar's pipeline (`skopeo copy` → dir:, dir: → docker-archive:, zstd).
2. N = 5 images sharing a base layer: layer-blob GETs vs distinct layers (goal: equal).
3. Changing the zstd level: which tasks' signatures change, and blob GETs when rerun (goal:
   packaging only, 0 GETs).
Run: `.venv/bin/python -m benchmarks.package [--size-mb 100] [--runs 3]`.
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

ZSTD = ["zstd", "-q", "-3", "-T2", "-f"]


def run(*args: str) -> None:
    subprocess.run(list(args), check=True, capture_output=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size-mb", type=int, default=100)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="cl-bench-package."))
    print(f"machine: {machine()}")
    try:
        with registry_with_factory(workdir) as (registry, factory):
            image = factory.large_compressible("bench/large", size_mb=args.size_mb)
            src = f"docker://{image.ref_by_digest}"

            def bare(i: int) -> float:
                out = workdir / f"bare-{i}.tar"
                start = time.perf_counter()
                run("skopeo", "copy", src, f"docker-archive:{out}:{image.reference}")
                run(*ZSTD, str(out))
                return time.perf_counter() - start

            def upstream(i: int) -> float:
                tmp, out = workdir / f"up-{i}", workdir / f"up-{i}.tar"
                start = time.perf_counter()
                run("skopeo", "copy", "--preserve-digests", src, f"dir:{tmp}")
                run("skopeo", "copy", f"dir:{tmp}", f"docker-archive:{out}:{image.reference}")
                run(*ZSTD, "--rm", str(out))
                return time.perf_counter() - start

            def ours(i: int) -> float:
                build = build_dir(workdir, f"ours-{i}")
                build.set(CONTAINER_COMPRESSION_THREADS="2")
                rec = build.write_recipe(
                    "bench-pkg_1.0", f'inherit podman-loader\nSRC_URI += "{pinned_url(image)}"\n'
                )
                d = build.parse(rec)
                start = time.perf_counter()
                build.execute(d, *PAYLOAD_TASKS)
                return time.perf_counter() - start

            t_bare, t_up, t_ours = (median_of(f, args.runs) for f in (bare, upstream, ours))
            print(
                f"fetch+package ~{args.size_mb} MB image, median of {args.runs}: "
                f"bare skopeo+zstd {t_bare:.2f} s, "
                f"upstream pipeline {t_up:.2f} s, container-lock tasks {t_ours:.2f} s"
            )
            print(
                f"  ratio vs bare: {t_ours / t_bare:.2f}x (goal <= 1.25x); vs upstream: {t_ours / t_up:.2f}x"
            )

            family = factory.shared_base_family("bench/family", 5)
            build = build_dir(workdir, "family")
            mark = registry.mark()
            for n, member in enumerate(family):
                build.run(
                    build.write_recipe(f"fam{n}_1.0", f'SRC_URI = "{pinned_url(member)}"\n'), "do_fetch"
                )
            layers = {layer.digest for m in family for layer in m.platforms["linux/amd64"].layers}
            gets = [g.digest for g in registry.blob_gets(mark) if g.digest in layers]
            print(
                f"5 images sharing a base layer: {len(gets)} layer GETs for {len(layers)} distinct layers "
                f"(goal: equal)"
            )

            build = build_dir(workdir, "level")
            rec = build.write_recipe(
                "bench-level_1.0", f'inherit podman-loader\nSRC_URI += "{pinned_url(image)}"\n'
            )
            before = build.taskhashes(rec)
            build.run(rec, *PAYLOAD_TASKS)
            build.set(ZSTD_COMPRESSION_LEVEL="-9")
            after = build.taskhashes(rec)
            changed = [t for t in before if before[t] != after[t]]
            mark = registry.mark()
            d = build.parse(rec)
            start = time.perf_counter()
            build.execute(d, *PAYLOAD_TASKS)
            elapsed = time.perf_counter() - start
            print(
                f"zstd level -3 -> -9: signatures changed for {', '.join(changed)}; rerun of the tasks "
                f"{elapsed:.2f} s with {len(registry.blob_gets(mark))} blob GETs "
                f"(goal: packaging only, 0 GETs)"
            )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
