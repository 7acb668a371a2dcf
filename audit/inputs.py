"""Options and inputs shared by the commands; every unusable input exits 2 with a message naming it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from containerlock.lock import lockfile
from containerlock.oci.reference import InvalidReference

from .exits import fail
from .scan import Found, ScanError, scan

if TYPE_CHECKING:
    from containerlock.lock.policy import Policy

F = TypeVar("F", bound=Callable[..., Any])
DEFAULT_LOCKFILE = Path("container-lock.json")

lockfile_option = click.option(
    "--lockfile",
    "-l",
    type=click.Path(path_type=Path, dir_okay=False),
    default=DEFAULT_LOCKFILE,
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
json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable output on stdout.")
timeout_option = click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=60.0,
    show_default=True,
    help="Seconds per registry request (> 0).",
)
jobs_option = click.option(
    "--jobs",
    "-j",
    type=click.IntRange(min=1, max=256),
    default=8,
    show_default=True,
    help="Registry lookups in parallel (1-256).",
)


def db_option(text: str, required: bool = True) -> Callable[[F], F]:
    """--db PATH: the vulnerability index (`vulndb import` writes it, `audit` and `sbom` read it)."""
    return click.option(
        "--db",
        "db_path",
        required=required,
        type=click.Path(path_type=Path, dir_okay=False),
        help=text,
    )


def vex_option(function: F) -> F:
    """--vex FILE (repeatable): CycloneDX VEX or OpenVEX JSON."""
    return click.option(
        "--vex",
        "vex_paths",
        multiple=True,
        type=click.Path(path_type=Path, dir_okay=False),
        metavar="FILE",
        help="The team's triage: CycloneDX VEX or OpenVEX JSON (repeatable).",
    )(function)


def policy_option(text: str) -> Callable[[F], F]:
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


def parse_defines(defines: tuple[str, ...]) -> dict[str, str]:
    """`-D NAME=VALUE` options as a mapping."""
    values = {}
    for item in defines:
        name, sep, value = item.partition("=")
        if not sep or not name:
            fail(f"-D {item}: write NAME=VALUE")
        values[name] = value
    return values


def load_lock(path: Path) -> lockfile.Lock:
    """The lockfile at `path` (empty if it does not exist); exit 2 if it cannot be used."""
    try:
        return lockfile.load(path)
    except (lockfile.LockfileError, InvalidReference) as error:
        fail(str(error))
    except OSError as error:
        fail(f"{path}: cannot read the lockfile ({error.strerror or error})")


def writable(path: Path, what: str) -> Path:
    """`path` if a file can be written there: its directory exists (none is created)."""
    if path.is_dir():
        fail(f"{path}: is a directory; give the path of the {what}")
    parent = path.parent
    if not parent.is_dir():
        fail(f"{path}: directory {parent} does not exist; create it first (nothing is created for you)")
    return path


def scan_paths(paths: tuple[Path, ...], defines: tuple[str, ...]) -> list[Found]:
    """The docker:// URLs of the recipes and layers in `paths`."""
    try:
        return scan(paths, parse_defines(defines))
    except ScanError as error:
        fail(str(error))


def load_policy(spec: str) -> Policy:
    """A built-in policy or a policy file; exit 2 if it cannot be used."""
    from containerlock.lock.policy import PolicyError, load

    try:
        return load(spec)
    except PolicyError as error:
        fail(str(error))
