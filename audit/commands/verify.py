"""`container-lock verify`: the signatures of pinned images against the policy's signers."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from ..verify import ImageVerdict

from .. import exits
from ..console import err, escape, out
from ..exits import fail
from ..inputs import (
    define_option,
    json_option,
    load_lock,
    load_policy,
    lockfile_option,
    nothing_to_judge,
    output_errors,
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
@click.option(
    "--provenance",
    is_flag=True,
    help="Check SLSA provenance attestations of every image (always where [[provenance]] applies).",
)
@click.option("--record", is_flag=True, help="Write verified signers and provenance into the lockfile.")
@timeout_option
@define_option
@json_option
def verify_command(
    paths: tuple[Path, ...],
    lockfile: Path,
    policy_spec: str,
    trusted_root: Path | None,
    offline: bool,
    provenance: bool,
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

    Provenance: SLSA v1 / v0.2 attestations (bundles, or legacy sha256-<hex>.att) signed by a
    policy signer, about the pinned digest, judged by the policy's [[provenance]] rule
    (builder_id, source_uri, build_type); a required one that is missing or refused fails
    (exit 1) unless the policy says `provenance = "warning"`.
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
    verdicts = verifying.verify(found, lock, policy, policy_dir, trusted_root, offline, timeout, provenance)
    if not verdicts:
        where = "no docker:// reference in the recipes nor entry in the lockfile"
        nothing_to_judge("verify", where, policy, provenance)
    with output_errors(lockfile, "lockfile"):
        written = verifying.record(lockfile, verdicts) if record else False
    failed = verifying.failed(verdicts, policy)
    relaxed = policy.severity("unsigned") != "error"
    if as_json:
        print(json.dumps(render.as_json(verdicts, policy, written), indent=2, sort_keys=True))
    else:
        render.show(verdicts, policy, relaxed, policy.severity("provenance") != "error")
        if not verdicts:
            out().print("nothing to verify: no docker:// reference in the recipes nor entry in the lockfile")
        if record:
            out().print(f"{escape(str(lockfile))}: {'written' if written else 'unchanged'}")
    if any(v.error for v, _ in verdicts):
        sys.exit(exits.REGISTRY)
    if failed:
        strict = policy.severity("unsigned") == "error"
        names = ", ".join(f"{v.key} ({_why(v, p, strict)})" for v, p in failed)
        err().print(f"[red]not verified:[/] {escape(names)}")
        sys.exit(exits.CHECK_FAILED)


def _why(verdict: ImageVerdict, platforms: list[str], signatures: bool) -> str:
    """The failing statuses of one image: signature (when `signatures` fail), provenance or both."""
    from ..verify import ACCEPTED

    parts = []
    if signatures and verdict.status(platforms) not in ACCEPTED:
        parts.append(verdict.status(platforms))
    checked = verdict.provenance_status(platforms)
    if checked not in (None, *ACCEPTED):
        parts.append(f"provenance: {checked}")
    return ", ".join(parts)
