"""Many rounds of two BitBake processes sharing DL_DIR and lockfile (overlapping images). One run.
Run: `.venv/bin/python -m benchmarks.concurrency [--rounds 20]`.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

from benchmarks.common import machine, registry_with_factory
from tests.harness.concurrent import overlapping_round


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="cl-bench-conc."))
    print(f"machine: {machine()}")
    tally = {"failed builds": 0, "duplicate blob GETs": 0, "incomplete locks": 0, "bad blobs": 0}
    try:
        with registry_with_factory(workdir) as (registry, factory):
            for r in range(args.rounds):
                images = factory.shared_base_family(f"bench/conc{r}", 4)
                outcome = overlapping_round(workdir / f"round{r}", images, registry)
                tally["failed builds"] += sum(1 for x in outcome["results"] if x != "ok")
                tally["duplicate blob GETs"] += int(outcome["duplicate_gets"])
                tally["incomplete locks"] += 0 if outcome["lock_complete"] else 1
                tally["bad blobs"] += len(outcome["bad_blobs"])
                shutil.rmtree(workdir / f"round{r}", ignore_errors=True)
        print(f"{args.rounds} rounds x 2 processes: " + ", ".join(f"{k} {v}" for k, v in tally.items()))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
