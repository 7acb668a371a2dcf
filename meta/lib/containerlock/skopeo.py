"""skopeo commands, run through BitBake's runfetchcmd (its environment whitelist, logging),
retried with exponential backoff when the registry's failure is transient."""

from __future__ import annotations

import os
import shlex
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bb.fetch2 import FetchError, logger, runfetchcmd

from .registry_errors import explain, is_transient

DEFAULT_RETRIES = 3
DEFAULT_RETRY_DELAY = 1.0
MAX_RETRY_DELAY = 30.0


@dataclass(frozen=True)
class Skopeo:
    """Runs skopeo for one image; errors name the image, the registry and the cause."""

    d: Any
    image: str  # host[:port]/path:tag, for messages
    registry: str
    url: str

    def _retries(self) -> tuple[int, float]:
        try:
            retries = int(self.d.getVar("CONTAINER_FETCH_RETRIES") or DEFAULT_RETRIES)
            delay = float(self.d.getVar("CONTAINER_FETCH_RETRY_DELAY") or DEFAULT_RETRY_DELAY)
        except ValueError:
            raise FetchError(
                "CONTAINER_FETCH_RETRIES / CONTAINER_FETCH_RETRY_DELAY must be numbers", self.url
            ) from None
        return max(0, retries), max(0.0, delay)

    def run(self, args: list[str], what: str, log: Any = None, redirect: Path | None = None) -> None:
        """Run `skopeo <args>` (stdout to `redirect`), retrying transient failures."""
        cmd = shlex.join(["skopeo", *args]) + (f" > {shlex.quote(str(redirect))}" if redirect else "")
        retries, delay = self._retries()
        for attempt in range(retries + 1):
            try:
                runfetchcmd(cmd, self.d, quiet=True, log=log)
                return
            except FetchError as err:
                output = str(err) + (log.output() if hasattr(log, "output") else "")
                if attempt < retries and is_transient(output):
                    wait = min(MAX_RETRY_DELAY, delay * 2**attempt)
                    logger.warning(
                        "%s: %s from %s: %s; retrying in %.1f s (%d of %d)",
                        self.image,
                        what,
                        self.registry,
                        explain(output),
                        wait,
                        attempt + 1,
                        retries,
                    )
                    time.sleep(wait)
                    continue
                tries = f" (after {attempt + 1} attempts)" if attempt else ""
                raise FetchError(
                    f"{self.image}: {what} from registry {self.registry} failed{tries}: {explain(output)}",
                    self.url,
                ) from None

    def inspect_raw(self, source: str, tmpdir: Path) -> bytes:
        """The raw manifest bytes of `docker://<source>` (no blob is downloaded).

        Written to a file, not taken from stdout: the digest is over the exact bytes.
        """
        tmpdir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=tmpdir, prefix=f"manifest.{os.getpid()}.") as out:
            self.run(["inspect", "--raw", f"docker://{source}"], "manifest lookup", redirect=Path(out.name))
            return Path(out.name).read_bytes()

    def copy_to_store(self, source: str, blob_dir: Path, layout_dir: Path, log: Any) -> None:
        """Copy one image manifest's blobs into the shared blob directory.

        Blobs already present there are not downloaded again (skopeo checks the
        shared directory; it writes each blob to a temporary file and renames
        it). `--preserve-digests` keeps the registry's bytes.
        """
        self.run(
            [
                "copy",
                "--preserve-digests",
                "--dest-shared-blob-dir",
                str(blob_dir),
                f"docker://{source}",
                f"oci:{layout_dir}",
            ],
            "blob download",
            log=log,
        )
