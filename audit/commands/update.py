"""`container-lock update`: resolve tags to digests and write the lockfile."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from changes.compare import ReleaseDiff

    from ..update import UpdatePlan

from containerlock.oci.reference import InvalidReference

from .. import exits
from ..console import err, escape
from ..exits import fail
from ..inputs import (
    define_option,
    jobs_option,
    json_option,
    load_lock,
    lockfile_option,
    output_errors,
    scan_paths,
    timeout_option,
    writable,
)


@click.command("update", epilog=exits.HELP)
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@lockfile_option
@click.option("--image", "images", multiple=True, metavar="REF", help="Only this reference (repeatable).")
@click.option("--check", is_flag=True, help="Write nothing; exit 1 if the lock is missing entries or stale.")
@click.option(
    "--diff",
    "show_diff",
    is_flag=True,
    help="Then show what the re-pinned images change (packages, layers, bytes to download).",
)
@click.option(
    "--markdown", is_flag=True, help="With --diff: the diff as Markdown (a pull request's description)."
)
@click.option(
    "--dl-dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="With --diff: BitBake's DL_DIR; its layers are not downloaded again, new ones are kept there "
    "(default: ~/.cache/container-lock).",
)
@jobs_option
@timeout_option
@define_option
@json_option
def update_command(
    paths: tuple[Path, ...],
    lockfile: Path,
    images: tuple[str, ...],
    check: bool,
    show_diff: bool,
    markdown: bool,
    dl_dir: Path | None,
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

    if (markdown or dl_dir) and not show_diff:
        fail(f"{'--markdown' if markdown else '--dl-dir'} goes with --diff")
    if markdown and as_json:
        fail("--markdown and --json: give one of them")
    if dl_dir is not None and not dl_dir.is_dir():
        fail(f"--dl-dir {dl_dir}: no such directory")
    if dl_dir is not None and not os.access(dl_dir, os.W_OK | os.X_OK):
        fail(f"--dl-dir {dl_dir}: not writable by this user (new layers are kept there); give one that is")
    if not paths and not lockfile.exists():
        fail(
            f"{lockfile}: no such lockfile, and no PATHS to scan: give the layers or recipes "
            "(or -l the lockfile to re-resolve)"
        )
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
    with output_errors(lockfile, "lockfile"):
        written = False if check else updating.write(plan, lockfile)
    diff_status, diff = _diff(plan, dl_dir, timeout, as_json) if show_diff else (exits.OK, None)
    if as_json:
        doc = render.as_json(plan, lockfile, written)
        if show_diff:
            from changes.report import as_json as diff_json

            doc["diff"] = diff and diff_json(diff)
        print(json.dumps(doc, indent=2, sort_keys=True))
        render.problems(plan, lockfile, written, check)
    elif markdown and diff is not None:
        from changes.report import markdown as diff_markdown

        sys.stdout.write(diff_markdown(diff))
    else:
        render.show(plan, lockfile, written, check)
        if diff is not None:
            from ..render import diff as diff_render

            diff_render.show(diff, [])
    if diff_status:
        sys.exit(diff_status)
    if plan.errors:
        sys.exit(exits.REGISTRY)
    if check and (plan.pending or (plan.changes and not lockfile.exists())):
        sys.exit(exits.CHECK_FAILED)


def _diff(
    plan: UpdatePlan, dl_dir: Path | None, timeout: float, quiet: bool
) -> tuple[int, ReleaseDiff | None]:
    """The diff of the re-pinned images (exit status 3 and a message when a registry failed)."""
    from changes.compare import compare
    from containerlock.contents.inventory import InventoryError
    from containerlock.fetch.skopeo import RegistryError
    from containerlock.oci.manifest import ManifestError

    from ..contents import blob_dir
    from ..progress import progress
    from ..update_diff import releases

    try:
        with progress("reading the re-pinned images", quiet=quiet) as advance:
            before, after = releases(plan, blob_dir(dl_dir), timeout, advance)
    except RegistryError as error:
        err().print(f"[red]diff failed[/] {escape(str(error))}")
        return exits.REGISTRY, None
    except (InventoryError, ManifestError, FileNotFoundError) as error:
        err().print(f"[red]diff failed[/] {escape(str(error))}")
        return exits.REGISTRY, None
    return exits.OK, compare(before, after)
