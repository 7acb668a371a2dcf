"""`container-lock check`: evaluate a policy over recipes and the lockfile (no network)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from .. import exits
from ..console import err, escape
from ..inputs import (
    define_option,
    json_option,
    load_lock,
    load_policy,
    lockfile_option,
    nothing_to_judge,
    policy_option,
    scan_paths,
)


@click.command("check", epilog=exits.HELP)
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@lockfile_option
@policy_option("Policy file, or a built-in policy name.")
@define_option
@json_option
def check_command(
    paths: tuple[Path, ...], lockfile: Path, policy_spec: str, defines: tuple[str, ...], as_json: bool
) -> None:
    """Evaluate a policy over the recipes in PATHS and the lockfile (no network)."""
    from policies.evaluate import evaluate

    from ..render import check as render

    policy = load_policy(policy_spec)
    found = scan_paths(paths, defines)
    lock = load_lock(lockfile)
    present = lockfile.exists()
    if not present and not as_json:
        err().print(
            f"[yellow]note:[/] {escape(str(lockfile))} does not exist: checking the recipes without a lock"
        )
    if not found:
        nothing_to_judge("check", f"no docker:// reference in {', '.join(map(str, paths))}", policy)
    findings = evaluate(found, lock, lockfile if present else None, policy)
    if as_json:
        document = render.as_json(findings, policy, len(found), str(lockfile) if present else None)
        print(json.dumps(document, indent=2, sort_keys=True))
    else:
        render.show(findings, policy, len(found))
    if any(f.severity == "error" for f in findings):
        sys.exit(exits.CHECK_FAILED)
