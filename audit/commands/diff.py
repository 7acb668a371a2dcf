"""`container-lock diff OLD NEW`: what changed between two releases."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from .. import exits
from ..console import err, escape
from ..exits import fail
from ..inputs import db_option, json_option, vex_option

LEVELS = ("low", "medium", "high", "critical")


@click.command("diff", epilog=exits.HELP)
@click.argument("old", type=click.Path(path_type=Path))
@click.argument("new", type=click.Path(path_type=Path))
@db_option("Audit both sides against this vulnerability index (their own findings are ignored).", False)
@vex_option
@click.option(
    "--fail-on-new",
    type=click.Choice(LEVELS),
    metavar="LEVEL",
    help="Exit 1 when NEW introduces an untriaged finding at this level or above (low, medium, high, "
    "critical; unknown severity counts).",
)
@click.option("--markdown", is_flag=True, help="Markdown on stdout (release notes, a pull request).")
@json_option
def diff_command(
    old: Path,
    new: Path,
    db_path: Path | None,
    vex_paths: tuple[Path, ...],
    fail_on_new: str | None,
    markdown: bool,
    as_json: bool,
) -> None:
    """What changed between two releases: OLD and NEW are SBOMs made by `container-lock sbom`
    (audited or not), build manifests or deploy directories, or lockfiles (images only).

    Images added, removed and re-pinned (unchanged ones are counted); per re-pinned image the
    packages added, removed, upgraded and downgraded by the ecosystem's version rules, the
    layers reused and the bytes a device must download; the vulnerabilities fixed, introduced
    and still open (both sides audited, or --db).
    """
    from changes.compare import compare, failing
    from changes.read import ReleaseInputError, load, with_db_findings

    from ..render import diff as render

    if markdown and as_json:
        fail("--markdown and --json: give one of them")
    if vex_paths and db_path is None:
        fail("--vex applies to the audit that --db runs: give --db PATH too")
    try:
        (old_release, old_doc), (new_release, new_doc) = load(old), load(new)
    except ReleaseInputError as error:
        fail(str(error))
    if (old_release.kind == "lockfile") != (new_release.kind == "lockfile"):
        lock_side, other = (old, new) if old_release.kind == "lockfile" else (new, old)
        fail(
            f"{lock_side} is a lockfile (images only) and {other} is not: give two lockfiles, or an SBOM, "
            "build manifest or deploy directory on both sides"
        )
    if old_release.spec and new_release.spec and old_release.spec != new_release.spec:
        fail(
            f"{old} is CycloneDX {old_release.spec} and {new} is CycloneDX {new_release.spec}: "
            "compare SBOMs of one format (make both with this `container-lock sbom`)"
        )
    source = None
    if db_path is not None:
        if old_doc is None or new_doc is None:
            fail(f"--db {db_path}: lockfiles list images only, no packages to audit; give SBOMs")
        from vulns.db import DbError
        from vulns.vex import VexError

        try:
            with_db_findings(old_release, old_doc, db_path, vex_paths)
            with_db_findings(new_release, new_doc, db_path, vex_paths)
        except (DbError, VexError) as error:
            fail(str(error))
        source = f"--db {db_path} (snapshot {new_release.snapshot})"
    result = compare(old_release, new_release, source)
    if fail_on_new and result.vulnerabilities is None:
        fail(
            f"--fail-on-new {fail_on_new}: the vulnerabilities cannot be compared "
            f"({result.vulnerabilities_missing})"
        )
    blocking = failing(result, fail_on_new) if fail_on_new else []
    if as_json:
        from changes.report import as_json as json_form

        doc = json_form(result, blocking if fail_on_new else None)
        sys.stdout.write(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    elif markdown:
        from changes.report import markdown as markdown_form

        sys.stdout.write(markdown_form(result, blocking if fail_on_new else None))
    else:
        render.show(result, blocking)
    if blocking:
        err().print(
            f"[bold red]failed:[/] NEW introduces {len(blocking)} untriaged finding(s) at or above "
            f"{escape(str(fail_on_new))}"
        )
        sys.exit(exits.CHECK_FAILED)
