"""A download reads linearly (issue 19 item 5): resolve → pull the missing blobs → record.

The walk of `tests/harness/fetch_walk.py` through a real `do_fetch` (empty DL_DIR, a pinned
URL with a tag, a loopback registry): the reader's walk (each call site once, helpers
folded) returns to a file already left at most 10 times and enters no file more than 3
times. `benchmarks/fetch_walk.py` prints the same walks.
"""

from __future__ import annotations

import pytest

from tests.harness.fetch_walk import walks_of


@pytest.mark.parametrize("kind", ["multi-arch", "single-arch"])
def test_a_download_reads_as_resolve_pull_record(build, image_factory, kind) -> None:
    if kind == "multi-arch":
        image = image_factory.multi_arch("walk/multi", tag="1.0")
    else:
        image = image_factory.single_arch("walk/single", tag="1.0")
    url = f"docker://{image.host}/{image.repository};tag={image.tag};digest={image.digest}"
    d = build.parse(build.write_recipe("walk_1.0", f'SRC_URI = "{url}"\n'))

    walks = walks_of(lambda: build.execute(d, "do_fetch"))

    folded = walks["each call site once, helpers folded"]
    assert folded.returns <= 10, folded.summary()
    assert max(folded.entries.values()) <= 3, folded.summary()
    # It is the walk of a download from the registry: missing blobs pulled, then the record written.
    assert folded.files[0] == "fetch/fetcher.py", folded.summary()
    assert "fetch/pull.py" in folded.files, folded.summary()
    assert folded.files[-2:] == ("oci/record.py", "fetch/fetcher.py"), folded.summary()
    # Without folding: 23 returns when the goal was met, 64 (multi-arch) before the restructuring.
    per_site = walks["each call site once"]
    assert per_site.returns <= 30, per_site.summary()
