"""The fetcher's walk: which files of `containerlock` one real `download` passes through, in order.

A real `do_fetch` (empty DL_DIR, pinned URL with a tag) against a loopback registry, for
a multi-arch index and a single-arch manifest; prints the three walks of
`tests/harness/fetch_walk.py` (every call, each call site once, helpers folded).
`tests/test_fetch_walk.py` holds the goal (issue 19 item 5: the folded walk with at most
10 returns to a file already left, no file entered more than 3 times).
Run: `.venv/bin/python -m benchmarks.fetch_walk`.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from benchmarks.common import build_dir, machine, pinned_url, registry_with_factory
from tests.harness.fetch_walk import walks_of


def main() -> None:
    print(f"machine: {machine()}")
    workdir = Path(tempfile.mkdtemp(prefix="cl-bench-walk."))
    with registry_with_factory(workdir) as (_registry, factory):
        images = {
            "multi-arch index, pinned + tag": factory.multi_arch("walk/multi", tag="1.0"),
            "single-arch manifest, pinned + tag": factory.single_arch("walk/single", tag="1.0"),
        }
        for i, (what, image) in enumerate(images.items()):
            build = build_dir(workdir, f"walk-{i}")
            d = build.parse(build.write_recipe(f"walk-{i}_1.0", f'SRC_URI = "{pinned_url(image)}"\n'))
            print(f"{what}, empty DL_DIR:")
            for kind, walk in walks_of(lambda: build.execute(d, "do_fetch")).items():  # noqa: B023
                print(f"  {kind}: {walk.summary()}")


if __name__ == "__main__":
    main()
