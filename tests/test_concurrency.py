"""Two BitBake processes sharing one DL_DIR and one lockfile, fetching overlapping images at once."""

from __future__ import annotations

import pytest

from tests.harness.concurrent import overlapping_round


@pytest.mark.parametrize("round_", range(3))
def test_two_builds_one_dl_dir_one_lockfile(tmp_path, registry, image_factory, round_) -> None:
    images = image_factory.shared_base_family(f"concurrency/r{round_}", 4)
    outcome = overlapping_round(tmp_path, images, registry)
    assert outcome == {
        "results": ["ok", "ok"],
        "duplicate_gets": 0,
        "missing_gets": 0,
        "lock_complete": True,
        "bad_blobs": [],
    }
