"""`kill -9` of a fetch in the middle of a blob transfer: the next build succeeds and DL_DIR verifies."""

from __future__ import annotations

import random

from tests.harness.killing import fetch_and_kill, store_problems

TRIALS = 4


def test_fetch_killed_mid_transfer_recovers(tmp_path, image_factory, build) -> None:
    # Incompressible, so the layer blob is big enough (24 MiB) for a kill to land inside its transfer.
    noise = random.Random(7).randbytes(24 << 20)
    image = image_factory.single_arch("kill/noise", files={"noise.bin": noise})
    url = f"docker://{image.host}/{image.repository};tag={image.tag};digest={image.digest}"
    dl_dir = tmp_path / "downloads"
    rng = random.Random(0)
    interrupted, kills = 0, []
    for trial in range(TRIALS):
        kill = fetch_and_kill(
            tmp_path / f"killed-{trial}", dl_dir, url, rng.uniform(0.0, 0.05), during_copy=True
        )
        interrupted += kill.interrupted_transfer
        kills.append(kill)
        assert store_problems(dl_dir) == [], trial  # only verified bytes under their names
        d = build.run(
            build.write_recipe(f"after{trial}_1.0", f'SRC_URI = "{url}"\n'), "do_fetch", "do_unpack"
        )
        assert store_problems(dl_dir) == [] and d.getVar("WORKDIR"), trial
        assert (
            list((dl_dir / "containers" / "tmp").glob("layout.*")) == []
        )  # the killed fetch's scratch is gone
        for blob in (dl_dir / "containers" / "blobs" / "sha256").iterdir():  # the next trial starts empty
            blob.unlink()
    # The kills really cut transfers short (skopeo copying, partial data on disk), not idle moments.
    assert interrupted >= TRIALS - 1, kills
