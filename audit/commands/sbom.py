"""`container-lock sbom`: CycloneDX 1.6 SBOM of the images that loader packages embed."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from .. import exits
from ..console import err, escape
from ..exits import fail
from ..inputs import db_option, vex_option, writable, write_output


@click.command("sbom", epilog=exits.HELP)
@click.argument("manifests", nargs=-1, type=click.Path(path_type=Path))
@click.option(
    "--deploy-dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="DEPLOY_DIR: read every build manifest in it.",
)
@click.option(
    "--lockfile",
    "-l",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Add the locked digests as properties.",
)
@click.option(
    "--merge",
    "merge_into",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    metavar="IMAGE_SBOM.json",
    help="Add the images to this CycloneDX JSON (e.g. Isar's debsbom output).",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Write here (atomically; its directory must exist); default stdout.",
)
@click.option("--format", "fmt", type=click.Choice(["json", "xml"]), default="json", show_default=True)
@click.option(
    "--source-date-epoch",
    callback=lambda ctx, param, value: _epoch(ctx, param, value),
    envvar="SOURCE_DATE_EPOCH",
    metavar="SECONDS",
    help="Timestamp (seconds since 1970, >= 0); default: $SOURCE_DATE_EPOCH, else the newest "
    "of the build manifests'.",
)
@db_option(
    "Add the known vulnerabilities of the packages inside the images, from this index "
    "(`container-lock vulndb import`; JSON only).",
    required=False,
)
@vex_option
def sbom_command(
    manifests: tuple[Path, ...],
    deploy_dir: Path | None,
    lockfile: Path | None,
    merge_into: Path | None,
    output: Path | None,
    fmt: str,
    source_date_epoch: int | None,
    db_path: Path | None,
    vex_paths: tuple[Path, ...],
) -> None:
    """CycloneDX 1.6 SBOM of the container images that loader packages embed.

    Reads the build manifests (MANIFESTS, or --deploy-dir), validates the
    document against the schema, and refuses to write an invalid one.
    """
    from containerlock.lock import lockfile as lockfile_module
    from sbom.generate import generate
    from sbom.manifests import BuildManifestError
    from sbom.output import SbomError

    from ..progress import progress

    if bool(manifests) == bool(deploy_dir):
        fail("give either build manifest files or --deploy-dir")
    if output is not None:
        writable(output, "SBOM file")
    if db_path is None and vex_paths:
        fail("--vex: give --db too (the triage is of the findings of an index)")
    if db_path is not None and fmt != "json":
        fail("--db: the vulnerabilities are added to the JSON SBOM only (--format json)")
    try:
        with progress("SBOM of the build manifests") as advance:
            text = generate(
                manifests, deploy_dir, lockfile, merge_into, fmt, source_date_epoch, progress=advance
            )
    except (BuildManifestError, SbomError, lockfile_module.LockfileError) as error:
        fail(str(error))
    if db_path is not None:
        text = _with_vulnerabilities(text, db_path, vex_paths)
    if output is None:
        sys.stdout.write(text)
    else:
        write_output(output, text.encode(), "SBOM")
        err().print(f"wrote {escape(str(output))}")


MAX_EPOCH = 253402300799  # 9999-12-31T23:59:59Z: the last second an SBOM timestamp can name


def _epoch(ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
    """--source-date-epoch, or $SOURCE_DATE_EPOCH: whole seconds from 0 to MAX_EPOCH; a bad value names
    where it came from (the option, or the environment)."""
    if value is None or value == "":
        return None
    hint = None
    if ctx.get_parameter_source(param.name or "") is click.core.ParameterSource.ENVIRONMENT:
        hint = "SOURCE_DATE_EPOCH (from the environment; unset it or fix it)"
    try:
        seconds = int(value)
    except ValueError:
        message = f"{value!r} is not a whole number of seconds since 1970"
        raise click.BadParameter(message, ctx, param, hint) from None
    if not 0 <= seconds <= MAX_EPOCH:
        raise click.BadParameter(
            f"{value} is out of range; give seconds since 1970 from 0 to {MAX_EPOCH} (year 9999)",
            ctx,
            param,
            hint,
        )
    return seconds


def _with_vulnerabilities(text: str, db_path: Path, vex_paths: tuple[Path, ...]) -> str:
    """`sbom --db`: the document with the findings of the index (`vulns.audit.with_findings`)."""
    from vulns.audit import SbomOutputError, with_findings
    from vulns.db import DbError
    from vulns.targets import TargetError
    from vulns.vex import VexError

    try:
        return with_findings(text, db_path, vex_paths)
    except (DbError, TargetError, VexError, SbomOutputError) as error:
        fail(str(error))
