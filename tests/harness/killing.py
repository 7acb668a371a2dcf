"""Kill a fetch with SIGKILL at a chosen moment, then check that DL_DIR only holds verified bytes."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import time
from pathlib import Path

from containerlock.files import file_digest
from tests.harness.bitbake import BuildDir


def _fetch(topdir: str, dl_dir: str, url: str) -> None:
    build = BuildDir(Path(topdir))
    build.set(DL_DIR=dl_dir, TMPDIR=f"{topdir}/tmp")
    build.run(build.write_recipe("killed_1.0", f'SRC_URI = "{url}"\n'), "do_fetch", "do_unpack")


def fetch_and_kill(topdir: Path, dl_dir: Path, url: str, after: float) -> bool:
    """Run a fetch in a child process (its own process group: skopeo dies too); SIGKILL it `after` s in.

    Returns whether the fetch had already finished.
    """
    ctx = multiprocessing.get_context("fork")
    child = ctx.Process(target=lambda: (os.setpgrp(), _fetch(str(topdir), str(dl_dir), url)))
    child.start()
    time.sleep(after)
    finished = not child.is_alive()
    if not finished:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGKILL)
    child.join(30)
    return finished


def store_problems(dl_dir: Path) -> list[str]:
    """Blobs in the store whose bytes do not match their names (should be none)."""
    blobs = dl_dir / "containers" / "blobs" / "sha256"
    if not blobs.exists():
        return []
    return [
        p.name for p in blobs.iterdir() if not p.name.startswith(".") and file_digest(p) != f"sha256:{p.name}"
    ]
