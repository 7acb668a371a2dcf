"""Options and inputs shared by the commands; every unusable input exits 2 with a message naming it."""

from __future__ import annotations

import errno
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
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


class Finite(click.FloatRange):
    """A finite number in the range (`inf`, `nan` and `1e309` are refused where the option is read)."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(
                f"{value!r} is not a finite number; give a number in {self._describe_range()}", param, ctx
            )
        return number


MAX_TIMEOUT = 86400.0  # a day: longer is a typo (and past the range of the clocks a request waits on)
timeout_option = click.option(
    "--timeout",
    type=Finite(min=0, min_open=True, max=MAX_TIMEOUT),
    default=60.0,
    show_default=True,
    help=f"Seconds per registry request (> 0, at most {MAX_TIMEOUT:g}).",
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
        from sbom import kind

        fail(kind.mistaken(path, kind.LOCKFILE, "the lockfile `container-lock update` wrote") or str(error))
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


_WRITE_HINTS = {
    errno.EACCES: "the directory is not writable by this user",
    errno.EPERM: "the directory is not writable by this user",
    errno.EROFS: "the file system is read-only",
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is exhausted",
}


@contextmanager
def output_errors(path: Path, what: str) -> Iterator[None]:
    """Writing the `what` at `path` (the path the user gave): an OSError (a read-only or full disk, a
    directory that cannot hold files…) exits 2 naming `path`, not the temporary file beside it."""
    try:
        yield
    except OSError as error:
        reason = error.strerror or str(error)
        hint = _WRITE_HINTS.get(error.errno or 0, "give a path where a file can be created")
        fail(f"{path}: cannot write the {what} ({reason}; {hint}); nothing was written")


def write_output(path: Path, data: bytes, what: str) -> None:
    """Write `data` to `path` atomically (all or nothing); exit 2 naming `path` if it cannot be written."""
    from containerlock.files import atomic_write

    with output_errors(path, what):
        atomic_write(path, data)


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


def requirements(policy: Policy, provenance: bool = False) -> list[str]:
    """What the policy demands of every image it applies to, failing closed: verified signatures
    ([[signers]], `unsigned` an error), required provenance ([[provenance]] with `required`,
    `provenance` an error; or `--provenance`). A command that judged no image must not pass these."""
    found = []
    if policy.signers and policy.severity("unsigned") == "error":
        found.append("signatures ([[signers]])")
    required = provenance or any(rule.required for rule in policy.provenance)
    if required and policy.severity("provenance") == "error":
        found.append("provenance ([[provenance]])" if not provenance else "provenance (--provenance)")
    return found


def nothing_to_judge(what: str, where: str, policy: Policy, provenance: bool = False) -> None:
    """Exit 2 when no image was judged and the policy requires something of images."""
    required = requirements(policy, provenance)
    if required:
        fail(
            f"nothing to {what}: {where}; policy '{policy.name}' requires {' and '.join(required)}, which "
            "no image was judged for: give the layers or recipes that use the images (or the lockfile)"
        )
