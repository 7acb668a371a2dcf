"""Entry point of the `container-lock` command: the command group and how it exits.

Each command lives in its own module under `audit.commands`; what it shows in
`audit.render`. Exit statuses: see `audit.exits` (and every command's --help).
"""

from __future__ import annotations

import contextlib
import os
import sys

import click

from . import exits
from .commands.audit import audit_command
from .commands.check import check_command
from .commands.diff import diff_command
from .commands.inventory import inventory_command
from .commands.sbom import sbom_command
from .commands.update import update_command
from .commands.verify import verify_command
from .commands.vulndb import vulndb_command

# rich, the policies and the package metadata are imported where used: a command pays only
# for what it needs (`update` of 100 tags takes less time than importing all of them).


def print_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    """--version: the installed distribution's version."""
    if value and not ctx.resilient_parsing:
        from containerlock.version import tool_version

        click.echo(f"container-lock, version {tool_version()}")
        ctx.exit()


@click.group(context_settings={"help_option_names": ["-h", "--help"]}, epilog=exits.HELP)
@click.option(
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=print_version,
    help="Show the version and exit.",
)
def cli() -> None:
    """Pin, check and audit the container images that BitBake recipes embed."""


for command in (
    update_command,
    check_command,
    verify_command,
    sbom_command,
    inventory_command,
    vulndb_command,
    audit_command,
    diff_command,
):
    cli.add_command(command)


def _stop(code: int, message: str | None = None) -> None:
    """Leave now: worker threads still waiting on a registry are not waited for."""
    if message:
        sys.stderr.write(message + "\n")
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(BrokenPipeError, ValueError):
            stream.flush()
    os._exit(code)


def main(argv: list[str] | None = None) -> None:
    """Run the command line; bad input exits 2 with a message, never a traceback."""
    try:
        status = cli.main(args=argv, prog_name="container-lock", standalone_mode=False)
    except click.ClickException as error:
        error.show()
        sys.exit(error.exit_code)
    except (click.Abort, KeyboardInterrupt):
        _stop(exits.INTERRUPTED, "container-lock: interrupted; nothing was written")
    except BrokenPipeError:
        _stop(exits.OK)  # the reader went away (`… | head`)
    except Exception as error:
        if os.environ.get("CONTAINER_LOCK_DEBUG"):
            raise
        first = str(error).splitlines()[0] if str(error) else ""
        _stop(
            exits.INTERNAL,
            f"container-lock: internal error: {type(error).__name__}: {first}\n"
            "please report it (with CONTAINER_LOCK_DEBUG=1 set, the command prints where it happened)",
        )
    sys.exit(status if isinstance(status, int) else exits.OK)
