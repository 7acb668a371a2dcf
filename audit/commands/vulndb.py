"""`container-lock vulndb`: the local index of OSV records that `audit` and `sbom --db` use."""

from __future__ import annotations

import json
from pathlib import Path

import click

from .. import exits
from ..exits import fail
from ..inputs import db_option, json_option, output_errors, writable


@click.group("vulndb", epilog=exits.HELP)
def vulndb_command() -> None:
    """The offline vulnerability index: OSV exports imported into one sqlite file."""


@vulndb_command.command("import", epilog=exits.HELP)
@click.argument("sources", nargs=-1, required=True, type=click.Path(path_type=Path))
@db_option("The index to write (replaced atomically; its directory must exist).")
@json_option
def import_command(sources: tuple[Path, ...], db_path: Path, as_json: bool) -> None:
    """Index OSV records: SOURCES are osv.dev exports (an ecosystem's all.zip) or directories of
    *.json records. The index holds exactly these sources (a new import replaces it); it records
    the snapshot: each source's sha256, the record count and the newest `modified`.

    A record that cannot be used is reported (file, id, reason) and skipped.
    """
    from vulns.db import DbError, IndexWriteError, build

    from ..progress import progress
    from ..render import vulndb as render

    writable(db_path, "vulnerability index")
    try:
        with progress("importing OSV records", quiet=as_json) as advance:
            snapshot, problems = build(sources, db_path, advance)
    except DbError as error:
        fail(str(error))
    except IndexWriteError as error:
        with output_errors(db_path, "vulnerability index"):
            raise error from None
    except OSError as error:
        fail(f"{error.filename or db_path}: {error.strerror or error}")
    render.problems(problems)
    if as_json:
        doc = {**snapshot.to_json(), "problems": [str(p) for p in problems]}
        print(json.dumps(doc, indent=2, sort_keys=True))
    else:
        render.snapshot(db_path, snapshot)


@vulndb_command.command("show", epilog=exits.HELP)
@db_option("The index.")
@json_option
def show_command(db_path: Path, as_json: bool) -> None:
    """The snapshot an index holds: sources, sha256, counts, newest record and its age."""
    from vulns.db import DbError, Index

    from ..render import vulndb as render

    try:
        index = Index(db_path)
    except DbError as error:
        fail(str(error))
    if as_json:
        print(json.dumps(index.snapshot.to_json(), indent=2, sort_keys=True))
    else:
        render.snapshot(db_path, index.snapshot)
