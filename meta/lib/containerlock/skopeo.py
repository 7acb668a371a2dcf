"""skopeo commands, run through BitBake's runfetchcmd (its environment whitelist, logging)."""

from __future__ import annotations

import shlex
import tempfile
from pathlib import Path

from bb.fetch2 import runfetchcmd


def _run(args: list[str], d: object, **kwargs: object) -> str:
    return runfetchcmd(shlex.join(args), d, **kwargs)


def inspect_raw(source: str, d: object, tmpdir: Path) -> bytes:
    """The raw manifest bytes of `docker://<source>` (no blob is downloaded).

    Written to a file, not taken from stdout: the digest is over the exact bytes.
    """
    tmpdir.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=tmpdir, prefix="manifest.") as out:
        cmd = shlex.join(["skopeo", "inspect", "--raw", f"docker://{source}"])
        runfetchcmd(f"{cmd} > {shlex.quote(out.name)}", d, quiet=True)
        return Path(out.name).read_bytes()


def copy_to_store(source: str, blob_dir: Path, layout_dir: Path, d: object, log: object) -> None:
    """Copy one image manifest's blobs into the shared blob directory.

    Blobs already present there are not downloaded again (skopeo checks the
    shared directory). `--preserve-digests` keeps the registry's bytes.
    """
    _run(
        [
            "skopeo",
            "copy",
            "--preserve-digests",
            "--dest-shared-blob-dir",
            str(blob_dir),
            f"docker://{source}",
            f"oci:{layout_dir}",
        ],
        d,
        log=log,
    )
