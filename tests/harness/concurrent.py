"""Two BitBake processes, one DL_DIR and one lockfile, overlapping images: run and check a round."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

from containerlock.lock import lockfile
from tests.harness.bitbake import BuildDir
from tests.harness.killing import store_problems


def _build(topdir: str, dl_dir: str, lock: str, urls: str, queue) -> None:
    build = BuildDir(Path(topdir))
    build.set(DL_DIR=dl_dir, TMPDIR=f"{topdir}/tmp", CONTAINER_LOCKFILE=lock)
    try:
        d = build.run(build.write_recipe("overlap_1.0", f'SRC_URI = "{urls}"\n'), "do_fetch", "do_unpack")
        build.finish_build(d)
        queue.put("ok")
    except Exception as err:  # reported to the parent
        queue.put(repr(err))


def overlapping_round(workdir: Path, images, registry) -> dict[str, object]:
    """Process A fetches images[:-1], B images[1:], at once (unpinned: both record into the lock)."""
    urls = [f"docker://{i.host}/{i.repository};tag={i.tag}" for i in images]
    dl_dir, lock = workdir / "dl", workdir / "container-lock.json"
    mark = registry.mark()
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    jobs = [" ".join(urls[:-1]), " ".join(urls[1:])]
    procs = [
        ctx.Process(target=_build, args=(str(workdir / f"b{n}"), str(dl_dir), str(lock), job, queue))
        for n, job in enumerate(jobs)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(300)
    results = sorted(queue.get(timeout=10) for _ in procs)
    layers = {layer.digest for i in images for layer in i.platforms["linux/amd64"].layers}
    gets = [g.digest for g in registry.blob_gets(mark) if g.digest in layers]
    entries = lockfile.load(lock).entries  # raises on corrupt JSON
    return {
        "results": results,
        "duplicate_gets": len(gets) - len(set(gets)),
        "missing_gets": len(layers - set(gets)),
        "lock_complete": {k: e.digest for k, e in entries.items()} == {i.reference: i.digest for i in images},
        "bad_blobs": store_problems(dl_dir),
    }
