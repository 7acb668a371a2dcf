"""Entry point of the `container-lock` command.

Exit status: 0 success; 1 the check failed (lock out of date, policy errors);
2 bad input (usage, lockfile, policy file, path); 3 a registry could not be
asked about some image (the rest was still done).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import click

from containerlock import lockfile
from containerlock import lockfile as lockfile_module
from containerlock.reference import InvalidReference

from . import update as updating
from .console import err, escape, out
from .scan import Found, ScanError, scan

if TYPE_CHECKING:
    from containerlock.policy import Policy

# rich, the policies and the package metadata are imported where used: a command pays only
# for what it needs (`update` of 100 tags takes less time than importing all of them).

EXIT_OK, EXIT_CHECK_FAILED, EXIT_BAD_INPUT, EXIT_REGISTRY = 0, 1, 2, 3


def fail(message: str, code: int = EXIT_BAD_INPUT) -> NoReturn:
    err().print(f"[bold red]error:[/] {escape(message)}")
    sys.exit(code)


def short(digest: str | None) -> str:
    return "-" if not digest else digest[:19] + "…"


def parse_defines(defines: tuple[str, ...]) -> dict[str, str]:
    values = {}
    for item in defines:
        name, sep, value = item.partition("=")
        if not sep or not name:
            fail(f"-D {item}: write NAME=VALUE")
        values[name] = value
    return values


def load_lock(path: Path) -> lockfile.Lock:
    try:
        return lockfile.load(path)
    except (lockfile.LockfileError, InvalidReference) as error:
        fail(str(error))


def scan_paths(paths: tuple[Path, ...], defines: tuple[str, ...]) -> list[Found]:
    try:
        return scan(paths, parse_defines(defines))
    except ScanError as error:
        fail(str(error))


def print_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    """--version: the installed distribution's version."""
    if value and not ctx.resilient_parsing:
        from containerlock.version import tool_version

        click.echo(f"container-lock, version {tool_version()}")
        ctx.exit()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=print_version,
    help="Show the version and exit.",
)
def main() -> None:
    """Pin, check and audit the container images that BitBake recipes embed."""


lockfile_option = click.option(
    "--lockfile",
    "-l",
    type=click.Path(path_type=Path),
    default=Path("container-lock.json"),
    show_default=True,
    help="The lockfile (CONTAINER_LOCKFILE in the build).",
)
define_option = click.option(
    "--define",
    "-D",
    "defines",
    multiple=True,
    metavar="NAME=VALUE",
    help="A value for ${NAME} in docker:// URLs (repeatable).",
)


def policy_option(text: str):
    """The --policy option of `check` and `verify`."""
    return click.option(
        "--policy",
        "-p",
        "policy_spec",
        metavar="FILE|default|strict",
        default="default",
        show_default=True,
        help=text,
    )


json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable output on stdout.")
timeout_option = click.option(
    "--timeout",
    default=60.0,
    show_default=True,
    help="Seconds per registry request (skopeo --command-timeout).",
)


@main.command("update")
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@lockfile_option
@click.option("--image", "images", multiple=True, metavar="REF", help="Only this reference (repeatable).")
@click.option("--check", is_flag=True, help="Write nothing; exit 1 if the lock is missing entries or stale.")
@click.option("--jobs", "-j", default=8, show_default=True, help="Registry lookups in parallel.")
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
    re-resolved.
    """
    found = scan_paths(paths, defines)
    lock = load_lock(lockfile)
    try:
        plan = updating.plan(found, lock, images, jobs=jobs, timeout=timeout)
    except (updating.UsageError, InvalidReference) as error:
        fail(str(error))
    written = False if check else updating.write(plan, lockfile)
    if as_json:
        print(
            json.dumps(
                {
                    "lockfile": str(lockfile),
                    "written": written,
                    "changes": [
                        {
                            "reference": c.key,
                            "status": c.status,
                            "old": c.old and c.old.digest,
                            "new": c.new and c.new.digest,
                            "error": c.error,
                        }
                        for c in plan.changes
                    ],
                    "unresolved": [
                        {"where": f.where, "url": f.text, "problem": f.problem} for f in plan.unresolved
                    ],
                },
                indent=2,
                sort_keys=True,
            )
        )
    else:
        from rich.table import Table

        table = Table("reference", "lock", "registry", "status", title=f"{lockfile}")
        for c in plan.changes:
            style = {"error": "red", "added": "green", "updated": "yellow", "platforms": "yellow"}.get(
                c.status, ""
            )
            table.add_row(
                c.key,
                short(c.old and c.old.digest),
                short(c.new and c.new.digest),
                f"[{style}]{c.status}[/]" if style else c.status,
            )
        out().print(table)
        for f in plan.unresolved:
            err().print(f"[yellow]skipped[/] {escape(f'{f.where}: {f.text}: {f.problem}')}")
        for c in plan.errors:
            err().print(f"[red]failed[/] {escape(str(c.error))}")
        if check:
            verdict = "out of date" if plan.pending else "up to date"
            out().print(f"{lockfile}: {verdict} ({len(plan.pending)} to change)")
        else:
            out().print(f"{lockfile}: {'written' if written else 'unchanged'}")
    if plan.errors:
        sys.exit(EXIT_REGISTRY)
    if check and (plan.pending or not lockfile.exists()):
        sys.exit(EXIT_CHECK_FAILED)


def policy_inputs(
    policy_spec: str, paths: tuple[Path, ...], defines: tuple[str, ...], lockfile: Path
) -> tuple[Policy, list[Found], lockfile_module.Lock]:
    """The policy, the docker:// URLs of the recipes in PATHS and the lock; exit 2 on bad input."""
    from containerlock.policy import PolicyError
    from containerlock.policy import load as load_policy

    try:
        policy = load_policy(policy_spec)
    except PolicyError as error:
        fail(str(error))
    return policy, scan_paths(paths, defines), load_lock(lockfile)


@main.command("check")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@lockfile_option
@policy_option("Policy file, or a built-in policy name.")
@define_option
@json_option
def check_command(
    paths: tuple[Path, ...], lockfile: Path, policy_spec: str, defines: tuple[str, ...], as_json: bool
) -> None:
    """Evaluate a policy over the recipes in PATHS and the lockfile (no network)."""
    policy, found, lock = policy_inputs(policy_spec, paths, defines, lockfile)
    from policies.evaluate import evaluate

    findings = evaluate(found, lock, lockfile if lockfile.exists() else None, policy)
    errors = [f for f in findings if f.severity == "error"]
    if as_json:
        print(
            json.dumps(
                {
                    "policy": policy.name,
                    "references": len(found),
                    "findings": [f.to_json() for f in findings],
                },
                indent=2,
                sort_keys=True,
            )
        )
    else:
        for f in findings:
            colour = "red" if f.severity == "error" else "yellow"
            out().print(f"{escape(f.where)}: [{colour}]{f.severity}[/] {escape(f'[{f.rule}] {f.message}')}")
        out().print(
            f"{len(found)} references, {len(errors)} errors, {len(findings) - len(errors)} warnings "
            f"(policy '{policy.name}')"
        )
    if errors:
        sys.exit(EXIT_CHECK_FAILED)


@main.command("sbom")
@click.argument("manifests", nargs=-1, type=click.Path(path_type=Path))
@click.option(
    "--deploy-dir", type=click.Path(path_type=Path), help="DEPLOY_DIR: read every build manifest in it."
)
@click.option(
    "--lockfile", "-l", type=click.Path(path_type=Path), help="Add the locked digests as properties."
)
@click.option(
    "--merge",
    "merge_into",
    type=click.Path(path_type=Path),
    metavar="IMAGE_SBOM.json",
    help="Add the images to this CycloneDX JSON (e.g. Isar's debsbom output).",
)
@click.option(
    "-o", "--output", type=click.Path(path_type=Path), help="Write here (atomically); default stdout."
)
@click.option("--format", "fmt", type=click.Choice(["json", "xml"]), default="json", show_default=True)
@click.option(
    "--source-date-epoch",
    type=int,
    envvar="SOURCE_DATE_EPOCH",
    help="Timestamp; default: $SOURCE_DATE_EPOCH, else the newest of the build manifests'.",
)
def sbom_command(
    manifests: tuple[Path, ...],
    deploy_dir: Path | None,
    lockfile: Path | None,
    merge_into: Path | None,
    output: Path | None,
    fmt: str,
    source_date_epoch: int | None,
) -> None:
    """CycloneDX 1.6 SBOM of the container images that loader packages embed.

    Reads the build manifests (MANIFESTS, or --deploy-dir), validates the
    document against the schema, and refuses to write an invalid one.
    """
    from sbom.generate import generate
    from sbom.manifests import BuildManifestError
    from sbom.output import SbomError, write

    if bool(manifests) == bool(deploy_dir):
        fail("give either build manifest files or --deploy-dir")
    try:
        text = generate(manifests, deploy_dir, lockfile, merge_into, fmt, source_date_epoch)
    except (BuildManifestError, SbomError, lockfile_module.LockfileError) as error:
        fail(str(error))
    if output is None:
        sys.stdout.write(text)
    else:
        write(text, output)
        err().print(f"wrote {output}")


@main.command("verify")
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@lockfile_option
@policy_option("Policy with [[signers]]; an image no signer applies to is skipped.")
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
    """
    from . import verify as verifying
    from .signatures import FAILURES

    policy, found, lock = policy_inputs(policy_spec, paths, defines, lockfile)
    policy_dir = Path(policy_spec).parent if Path(policy_spec).is_file() else Path.cwd()
    verdicts = verifying.verify(found, lock, policy, policy_dir, trusted_root, offline, timeout)
    written = verifying.record(lockfile, verdicts) if record else False
    severity = policy.severity("unsigned")
    rejected = {"unsigned", *FAILURES}
    failed = [v for v, p in verdicts if v.status(p) in rejected and severity == "error"]
    errors = [v for v, _ in verdicts if v.error]
    if as_json:
        print(
            json.dumps(
                {
                    "policy": policy.name,
                    "recorded": written,
                    "images": [
                        {
                            "reference": v.key,
                            "digest": v.digest,
                            "status": v.status(p),
                            "required": list(v.required),
                            "signed_digests": v.signed_digests,
                            "error": v.error,
                            "evidence": [e.__dict__ for e in v.evidence],
                        }
                        for v, p in verdicts
                    ],
                },
                indent=2,
                sort_keys=True,
            )
        )
    else:
        from rich.table import Table

        table = Table(
            "reference", "pinned", "status", "signed digest(s)", "detail", title=f"policy '{policy.name}'"
        )
        for v, p in verdicts:
            status = v.status(p)
            style = {"verified": "green", "error": "red"}.get(status) or (
                ("red" if severity == "error" else "yellow") if status in rejected else ""
            )
            details = "; ".join(sorted({f"{e.kind} {short(e.digest)}: {e.detail}" for e in v.evidence}))
            table.add_row(
                escape(v.key),
                short(v.digest),
                f"[{style}]{status}[/]" if style else status,
                ", ".join(short(d) for d in v.signed_digests) or "-",
                escape(v.error or details or ("no signature found" if v.required else "")),
            )
        out().print(table)
        if record:
            out().print(f"{lockfile}: {'written' if written else 'unchanged'}")
    if errors:
        sys.exit(EXIT_REGISTRY)
    if failed:
        sys.exit(EXIT_CHECK_FAILED)


@main.command("inventory")
@click.argument("source")
@click.option(
    "--platform", "platform_text", metavar="OS/ARCH[/VARIANT]", help="Of a multi-arch image (default: host)."
)
@timeout_option
@json_option
def inventory_command(source: str, platform_text: str | None, timeout: float, as_json: bool) -> None:
    """The packages inside an image: SOURCE is an image reference (pulled to a temporary
    directory) or a build manifest (what the build recorded).

    dpkg (status and distroless status.d), apk, rpm (sqlite), Python distributions and
    os-release, each package with the layer that brought it.
    """
    from containerlock.inventory import InventoryError
    from containerlock.platform import Platform, PlatformError
    from containerlock.skopeo import RegistryError
    from sbom.manifests import BuildManifestError

    from . import inventory as listing

    try:
        if Path(source).is_file():
            found = listing.of_manifest(Path(source))
        else:
            platform = Platform.parse(platform_text) if platform_text else None
            found = [listing.of_image(source, platform, timeout)]
    except (InventoryError, PlatformError, BuildManifestError) as error:
        fail(str(error))
    except RegistryError as error:
        fail(str(error), EXIT_REGISTRY)
    if as_json:
        print(
            json.dumps(
                {name: inv.to_json() if inv else None for name, inv in found}, indent=2, sort_keys=True
            )
        )
        return
    for name, inv in found:
        if inv is None:
            out().print(f'{escape(name)}: no inventory in the build manifest (CONTAINER_INVENTORY = "0"?)')
            continue
        title = f"{name}: {inv.os.get('PRETTY_NAME', 'no os-release')}, {len(inv.packages)} packages"
        from rich.table import Table

        table = Table("type", "name", "version", "arch", "source", "license", "layer", title=escape(title))
        for item in inv.packages:
            p = item.package
            table.add_row(
                p.type, p.name, p.version, p.arch or "", p.source or "", p.license or "", short(item.layer)
            )
        out().print(table)
        for note in inv.notes:
            err().print(f"[yellow]note:[/] {escape(note)}")
