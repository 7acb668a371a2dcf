"""Kill a fetch with SIGKILL at a chosen moment, then check that DL_DIR only holds verified bytes."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

from containerlock.files import file_digest
from tests.harness.bitbake import BuildDir

COPY_WAIT = 60.0


def _fetch(topdir: str, dl_dir: str, url: str) -> None:
    build = BuildDir(Path(topdir))
    build.set(DL_DIR=dl_dir, TMPDIR=f"{topdir}/tmp")
    build.run(build.write_recipe("killed_1.0", f'SRC_URI = "{url}"\n'), "do_fetch", "do_unpack")


@dataclass(frozen=True)
class Kill:
    """What one SIGKILL hit."""

    finished: bool  # the fetch was over before the kill
    mid_transfer: bool  # a `skopeo copy` of the fetch was running when it was killed
    partial: list[str] = field(default_factory=list)  # unfinished data in DL_DIR at that moment

    @property
    def interrupted_transfer(self) -> bool:
        """The kill cut a blob download short: skopeo was copying and partial data was on disk."""
        return self.mid_transfer and bool(self.partial)


def _group_copies(pgid: int) -> list[int]:
    """PIDs of `skopeo copy` processes in the process group."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if os.getpgid(int(proc.name)) != pgid:
                continue
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except (OSError, ProcessLookupError):
            continue
        if argv and argv[0].endswith(b"skopeo") and b"copy" in argv:
            found.append(int(proc.name))
    return found


def partial_data(dl_dir: Path) -> list[str]:
    """Scratch layouts, temporary blob files and blobs whose bytes are incomplete, under DL_DIR."""
    root = dl_dir / "containers"
    if not root.exists():
        return []
    found = (
        [str(p.relative_to(root)) for p in (root / "tmp").rglob("*") if p.is_file()]
        if (root / "tmp").exists()
        else []
    )
    blobs = root / "blobs" / "sha256"
    for blob in blobs.iterdir() if blobs.exists() else []:
        if blob.name.startswith(".") or len(blob.name) != 64 or file_digest(blob) != f"sha256:{blob.name}":
            found.append(str(blob.relative_to(root)))
    return sorted(found)


def fetch_and_kill(topdir: Path, dl_dir: Path, url: str, after: float, during_copy: bool = False) -> Kill:
    """Run a fetch in a child process (its own process group: skopeo dies too); SIGKILL the group.

    `after` seconds after the start, or, with `during_copy`, `after` seconds after the fetch's
    `skopeo copy` has started writing a blob (so the kill lands in a transfer). What was
    running and what was on disk at the moment of the kill is reported.
    """
    ctx = multiprocessing.get_context("fork")
    child = ctx.Process(target=lambda: (os.setpgrp(), _fetch(str(topdir), str(dl_dir), url)))
    child.start()
    if during_copy:
        deadline = time.monotonic() + COPY_WAIT
        while child.is_alive() and time.monotonic() < deadline:
            if _group_copies(child.pid) and partial_data(dl_dir):
                break
            time.sleep(0.005)
    time.sleep(after)
    finished = not child.is_alive()
    copying = bool(not finished and _group_copies(child.pid))
    partial = partial_data(dl_dir) if copying else []
    if not finished:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGKILL)
    child.join(30)
    return Kill(finished, copying, partial)


def store_problems(dl_dir: Path) -> list[str]:
    """Blobs in the store whose bytes do not match their names (should be none)."""
    blobs = dl_dir / "containers" / "blobs" / "sha256"
    if not blobs.exists():
        return []
    return [
        p.name for p in blobs.iterdir() if not p.name.startswith(".") and file_digest(p) != f"sha256:{p.name}"
    ]
