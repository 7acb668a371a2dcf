"""The skopeo client as a BitBake task uses it: runfetchcmd, and the recipe's retry settings."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

from bb.fetch2 import FetchError, logger, runfetchcmd

from ..oci.reference import ImageReference
from . import skopeo


def _number(d: Any, var: str, default: float, url: str) -> float:
    try:
        return max(0.0, float(d.getVar(var) or default))
    except ValueError:
        raise FetchError(f"{var} = '{d.getVar(var)}' is not a number", url) from None


def _runner(d: Any) -> skopeo.Runner:
    """skopeo through runfetchcmd: BitBake's environment whitelist, task log and progress handler."""

    def run(args: Any, stdout: Path | None, log: Any) -> None:
        cmd = shlex.join(["skopeo", *args]) + (f" > {shlex.quote(str(stdout))}" if stdout else "")
        try:
            runfetchcmd(cmd, d, quiet=True, log=log)
        except FetchError as err:
            raise skopeo.CommandFailed(str(err)) from None

    return run


def client(d: Any, image: ImageReference, url: str) -> skopeo.Skopeo:
    """skopeo for `image`: CONTAINER_FETCH_RETRIES / _RETRY_DELAY / _TIMEOUT, retry notices as warnings."""
    return skopeo.Skopeo(
        _runner(d),
        image.tagged,
        image.registry,
        retries=int(_number(d, "CONTAINER_FETCH_RETRIES", skopeo.DEFAULT_RETRIES, url)),
        retry_delay=_number(d, "CONTAINER_FETCH_RETRY_DELAY", skopeo.DEFAULT_RETRY_DELAY, url),
        timeout=_number(d, "CONTAINER_FETCH_TIMEOUT", 0, url) or None,
        warn=logger.warning,
    )
