"""`kill -9` trials: fetch an image, SIGKILL the fetch (and its skopeo) at a random moment, then
check that every blob in DL_DIR verifies and that the next build succeeds. Prints the tally.
Run: `.venv/bin/python -m benchmarks.kill [--trials 20] [--size-mb 64]`.
"""

from __future__ import annotations

import argparse
import random
import shutil
import tempfile
import time
from pathlib import Path

from benchmarks.common import build_dir, machine, pinned_url, registry_with_factory
from tests.harness.killing import fetch_and_kill, store_problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--size-mb", type=int, default=64)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    workdir = Path(tempfile.mkdtemp(prefix="cl-bench-kill."))
    print(f"machine: {machine()}")
    try:
        with registry_with_factory(workdir) as (_, factory):
            image = factory.large_compressible("bench/kill", size_mb=args.size_mb)
            url = pinned_url(image)
            probe = build_dir(workdir, "probe")
            start = time.perf_counter()
            probe.run(probe.write_recipe("probe_1.0", f'SRC_URI = "{url}"\n'), "do_fetch")
            full = time.perf_counter() - start
            killed = finished = interrupted = bad = failed_after = 0
            for trial in range(args.trials):
                dl_dir = workdir / f"dl-{trial}"
                moment = rng.uniform(0.0, full)
                kill = fetch_and_kill(workdir / f"killed-{trial}", dl_dir, url, moment)
                finished += kill.finished
                killed += not kill.finished
                interrupted += kill.interrupted_transfer
                bad += len(store_problems(dl_dir))
                after = build_dir(workdir, f"after-{trial}", dl_dir)
                try:
                    after.run(
                        after.write_recipe("after_1.0", f'SRC_URI = "{url}"\n'), "do_fetch", "do_unpack"
                    )
                except Exception as err:  # counted, and shown
                    failed_after += 1
                    print(f"trial {trial}: next build failed: {err}")
                bad += len(store_problems(dl_dir))
                shutil.rmtree(workdir / f"killed-{trial}", ignore_errors=True)
                shutil.rmtree(dl_dir, ignore_errors=True)
                shutil.rmtree(workdir / f"build-after-{trial}", ignore_errors=True)
            print(
                f"{args.trials} trials (fetch {full:.2f} s, kill at uniform 0..{full:.2f} s): "
                f"{killed} killed mid-fetch ({interrupted} inside a blob transfer, partial data on disk), "
                f"{finished} finished first; next build failed {failed_after}x; "
                f"unverifiable blobs found {bad}x"
            )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
