"""The loader script's own cost per image, at 10, 100 and 1 000 images (issue 24 review).

`container-loader.sh` (the template, filled as the class fills it) runs a second boot against an
engine stand-in that answers `image ls` and `image inspect` from a file in one process each, so
what grows with the image count is the script's own work: reading image.list, finding each pinned
ID among the store's, writing the record, the pruning pass over it. Two engines: `fake` (the
store listed by `image ls`, as docker-loader does) and `podman` (the listing read from a store
file in containers/storage's `images.json` format, as podman-loader does; each image with the
members podman writes). Printed: seconds and ms per image at each size; a step that is a search
inside the loop over images shows as a per-image cost that grows with the count.

Run: `.venv/bin/python -m benchmarks.loader_scale`
"""

from __future__ import annotations

import json
import os
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


def _images_json(store: list[tuple[str, str]]) -> str:
    """containers/storage's images.json for `store` ((ID, name) pairs), with podman's members."""
    images = []
    for image_id, name in store:
        manifest = f"sha256:{image_id[::-1]}"
        images.append(
            {
                "id": image_id,
                "digest": manifest,
                "names": [name],
                "names-history": [name],
                "layer": image_id[1:] + "0",
                "metadata": json.dumps({"signatures-sizes": {manifest: []}}),
                "big-data-names": [f"sha256:{image_id}", f"manifest-{manifest}", "manifest"],
                "big-data-sizes": {"manifest": 425, f"sha256:{image_id}": 1409},
                "big-data-digests": {"manifest": manifest, f"sha256:{image_id}": f"sha256:{image_id}"},
                "created": "2026-12-06T10:22:13.965012407Z",
            }
        )
    return json.dumps(images, separators=(",", ":"))


def _prepare(root: Path, count: int, engine: str) -> tuple[Path, dict[str, str]]:
    """A filled loader script, its image.list, the store and the record of `count` images."""
    share, state, lists, bin_dir = (root / d for d in ("share", "state", "lists", "bin"))
    for d in (share / "images", state / engine, lists, bin_dir):
        d.mkdir(parents=True)
    store = [(f"{i:064x}", f"registry.example:5000/app/r{i}:1.0") for i in range(1, count + 1)]
    (share / "image.list").write_text(
        "".join(f"r{i}.tar {ref} sha256:{h}\n" for i, (h, ref) in enumerate(store))
    )
    (lists / "bench.list").symlink_to(share / "image.list")
    (root / "store").write_text("".join(f"{h} {ref}\n" for h, ref in store))
    (state / engine / "loaded").write_text("".join(f"{h} {ref}\n" for h, ref in store))
    (root / "storage" / "vfs-images").mkdir(parents=True)
    (root / "storage" / "vfs-images" / "images.json").write_text(_images_json(store))
    (root / "storage.conf").write_text(f'[storage]\ndriver = "vfs"\ngraphroot = "{root / "storage"}"\n')
    script = TEMPLATE.read_text()
    for key, value in {
        "@BPN@": "bench",
        "@CONTAINER_ENGINE@": engine,
        "@CONTAINER_DELETE_AFTER_LOAD@": "0",
        "@CONTAINER_LOADER_PRUNE@": "1",
        "@CONTAINER_LOADER_JOBS@": "2",
        "@CONTAINER_LOADER_READ_STORE@": "1",
        "@CONTAINER_LOADER_STATE_DIR@": str(state),
    }.items():
        script = script.replace(key, value)
    (share / "container-loader.sh").write_text(script)
    (share / "container-loader.sh").chmod(0o755)
    (bin_dir / engine).write_text(_ENGINE)
    (bin_dir / engine).chmod(0o755)
    env = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "STORE": str(root / "store"),
        "CONTAINER_LOADER_LISTS": str(lists),
        "CONTAINERS_STORAGE_CONF": str(root / "storage.conf"),
    }
    return share / "container-loader.sh", env


def main() -> None:
    print(machine())
    if os.getuid() != 0:
        raise SystemExit(
            "run it as root: podman-loader reads the store file only as root, like root's podman"
        )
    for engine in ("fake", "podman"):
        for count in SIZES:
            with tempfile.TemporaryDirectory(prefix="cl-bench-loader.") as tmp:
                script, env = _prepare(Path(tmp), count, engine)
                start = time.perf_counter()
                run = subprocess.run([str(script)], env=env, capture_output=True, text=True, check=False)
                seconds = time.perf_counter() - start
            if run.returncode != 0 or f"nothing to do: {count} image(s) already present" not in run.stderr:
                raise SystemExit(f"{engine}, {count} images: exit {run.returncode}\n{run.stderr}")
            per_image = seconds / count * 1000
            print(f"{engine:>6}: {count:5d} images present: {seconds:.3f} s, {per_image:.2f} ms per image")


if __name__ == "__main__":
    main()
