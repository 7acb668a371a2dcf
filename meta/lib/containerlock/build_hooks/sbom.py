"""At the end of a build: the SBOM of the embedded images, made by the `container-lock` CLI.

The layer does not import the CLI's packages (it must work when only `meta/`
is in a build): it runs the command, so the build and `container-lock sbom
--deploy-dir` are one implementation and give the same bytes.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import bb

from ..lock.recipe import lockfile_path

SBOM_TIMEOUT = 600


def _has_manifests(deploy: Path) -> bool:
    return any(p for p in deploy.glob("*.json") if not p.name.endswith(".cdx.json"))


def sbom_command(
    command: list[str], deploy: Path, target: Path, vulndb: str | None, lock: Path | None = None
) -> list[str]:
    """The command line: `sbom --deploy-dir … -o …`, with `--db` when CONTAINER_LOCK_VULNDB names an
    index, and `-l` when CONTAINER_LOCKFILE exists (locked digests, verified provenance)."""
    found = [*command, "sbom", "--deploy-dir", str(deploy), "-o", str(target)]
    found += ["--db", vulndb] if vulndb else []
    return [*found, "-l", str(lock)] if lock is not None and lock.is_file() else found


def write_sbom(event: Any, d: Any) -> None:
    """BuildCompleted: `${CONTAINER_LOCK_SBOM_CLI} sbom --deploy-dir … -o ${CONTAINER_LOCK_SBOM_FILE}`
    (with the known vulnerabilities of `--db ${CONTAINER_LOCK_VULNDB}` when it is set)."""
    if (d.getVar("CONTAINER_LOCK_SBOM") or "0") != "1" or event.getFailures():
        return
    deploy = Path(d.getVar("CONTAINER_LOCK_DEPLOY_DIR"))
    if not _has_manifests(deploy):
        return
    command = shlex.split(d.getVar("CONTAINER_LOCK_SBOM_CLI") or "container-lock")
    if not command or shutil.which(command[0]) is None:
        bb.note(
            f"container-lock: '{command[0] if command else ''}' is not installed (CONTAINER_LOCK_SBOM_CLI); "
            f"make the SBOM with `container-lock sbom --deploy-dir {deploy}`"
        )
        return
    target = Path(d.getVar("CONTAINER_LOCK_SBOM_FILE"))
    # The build's manifests carry its SOURCE_DATE_EPOCH; one exported in BitBake's
    # environment must not override them.
    env = {k: v for k, v in os.environ.items() if k != "SOURCE_DATE_EPOCH"}
    try:
        result = subprocess.run(
            sbom_command(
                command,
                deploy,
                target,
                (d.getVar("CONTAINER_LOCK_VULNDB") or "").strip() or None,
                lockfile_path(d),
            ),
            capture_output=True,
            text=True,
            env=env,
            timeout=SBOM_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        bb.warn(f"container-lock: the SBOM of the container images was not written: {err}")
        return
    if result.returncode:
        bb.warn(f"container-lock: the SBOM of the container images was not written: {result.stderr.strip()}")
        return
    bb.plain(f"container-lock: SBOM of the container images: {target}")
