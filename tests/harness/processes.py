"""Stopping the services the tests start."""

from __future__ import annotations

import subprocess


def stop(process: subprocess.Popen | None, grace: float = 10.0) -> None:
    """Terminate a process that still runs; kill it if it outlives `grace` seconds."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
