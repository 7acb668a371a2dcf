"""A real OCI registry (Debian's `docker-registry`) on 127.0.0.1, with access-log counting."""

from __future__ import annotations

import contextlib
import re
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

_ACCESS = re.compile(
    r'^\S+ - \S+ \[[^\]]+\] "(?P<method>[A-Z]+) (?P<path>\S+) HTTP/[0-9.]+" '
    r'(?P<status>\d{3}) (?P<size>\d+|-) "[^"]*" "(?P<agent>[^"]*)"'
)
_BLOB = re.compile(r"^/v2/(?P<repo>.+)/blobs/(?P<digest>sha256:[0-9a-f]{64})$")
_SENTINEL = "/v2/_sentinel/"


@dataclass(frozen=True)
class Request:
    """One line of the registry's access log."""

    method: str
    path: str
    status: int
    size: int
    user_agent: str


@dataclass(frozen=True)
class BlobGet:
    """A successful blob download."""

    repository: str
    digest: str
    size: int


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Registry:
    """`docker-registry serve` with filesystem storage under `workdir`.

    The access log is written asynchronously; `requests()` first sends a
    sentinel request and waits until it shows up, so every request made
    before the call is counted. Sentinel lines are never reported.
    """

    def __init__(
        self, workdir: Path, port: int | None = None, credentials: tuple[str, str] | None = None
    ) -> None:
        self.workdir = workdir
        self.credentials = credentials
        self.port = port or free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.log_path = workdir / "registry.log"
        self._process: subprocess.Popen[bytes] | None = None

    def _config(self) -> Path:
        config = self.workdir / "config.yml"
        config.write_text(
            "version: 0.1\n"
            "log:\n  level: warn\n  accesslog:\n    disabled: false\n"
            f"storage:\n  filesystem:\n    rootdirectory: {self.workdir / 'storage'}\n"
            "  delete:\n    enabled: true\n"
            f"http:\n  addr: {self.host}\n"
        )
        if self.credentials:
            import bcrypt

            user, password = self.credentials
            htpasswd = self.workdir / "htpasswd"
            htpasswd.write_text(
                f"{user}:{bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=5)).decode()}\n"
            )
            with config.open("a") as f:
                f.write(f"auth:\n  htpasswd:\n    realm: tests\n    path: {htpasswd}\n")
        return config

    def start(self, timeout: float = 20.0) -> Registry:
        """Start the server and wait until `/v2/` answers."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self._process = subprocess.Popen(
            ["docker-registry", "serve", str(self._config())], stdout=log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                break
            try:
                with urllib.request.urlopen(f"http://{self.host}/v2/", timeout=1) as response:
                    if response.status == 200:
                        return self
            except urllib.error.HTTPError as err:
                if err.code == 401 and self.credentials:
                    return self  # up, and asking for credentials
                time.sleep(0.05)
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.05)
        tail = self.log_path.read_text(errors="replace")[-2000:]
        self.stop()
        raise RuntimeError(f"docker-registry did not come up on {self.host}; log:\n{tail}")

    def stop(self) -> None:
        """Stop the server (the storage stays, so `start()` serves the same content)."""
        if self._process and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None

    def __enter__(self) -> Registry:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- access log ------------------------------------------------------------------------

    def _sync(self, timeout: float = 10.0) -> list[Request]:
        sentinel = f"{_SENTINEL}{uuid.uuid4().hex}"
        running = self._process is not None and self._process.poll() is None
        if running:
            with contextlib.suppress(urllib.error.HTTPError):
                urllib.request.urlopen(f"http://{self.host}{sentinel}", timeout=5).close()
        deadline = time.monotonic() + timeout
        while True:
            lines = self.log_path.read_text(errors="replace").splitlines() if self.log_path.exists() else []
            requests = [
                Request(
                    m["method"],
                    m["path"],
                    int(m["status"]),
                    0 if m["size"] == "-" else int(m["size"]),
                    m["agent"],
                )
                for m in map(_ACCESS.match, lines)
                if m
            ]
            if not running or any(r.path == sentinel for r in requests) or time.monotonic() > deadline:
                return [r for r in requests if not r.path.startswith(_SENTINEL)]
            time.sleep(0.02)

    def mark(self) -> int:
        """The number of requests logged so far; pass it as `since`."""
        return len(self._sync())

    def requests(self, since: int = 0) -> list[Request]:
        """Every request after `since` (sentinels excluded)."""
        return self._sync()[since:]

    def blob_gets(self, since: int = 0) -> list[BlobGet]:
        """Successful blob GETs after `since` (HEAD requests are not downloads)."""
        gets = []
        for r in self.requests(since):
            m = _BLOB.match(r.path)
            if r.method == "GET" and r.status == 200 and m:
                gets.append(BlobGet(m["repo"], m["digest"], r.size))
        return gets

    def blob_bytes(self, since: int = 0) -> int:
        """Bytes of blobs downloaded after `since`."""
        return sum(g.size for g in self.blob_gets(since))
