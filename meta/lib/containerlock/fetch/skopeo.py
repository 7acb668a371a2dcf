"""The one skopeo client, for the layer and the CLI: retries with backoff, explained errors, timeouts.

How a command is started is the caller's: BitBake tasks go through
`runfetchcmd` (its environment whitelist and task log; see `fetcher`), the CLI
and the packaging task through `run_subprocess`. Registry settings are skopeo's
own: containers-registries.conf(5) (plain-HTTP registries, mirrors) and auth.json
(credentials), so every path uses the same ones. Standard library only.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from .registry_errors import explain, is_transient

DEFAULT_RETRIES = 3
DEFAULT_RETRY_DELAY = 1.0
MAX_RETRY_DELAY = 30.0


class CommandFailed(Exception):
    """skopeo exited non-zero (or could not start); `output` is what it said."""

    def __init__(self, output: str) -> None:
        super().__init__(output)
        self.output = output


class RegistryError(RuntimeError):
    """A registry could not answer for an image; the text names the image, the registry and the cause."""


class Runner(Protocol):
    """Runs `skopeo <args>`, stdout into `stdout` (a file) if given; raises CommandFailed."""

    def __call__(self, args: Sequence[str], stdout: Path | None, log: Any) -> None: ...


def run_subprocess(args: Sequence[str], stdout: Path | None, log: Any = None) -> None:
    """A Runner on `subprocess` (the CLI, packaging): stderr is kept for the error message."""
    try:
        with open(stdout, "wb") if stdout else open(os.devnull, "wb") as out:
            result = subprocess.run(["skopeo", *args], stdout=out, stderr=subprocess.PIPE, check=False)
    except FileNotFoundError:
        raise CommandFailed("skopeo: not found") from None
    if result.returncode:
        raise CommandFailed(result.stderr.decode(errors="replace"))


def _ignore(message: str) -> None:
    """Retry notices go nowhere unless the caller wants them."""


@dataclass(frozen=True)
class Skopeo:
    """skopeo for one image: each failure is retried if transient, then explained."""

    run: Runner
    image: str  # host[:port]/path:tag, for messages
    registry: str  # for messages; "" for local copies
    retries: int = DEFAULT_RETRIES
    retry_delay: float = DEFAULT_RETRY_DELAY
    timeout: float | None = None  # per command (skopeo --command-timeout)
    warn: Callable[[str], None] = _ignore

    def call(self, args: Sequence[str], what: str, stdout: Path | None = None, log: Any = None) -> None:
        """`skopeo <args>`, retried with exponential backoff while the failure is transient."""
        options = ["--command-timeout", f"{self.timeout:g}s"] if self.timeout else []
        for attempt in range(self.retries + 1):
            try:
                self.run([*options, *args], stdout, log)
                return
            except CommandFailed as failure:
                output = failure.output + (log.output() if hasattr(log, "output") else "")
                if attempt < self.retries and is_transient(output):
                    wait = min(MAX_RETRY_DELAY, self.retry_delay * 2**attempt)
                    self.warn(
                        f"{self.image}: {what} from {self.registry}: {explain(output)}; "
                        f"retrying in {wait:.1f} s ({attempt + 1} of {self.retries})"
                    )
                    time.sleep(wait)
                    continue
                tries = f" (after {attempt + 1} attempts)" if attempt else ""
                source = f" from registry {self.registry}" if self.registry else ""
                raise RegistryError(
                    f"{self.image}: {what}{source} failed{tries}: {explain(output)}"
                ) from None

    def _bytes(self, args: Sequence[str], what: str, tmpdir: Path | None) -> bytes:
        """stdout of `skopeo <args>` as exact bytes (written to a file, not decoded)."""
        if tmpdir is not None:
            tmpdir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=tmpdir, prefix=f"skopeo.{os.getpid()}.") as out:
            self.call(args, what, stdout=Path(out.name))
            return Path(out.name).read_bytes()

    def inspect_raw(self, source: str, tmpdir: Path | None = None) -> bytes:
        """The raw manifest bytes of `docker://<source>` (no blob is downloaded)."""
        return self._bytes(["inspect", "--raw", f"docker://{source}"], "manifest lookup", tmpdir)

    def inspect_config(self, source: str, tmpdir: Path | None = None) -> bytes:
        """The raw config blob of a single-platform image `docker://<source>`."""
        return self._bytes(["inspect", "--config", "--raw", f"docker://{source}"], "config lookup", tmpdir)

    def copy(self, source: str, dest: str, *options: str, what: str = "copy", log: Any = None) -> None:
        """`skopeo copy [options] <source> <dest>` (transport names included)."""
        self.call(["copy", *options, source, dest], what, log=log)
