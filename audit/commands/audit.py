"""`container-lock audit`: known vulnerabilities of the packages inside the images, from an offline
OSV snapshot, with the team's VEX triage and a severity gate."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from .. import exits
from ..console import err, escape
from ..exits import fail
from ..inputs import Finite, db_option, json_option, vex_option, writable, write_output

LEVELS = ("low", "medium", "high", "critical")


@click.command("audit", epilog=exits.HELP)
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@db_option("The vulnerability index (`container-lock vulndb import`).")
@vex_option
@click.option(
    "--fail-on", type=click.Choice(LEVELS), help="Exit 1 on an untriaged finding at this level or above."
)
@click.option("--ignore-unfixed", is_flag=True, default=None, help="The gate ignores findings without a fix.")
@click.option(
    "--fail-on-unknown",
    is_flag=True,
    default=None,
    help="The gate fails on findings of unknown severity too.",
)
@click.option(
    "--policy",
    "-p",
    "policy_spec",
    metavar="FILE",
    help="Take the gate from the policy's [vulnerabilities] (options given here win).",
)
@click.option(
    "--max-db-age",
    type=Finite(min=0),
    metavar="DAYS",
    help="Exit 1 when the snapshot's newest record is older than this.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Write the SBOM with the findings (CycloneDX 1.6 vulnerabilities) here.",
)
@json_option
def audit_command(
    inputs: tuple[Path, ...],
    db_path: Path,
    vex_paths: tuple[Path, ...],
    fail_on: str | None,
    ignore_unfixed: bool | None,
    fail_on_unknown: bool | None,
    policy_spec: str | None,
    max_db_age: float | None,
    output: Path | None,
    as_json: bool,
) -> None:
    """Known vulnerabilities of every package inside every image: INPUTS are SBOMs made by
    `container-lock sbom` or build manifests; --db is the OSV index (`vulndb import`).

    Debian by source package and release, Alpine by origin and branch, rpm distributions by
    package, PyPI by normalised name; aliases (CVE, DSA, GHSA, PYSEC, …) are one finding.
    Findings triaged not_affected / false_positive in --vex are shown as such and do not fail.
    """
    from sbom.manifests import BuildManifestError
    from vulns.audit import SbomOutputError, run, sbom_text
    from vulns.db import DbError
    from vulns.gate import Gate
    from vulns.targets import TargetError
    from vulns.vex import VexError

    from ..inputs import load_policy
    from ..progress import progress
    from ..render import audit as render

    if output is not None:
        writable(output, "SBOM file")
    policy_gate = load_policy(policy_spec).vulnerabilities if policy_spec else None
    gate = Gate(
        fail_on or (policy_gate.fail_on if policy_gate else None),
        ignore_unfixed if ignore_unfixed is not None else bool(policy_gate and policy_gate.ignore_unfixed),
        fail_on_unknown if fail_on_unknown is not None else bool(policy_gate and policy_gate.fail_on_unknown),
    )
    try:
        with progress("auditing packages", quiet=as_json) as advance:
            result = run(db_path, inputs, vex_paths, gate, progress=advance)
        text = None
        if output is not None:
            doc = result.document
            if doc is None:
                if any(_is_sbom(p) for p in inputs):
                    fail("-o: give one SBOM, or build manifests only (their SBOM is made for you)")
                from sbom.generate import generate

                doc = json.loads(generate(inputs))
            text = sbom_text(result, doc)
    except (DbError, TargetError, VexError, BuildManifestError, SbomOutputError) as error:
        fail(str(error))
    if not result.packages:  # a gate that saw nothing must not pass
        fail(
            f"nothing to audit: {', '.join(str(p) for p in inputs)}: no image with a list of the packages "
            "inside; give the SBOM `container-lock sbom` wrote of a build that listed them (or its build "
            "manifests)"
        )
    if output is not None and text is not None:
        write_output(output, text.encode(), "SBOM")
        err().print(f"wrote {escape(str(output))}")
    if as_json:
        sys.stdout.write(json.dumps(result.to_json(), indent=2, sort_keys=True) + "\n")
        render.notes(result)
    else:
        render.show(result, gate)
        render.notes(result)
    status = exits.CHECK_FAILED if result.failing else exits.OK
    days = result.snapshot.age_days()
    if max_db_age is not None and (days is None or days > max_db_age):
        err().print(
            f"[bold red]failed:[/] the vulnerability snapshot is {render.age(result.snapshot)}, "
            f"older than --max-db-age {max_db_age:g}"
        )
        status = exits.CHECK_FAILED
    sys.exit(status)


def _is_sbom(path: Path) -> bool:
    try:
        return json.loads(path.read_text()).get("bomFormat") == "CycloneDX"
    except (OSError, ValueError, AttributeError):
        return False
