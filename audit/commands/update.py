"""`container-lock update`: resolve tags to digests and write the lockfile."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from containerlock.oci.reference import InvalidReference

from .. import exits
from ..exits import fail
from ..inputs import (
    define_option,
    jobs_option,
    json_option,
    load_lock,
    lockfile_option,
    scan_paths,
    timeout_option,
    writable,
)


@click.command("update", epilog=exits.HELP)
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@lockfile_option
@click.option("--image", "images", multiple=True, metavar="REF", help="Only this reference (repeatable).")
@click.option("--check", is_flag=True, help="Write nothing; exit 1 if the lock is missing entries or stale.")
@jobs_option
@timeout_option
@define_option
@json_option
def update_command(
    paths: tuple[Path, ...],
    lockfile: Path,
    images: tuple[str, ...],
    check: bool,
    jobs: int,
    timeout: float,
    defines: tuple[str, ...],
    as_json: bool,
) -> None:
    """Resolve tags to digests and write the lockfile.

    PATHS are layers, directories or recipe files to scan for docker:// URLs
    without a digest. Without PATHS, every entry already in the lockfile is
    re-resolved. References that fail keep their old entry; nothing is written
    when none could be resolved.
    """
    from .. import update as updating
    from ..progress import progress
    from ..render import update as render

    found = scan_paths(paths, defines)
    lock = load_lock(lockfile)
    if not check:
        writable(lockfile, "lockfile")
    try:
        with progress("resolving tags", quiet=as_json) as advance:
            plan = updating.plan(found, lock, images, jobs=jobs, timeout=timeout, progress=advance)
    except (updating.UsageError, InvalidReference) as error:
        fail(str(error))
    if not plan.changes and plan.unresolved:
        skipped = "; ".join(f"{f.where}: {f.text}: {f.problem}" for f in plan.unresolved)
        fail(f"no reference could be resolved statically ({skipped}); give -D NAME=VALUE for the variables")
    written = False if check else updating.write(plan, lockfile)
    if as_json:
        print(json.dumps(render.as_json(plan, lockfile, written), indent=2, sort_keys=True))
    else:
        render.show(plan, lockfile, written, check)
    if plan.errors:
        sys.exit(exits.REGISTRY)
    if check and (plan.pending or not lockfile.exists()):
        sys.exit(exits.CHECK_FAILED)
