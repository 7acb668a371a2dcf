"""`container-lock update` of N references vs the same lookups done by hand (one run).

Pushes N tags (one index, retagged), writes a recipe naming all of them, then
times `container-lock update` against the same work done with bare skopeo:
`skopeo inspect --raw docker://ref` per reference (what update needs for an
index), once sequentially and once with the same parallelism (`--jobs`).
It also prints the CLI's process start (`python -m audit --version`, median of 5) and the
same start with the modules the commands import when used loaded up front (DEFERRED).
Run: `.venv/bin/python -m benchmarks.update [-n 100] [--jobs 8]`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from benchmarks.common import machine, median_of, registry_with_factory

# What the CLI imports only inside the commands that use them (tests/test_architecture.py).
DEFERRED = (
    "rich.console",
    "rich.table",
    "policies.evaluate",
    "containerlock.lock.policy",
    "importlib.metadata",
    "cyclonedx.model.bom",
)


def process_start(*command: str) -> float:
    """Median of 5 wall times of running `command` with this Python."""

    def once(_: int) -> float:
        start = time.perf_counter()
        subprocess.run([sys.executable, *command], check=True, capture_output=True)
        return time.perf_counter() - start

    return median_of(once, 5)


def print_process_start() -> None:
    lazy = process_start("-m", "audit", "--version")
    eager = process_start("-c", f"import audit.cli, {', '.join(DEFERRED)}")
    print(
        f"process start (python -m audit --version, median of 5): {lazy:.2f} s; "
        f"importing audit.cli and {', '.join(DEFERRED)} up front: {eager:.2f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, default=100)
    parser.add_argument("--jobs", type=int, default=8)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="cl-bench-update."))
    print(f"machine: {machine()}")
    print_process_start()
    try:
        with registry_with_factory(workdir) as (_, factory):
            base = factory.multi_arch("bench/update", tag="base")
            refs = [factory.retag(base, "bench/update", f"t{i:03d}").reference for i in range(args.n)]
            recipe = workdir / "layer" / "bench_1.0.bb"
            recipe.parent.mkdir()
            host = base.host
            urls = " ".join(f"docker://{host}/bench/update;tag={r.rsplit(':', 1)[1]}" for r in refs)
            recipe.write_text(f'SRC_URI = "{urls}"\n')

            def lookup(ref: str) -> str:
                raw = subprocess.run(
                    ["skopeo", "inspect", "--raw", f"docker://{ref}"], capture_output=True, check=True
                ).stdout
                return hashlib.sha256(raw).hexdigest()

            start = time.perf_counter()
            for ref in refs:
                lookup(ref)
            sequential = time.perf_counter() - start
            start = time.perf_counter()
            with ThreadPoolExecutor(args.jobs) as pool:
                list(pool.map(lookup, refs))
            parallel = time.perf_counter() - start

            lock = workdir / "container-lock.json"
            start = time.perf_counter()
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "audit",
                    "update",
                    str(recipe.parent),
                    "--lockfile",
                    str(lock),
                    "--jobs",
                    str(args.jobs),
                    "--json",
                ],
                check=True,
                capture_output=True,
            )
            ours = time.perf_counter() - start
            entries = len(json.loads(lock.read_text())["images"])
            print(
                f"{args.n} references, the same `skopeo inspect --raw` lookups: "
                f"sequential {sequential:.2f} s, "
                f"{args.jobs} in parallel {parallel:.2f} s; container-lock update (--jobs {args.jobs}) "
                f"{ours:.2f} s = {ours / sequential:.2f}x sequential, {ours / parallel:.2f}x parallel "
                f"({entries} lock entries written)"
            )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
