"""The loader script's own cost per image, at 10, 100 and 1 000 images (issue 24 review).

`container-loader.sh` (the template, filled as the class fills it) runs a second boot against an
engine stand-in that answers `image ls` and `image inspect` from a file in one process each, so
what grows with the image count is the script's own work: reading image.list, finding each pinned
ID among the store's, writing the record, the pruning pass over it. Printed: seconds and ms per
image at each size; a step that is a search inside the loop over images shows as a per-image cost
that grows with the count.

Run: `.venv/bin/python -m benchmarks.loader_scale`
"""

from __future__ import annotations

import subprocess
import tempfile
import time
from pathlib import Path

from benchmarks.common import machine

TEMPLATE = (
    Path(__file__).resolve().parent.parent / "meta" / "files" / "container-loader" / "container-loader.sh.in"
)
SIZES = (10, 100, 1000)

# `image ls -a -q --no-trunc` and `image inspect --format X REF...` from the store file.
_ENGINE = """#!/bin/bash
case "$1 $2" in
    "image ls") awk '{print "sha256:" $1}' "$STORE" ;;
    "image inspect") shift 4; printf '%s\\n' "$@" |
        awk 'NR==FNR {id[$2]=$1; next} {print "sha256:" id[$1]}' "$STORE" - ;;
    *) exit 0 ;;
esac
"""


def _prepare(root: Path, count: int) -> tuple[Path, dict[str, str]]:
    """A filled loader script, its image.list, the store and the record of `count` images."""
    share, state, lists, bin_dir = (root / d for d in ("share", "state", "lists", "bin"))
    for d in (share / "images", state / "fake", lists, bin_dir):
        d.mkdir(parents=True)
    store = [(f"{i:064x}", f"registry.example:5000/app/r{i}:1.0") for i in range(1, count + 1)]
    (share / "image.list").write_text(
        "".join(f"r{i}.tar {ref} sha256:{h}\n" for i, (h, ref) in enumerate(store))
    )
    (lists / "bench.list").symlink_to(share / "image.list")
    (root / "store").write_text("".join(f"{h} {ref}\n" for h, ref in store))
    (state / "fake" / "loaded").write_text("".join(f"{h} {ref}\n" for h, ref in store))
    script = TEMPLATE.read_text()
    for key, value in {
        "@BPN@": "bench",
        "@CONTAINER_ENGINE@": "fake",
        "@CONTAINER_DELETE_AFTER_LOAD@": "0",
        "@CONTAINER_LOADER_PRUNE@": "1",
        "@CONTAINER_LOADER_JOBS@": "2",
        "@CONTAINER_LOADER_STATE_DIR@": str(state),
    }.items():
        script = script.replace(key, value)
    (share / "container-loader.sh").write_text(script)
    (share / "container-loader.sh").chmod(0o755)
    (bin_dir / "fake").write_text(_ENGINE)
    (bin_dir / "fake").chmod(0o755)
    env = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "STORE": str(root / "store"),
        "CONTAINER_LOADER_LISTS": str(lists),
    }
    return share / "container-loader.sh", env


def main() -> None:
    print(machine())
    for count in SIZES:
        with tempfile.TemporaryDirectory(prefix="cl-bench-loader.") as tmp:
            script, env = _prepare(Path(tmp), count)
            start = time.perf_counter()
            run = subprocess.run([str(script)], env=env, capture_output=True, text=True, check=False)
            seconds = time.perf_counter() - start
        if run.returncode != 0 or f"nothing to do: {count} image(s) already present" not in run.stderr:
            raise SystemExit(f"{count} images: exit {run.returncode}\n{run.stderr}")
        print(f"{count:5d} images present: {seconds:.3f} s, {seconds / count * 1000:.2f} ms per image")


if __name__ == "__main__":
    main()
