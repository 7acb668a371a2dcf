"""A fork server for the CLI: one Python process imports `audit.cli` once, then runs each
command line in a forked child (its own cwd, stdout/stderr files, process group and timeout).

Hundreds of command lines cost a fork each instead of an interpreter start and the imports.
The server runs as the test's user; a child may drop to another user (`run(..., user="clbuild")`)
before it runs the command (the interpreter may live where that user cannot read, e.g. under
/root: the imports are done by then). Protocol: one JSON object per line on stdin ({"argv",
"cwd", "timeout", "user", "home"}), one per line on the server's original stdout ({"status",
"stdout", "stderr", "seconds"}); a child killed on timeout has status -9.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import pkgutil
import pwd
import select
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parent.parent.parent
WARM_PACKAGES = ("audit", "sbom", "vulns", "changes", "containerlock")
# Imported late by the standard library (zipfile's cp437 names, idna hosts): a child that dropped
# root may not be able to read the interpreter's own files (/root/.pyenv) any more.
WARM_MODULES = (
    "encodings",
    "sqlite3",
    "zipfile",
    "zlib",
    "bz2",
    "lzma",
    "json",
    "tomllib",
    "ssl",
    "http.client",
)
TIMED_OUT = -9


@dataclass(frozen=True)
class Result:
    """What one command line did."""

    status: int
    stdout: str
    stderr: str
    seconds: float


def _warm_up() -> None:
    """Import the CLI and every module of the project's packages: the children inherit them."""
    importlib.import_module("audit.cli")
    for name in WARM_MODULES:
        with contextlib.suppress(Exception):
            importlib.import_module(name)
    import encodings

    for info in pkgutil.iter_modules(encodings.__path__, "encodings."):
        with contextlib.suppress(Exception):
            importlib.import_module(info.name)
    for name in WARM_PACKAGES:
        with contextlib.suppress(Exception):
            package = importlib.import_module(name)
            for info in pkgutil.walk_packages(package.__path__, name + "."):
                if info.name.endswith(".__main__"):
                    continue  # runs the command line
                with contextlib.suppress(Exception):
                    importlib.import_module(info.name)


def _become(user: str, home: str) -> None:
    """Drop root for `user` (its groups too), with `home` as HOME."""
    entry = pwd.getpwnam(user)
    os.setgroups(os.getgrouplist(user, entry.pw_gid))
    os.setgid(entry.pw_gid)
    os.setuid(entry.pw_uid)
    os.environ.update(HOME=home, USER=user, LOGNAME=user)


def _child(request: dict[str, Any], out: IO[bytes], err: IO[bytes]) -> None:
    """In the forked child: run `main(argv)` as `container-lock` would, exit with its status."""
    code = 1
    argv = request["argv"]
    try:
        os.setpgid(0, 0)
        if request.get("user"):
            _become(request["user"], request["home"])
        elif request.get("home"):
            os.environ["HOME"] = request["home"]
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(out.fileno(), 1)
        os.dup2(err.fileno(), 2)
        os.chdir(request["cwd"])
        sys.argv = ["container-lock", *argv]
        from audit.cli import main

        try:
            main(argv)
            code = 0
        except SystemExit as stop:
            if stop.code is None:
                code = 0
            elif isinstance(stop.code, int):
                code = stop.code
            else:
                sys.stderr.write(f"{stop.code}\n")
                code = 1
    except BaseException:  # what the interpreter would print for an uncaught exception
        traceback.print_exc()
        code = 1
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(code)


def _run_one(request: dict[str, Any]) -> dict[str, Any]:
    started = time.monotonic()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        pid = os.fork()
        if pid == 0:
            _child(request, out, err)
        pidfd = os.pidfd_open(pid)
        try:
            ready, _, _ = select.select([pidfd], [], [], request.get("timeout", 60))
            if not ready:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)
        finally:
            os.close(pidfd)
        _, wait_status = os.waitpid(pid, 0)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)  # what the command left running
        status = os.waitstatus_to_exitcode(wait_status) if ready else TIMED_OUT
        out.seek(0)
        err.seek(0)
        return {
            "status": status,
            "stdout": out.read().decode(errors="replace"),
            "stderr": err.read().decode(errors="replace"),
            "seconds": time.monotonic() - started,
        }


def serve() -> None:
    """The server loop: requests on stdin, answers on the original stdout."""
    answers = os.fdopen(os.dup(1), "w")
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)  # nothing the imports print reaches the protocol
    _warm_up()
    answers.write(json.dumps({"ready": os.getpid()}) + "\n")
    answers.flush()
    for line in sys.stdin:
        answers.write(json.dumps(_run_one(json.loads(line))) + "\n")
        answers.flush()


class ForkServer:
    """A running fork server with `env` for the commands."""

    def __init__(self, env: dict[str, str]) -> None:
        self._process = subprocess.Popen(
            [sys.executable, "-m", "tests.harness.forkserver"],
            cwd=ROOT,
            env={**env, "PYTHONDONTWRITEBYTECODE": "1", "PYTHONPATH": str(ROOT)},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._process.stdin is not None and self._process.stdout is not None
        self._in, self._out = self._process.stdin, self._process.stdout
        hello = self._out.readline()
        if not hello:
            raise RuntimeError("the fork server did not start")

    def run(
        self,
        argv: list[str],
        cwd: Path,
        user: str | None = None,
        home: Path | None = None,
        timeout: float = 60,
    ) -> Result:
        """Run `container-lock argv` in `cwd` (as `user`, HOME `home`); wait for its exit status."""
        request = {"argv": argv, "cwd": str(cwd), "timeout": timeout, "user": user}
        request["home"] = str(home) if home else None
        self._in.write(json.dumps(request) + "\n")
        self._in.flush()
        line = self._out.readline()
        if not line:
            raise RuntimeError("the fork server died")
        return Result(**json.loads(line))

    def close(self) -> None:
        self._in.close()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()

    def __enter__(self) -> ForkServer:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


if __name__ == "__main__":
    serve()
