"""A real OCI registry (Debian's `docker-registry`) on 127.0.0.1, with access-log counting.

The registry writes one access-log line per request (Apache combined format) to stdout,
interleaved with logrus lines (`time=... level=... msg=...`), which are ignored. The server
writes the line after its handler returns, so a client can have its whole response before the
line is in the file: for some blob sizes about one GET in seven, by up to ~5 ms on an idle
machine. `mark()`, `requests()` and everything built on them therefore first send a sentinel
request (`GET /v2/_sentinel/<uuid>`, answered 404), wait until its line shows up, then wait
`Registry.settle` (30 ms) more, because lines are not ordered either: a request that finished
before the sentinel was sent can still be logged after it. Sentinel lines are never reported
and never counted. While the server is down, the log is read as it is.
"""

from __future__ import annotations

import re
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

from tests.harness import processes

_ACCESS = re.compile(
    r'^\S+ - \S+ \[[^\]]+\] "(?P<method>[A-Z]+) (?P<path>\S+) HTTP/[0-9.]+" '
    r'(?P<status>\d{3}) (?P<size>\d+|-) "[^"]*" "(?P<agent>[^"]*)"'
)
_BLOB = re.compile(r"^/v2/(?P<repo>.+)/blobs/(?P<digest>[a-z0-9]+:[0-9a-f]+)$")
_MANIFEST = re.compile(r"^/v2/(?P<repo>.+)/manifests/(?P<reference>[^/]+)$")
_SENTINEL = "/v2/_sentinel/"
_PORT_IN_USE = "address already in use"
_INSTANCE_HEADER = "X-Test-Registry-Instance"
START_ATTEMPTS = 4


@dataclass(frozen=True)
class Request:
    """One access-log line: `size` is the number of body bytes the registry sent."""

    method: str
    path: str
    status: int
    size: int
    user_agent: str


@dataclass(frozen=True)
class BlobGet:
    """A successful (200) blob download."""

    repository: str
    digest: str
    status: int
    size: int


@dataclass(frozen=True)
class ManifestRequest:
    """Any request (GET, HEAD, PUT, DELETE) for a manifest, by tag or digest."""

    method: str
    repository: str
    reference: str
    status: int
    size: int


class _PortTaken(RuntimeError):
    pass


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now (it may be taken again before use)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _parse(line: str) -> Request | None:
    m = _ACCESS.match(line)
    if not m:
        return None
    size = 0 if m["size"] == "-" else int(m["size"])
    return Request(m["method"], m["path"], int(m["status"]), size, m["agent"])


class Registry:
    """`docker-registry serve` on 127.0.0.1 with filesystem storage under `workdir`.

    The port is random unless given; if it is taken before the server binds it, another is
    tried. Once the registry has served, the port is fixed, so `stop_serving()` then `start()`
    brings it back at the same address with the same content. `credentials` adds htpasswd auth.
    """

    settle = 0.03  # seconds to wait after the sentinel's line (see the module docstring)

    def __init__(
        self, workdir: Path, port: int | None = None, credentials: tuple[str, str] | None = None
    ) -> None:
        self.workdir = workdir
        self.credentials = credentials
        self.port = port or free_port()
        self.storage = workdir / "storage"
        self.log_path = workdir / "registry.log"
        self._port_fixed = port is not None
        self._process: subprocess.Popen[bytes] | None = None
        self._log_offset = 0
        self._requests: list[Request] = []
        self._sentinels: set[str] = set()
        self._instance = uuid.uuid4().hex  # sent back in a header: "it is our server that answers"

    @property
    def host(self) -> str:
        """`127.0.0.1:PORT`, for image references."""
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    # -- process ---------------------------------------------------------------------------

    def _config(self) -> Path:
        config = self.workdir / "config.yml"
        text = (
            "version: 0.1\n"
            "log:\n  level: warn\n  accesslog:\n    disabled: false\n"
            f"storage:\n  filesystem:\n    rootdirectory: {self.storage}\n"
            "  delete:\n    enabled: true\n"
            f"http:\n  addr: {self.host}\n  secret: test-registry-{self._instance}\n"
            f"  headers:\n    {_INSTANCE_HEADER}: [{self._instance}]\n"
        )
        if self.credentials:
            import bcrypt

            user, password = self.credentials
            htpasswd = self.workdir / "htpasswd"
            hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=5)).decode()
            htpasswd.write_text(f"{user}:{hashed}\n")
            text += f"auth:\n  htpasswd:\n    realm: tests\n    path: {htpasswd}\n"
        config.write_text(text)
        return config

    def _log_tail(self, start: int = 0, chars: int = 3000) -> str:
        if not self.log_path.exists():
            return "(no log)"
        with self.log_path.open("rb") as f:
            f.seek(start)
            return f.read().decode(errors="replace")[-chars:]

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/v2/", timeout=1) as response:
                ours = response.headers.get(_INSTANCE_HEADER) == self._instance
                return response.status == 200 and ours
        except urllib.error.HTTPError as err:
            ours = err.headers.get(_INSTANCE_HEADER) == self._instance
            return err.code == 401 and self.credentials is not None and ours  # up, asking for credentials
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False

    def _launch(self, timeout: float) -> None:
        log_start = self.log_path.stat().st_size if self.log_path.exists() else 0
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                ["docker-registry", "serve", str(self._config())],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                tail = self._log_tail(log_start)
                self._process = None
                if _PORT_IN_USE in tail:
                    raise _PortTaken(tail)
                raise RuntimeError(f"docker-registry on {self.host} exited at start; log:\n{tail}")
            if self._answers():
                return
            time.sleep(0.05)
        self.stop_serving()
        tail = self._log_tail(log_start)
        raise RuntimeError(f"docker-registry did not answer on {self.host} in {timeout} s; log:\n{tail}")

    def start(self, timeout: float = 20.0) -> Registry:
        """Start the server and wait until `GET /v2/` answers 200; no-op if it is running."""
        if self.running:
            return self
        self.workdir.mkdir(parents=True, exist_ok=True)
        for attempt in range(START_ATTEMPTS):
            try:
                self._launch(timeout)
            except _PortTaken as err:
                if self._port_fixed or attempt == START_ATTEMPTS - 1:
                    raise RuntimeError(f"port {self.port} is in use; log:\n{err}") from None
                self.port = free_port()
            else:
                self._port_fixed = True  # restarts must keep the address
                return self
        raise AssertionError("unreachable")

    def stop_serving(self) -> None:
        """Take the server down (terminate, then kill); port, storage and log stay for `start()`."""
        process, self._process = self._process, None
        processes.stop(process)

    def stop(self) -> None:
        """Stop the server (the same as `stop_serving()`; `start()` serves the same content again)."""
        self.stop_serving()

    def __enter__(self) -> Registry:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- access log ------------------------------------------------------------------------

    def _read_log(self) -> None:
        """Parse the complete lines appended since the last read."""
        if not self.log_path.exists():
            return
        with self.log_path.open("rb") as f:
            f.seek(self._log_offset)
            data = f.read()
        end = data.rfind(b"\n") + 1
        self._log_offset += end
        for line in data[:end].decode(errors="replace").splitlines():
            request = _parse(line)
            if request is None:
                continue
            if request.path.startswith(_SENTINEL):
                self._sentinels.add(request.path)
            else:
                self._requests.append(request)

    def _sync(self, timeout: float = 10.0) -> list[Request]:
        """All requests so far, after a sentinel round trip (skipped when the server is down)."""
        sentinel: str | None = None
        if self.running:
            sentinel = f"{_SENTINEL}{uuid.uuid4().hex}"
            try:
                urllib.request.urlopen(f"{self.url}{sentinel}", timeout=5).close()
            except urllib.error.HTTPError:
                pass  # 404 (or 401 with auth): it is logged either way
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                sentinel = None
        deadline = time.monotonic() + timeout
        while sentinel is not None and sentinel not in self._sentinels:
            if time.monotonic() > deadline:
                raise RuntimeError(f"sentinel {sentinel} not in {self.log_path} after {timeout} s")
            time.sleep(0.002)
            self._read_log()
        if sentinel is not None and self.settle:
            time.sleep(self.settle)  # lines of requests that finished just before may trail the sentinel
        self._read_log()
        return self._requests

    def mark(self) -> int:
        """The number of requests logged so far; pass it as `since` to the other methods."""
        return len(self._sync())

    def requests(self, since: int = 0) -> list[Request]:
        """Every request after `since` (sentinels excluded)."""
        return list(self._sync()[since:])

    def blob_gets(self, since: int = 0) -> list[BlobGet]:
        """Blob GETs answered 200 after `since` (HEADs and failed or partial GETs are not downloads)."""
        gets = []
        for r in self.requests(since):
            m = _BLOB.match(r.path)
            if r.method == "GET" and r.status == 200 and m:
                gets.append(BlobGet(m["repo"], m["digest"], r.status, r.size))
        return gets

    def manifest_requests(self, since: int = 0) -> list[ManifestRequest]:
        """Manifest requests of any method and status after `since`."""
        found = []
        for r in self.requests(since):
            m = _MANIFEST.match(r.path)
            if m:
                found.append(ManifestRequest(r.method, m["repo"], m["reference"], r.status, r.size))
        return found

    def blob_get_count(self, since: int = 0) -> int:
        """How many blob downloads after `since`."""
        return len(self.blob_gets(since))

    def blob_bytes(self, since: int = 0) -> int:
        """Bytes of blobs downloaded after `since`."""
        return sum(g.size for g in self.blob_gets(since))
