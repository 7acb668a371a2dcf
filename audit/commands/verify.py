"""`container-lock verify`: the signatures of pinned images against the policy's signers."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from .. import exits
from ..console import err, escape, out
from ..exits import fail
from ..inputs import (
    define_option,
    json_option,
    load_lock,
    load_policy,
    lockfile_option,
    policy_option,
    scan_paths,
    timeout_option,
    writable,
)


@click.command("verify", epilog=exits.HELP)
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@lockfile_option
@policy_option("Policy with [[signers]]; an image no signer applies to is not required to be signed.")
@click.option(
    "--trusted-root",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    help="A private Sigstore deployment's trusted_root.json (default: public Sigstore, via TUF).",
)
@click.option("--offline", is_flag=True, help="Use the cached public trust root; do not update it.")
@click.option("--record", is_flag=True, help="Write verified signers into the lockfile.")
@timeout_option
@define_option
@json_option
def verify_command(
    paths: tuple[Path, ...],
    lockfile: Path,
    policy_spec: str,
    trusted_root: Path | None,
    offline: bool,
    record: bool,
    timeout: float,
    defines: tuple[str, ...],
    as_json: bool,
) -> None:
    """Verify the signatures of every pinned image against the policy's signers.

    cosign v3 bundles (OCI referrers or the sha256-<hex> tag fallback) are verified
    with sigstore-python; legacy sha256-<hex>.sig signatures with the policy's key.
    Fails closed: an image that [[signers]] apply to and whose signature is not
    verified (unsigned, rejected, not pinned) fails the command (exit 1) unless the
    policy says `unsigned = "warning"`.
    """
    from .. import verify as verifying
    from ..render import verify as render
    from ..signatures import TrustInputError, check_trust_inputs

    policy = load_policy(policy_spec)
    found = scan_paths(paths, defines)
    if not lockfile.exists():
        source = click.get_current_context().get_parameter_source("lockfile")
        if not paths or source != click.core.ParameterSource.DEFAULT:
            fail(
                f"{lockfile}: no such lockfile; write it with `container-lock update`, "
                "or give recipes (PATHS) whose URLs carry digests"
            )
        if not as_json:
            err().print(
                f"[yellow]note:[/] {escape(str(lockfile))} does not exist: "
                "verifying the digests pinned in the recipes only"
            )
    lock = load_lock(lockfile)
    if record:
        writable(lockfile, "lockfile")
    policy_dir = Path(policy_spec).parent if Path(policy_spec).is_file() else Path.cwd()
    try:
        check_trust_inputs(policy.signers, policy_dir, trusted_root)
    except TrustInputError as error:
        fail(str(error))
    verdicts = verifying.verify(found, lock, policy, policy_dir, trusted_root, offline, timeout)
    written = verifying.record(lockfile, verdicts) if record else False
    failed = verifying.failed(verdicts, policy)
    relaxed = policy.severity("unsigned") != "error"
    if as_json:
        print(json.dumps(render.as_json(verdicts, policy, written), indent=2, sort_keys=True))
    else:
        render.show(verdicts, policy, relaxed)
        if not verdicts:
            out().print("nothing to verify: no docker:// reference in the recipes nor entry in the lockfile")
        if record:
            out().print(f"{escape(str(lockfile))}: {'written' if written else 'unchanged'}")
    if any(v.error for v, _ in verdicts):
        sys.exit(exits.REGISTRY)
    if failed:
        names = ", ".join(f"{v.key} ({v.status(p)})" for v, p in failed)
        err().print(f"[red]not verified:[/] {escape(names)}")
        sys.exit(exits.CHECK_FAILED)
