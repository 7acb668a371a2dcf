"""Exit statuses of `container-lock`, and how a command stops with one."""

from __future__ import annotations

import sys
from typing import NoReturn

OK = 0
CHECK_FAILED = 1  # the check ran and failed: stale lock, policy, signatures, vulnerabilities, diff gate
BAD_INPUT = 2  # usage, a file or reference that cannot be used; nothing was changed
REGISTRY = 3  # a registry could not be asked about some image (the rest was still done)
INTERNAL = 4  # a bug in container-lock: please report it with the message
INTERRUPTED = 130  # Ctrl-C / SIGINT: stopped at once, nothing half-written

HELP = (
    "Exit status: 0 success; 1 the check failed (lock out of date, policy errors, "
    "a required signature not verified, a vulnerability at or above --fail-on, a snapshot older "
    "than --max-db-age, a finding introduced at or above --fail-on-new); 2 bad input (usage, a "
    "file, reference or option that cannot be used; nothing was changed); 3 a registry could not be asked "
    "about some image (the rest was still done); 4 internal error; 130 interrupted."
)


def fail(message: str, code: int = BAD_INPUT) -> NoReturn:
    """Print `error: message` on standard error and exit with `code`."""
    from .console import err, escape

    err().print(f"[bold red]error:[/] {escape(message)}")
    sys.exit(code)
