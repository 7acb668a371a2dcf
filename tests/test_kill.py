"""`kill -9` of a fetch at random points: the next build succeeds and DL_DIR verifies."""

from __future__ import annotations

import random

import pytest

from tests.harness.killing import fetch_and_kill, store_problems


@pytest.mark.parametrize("trial", range(4))
def test_fetch_killed_at_a_random_moment_recovers(tmp_path, image_factory, build, trial) -> None:
    image = image_factory.large_compressible("kill/large", size_mb=16)
    url = f"docker://{image.host}/{image.repository};tag={image.tag};digest={image.digest}"
    dl_dir = tmp_path / "downloads"
    moment = random.Random(trial).uniform(0.05, 0.6)
    fetch_and_kill(tmp_path / "killed", dl_dir, url, moment)
    assert store_problems(dl_dir) == []
    d = build.run(build.write_recipe("after_1.0", f'SRC_URI = "{url}"\n'), "do_fetch", "do_unpack")
    assert store_problems(dl_dir) == []
    assert (tmp_path / "build").exists() and d.getVar("WORKDIR")
    leftovers = list((dl_dir / "containers" / "tmp").glob("layout.*"))
    assert leftovers == []  # scratch of the killed fetch was cleaned up
