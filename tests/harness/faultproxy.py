"""A fault-injecting HTTP proxy on loopback, between skopeo and the real registry.

Rules pick requests by method and path pattern and fire a fault a given number
of times (then requests pass through): an HTTP status (500, 503, 429 with
Retry-After), a reset connection in the middle of the body, a truncated body,
corrupted bytes (same length), or a delay. Every request is counted.
"""

from __future__ import annotations

import http.client
import http.server
import re
import socket
import threading
import time
from dataclasses import dataclass, field


@dataclass
class Fault:
    """One rule: `kind` is status | reset | truncate | corrupt | slow."""

    kind: str
    path: str = r"/blobs/"
    method: str = "GET"
    times: int = 1
    status: int = 503
    retry_after: int | None = None
    delay: float = 0.0
    fired: int = 0

    def matches(self, method: str, path: str) -> bool:
        return self.fired < self.times and method == self.method and re.search(self.path, path) is not None


@dataclass
class FaultProxy:
    """Forwards to `upstream` (host:port); `host` is the proxy's own host:port."""

    upstream: str
    faults: list[Fault] = field(default_factory=list)
    requests: list[tuple[str, str, str]] = field(default_factory=list)  # method, path, what happened

    def __post_init__(self) -> None:
        proxy = self
        lock = threading.Lock()

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _fault(self) -> Fault | None:
                with lock:
                    for fault in proxy.faults:
                        if fault.matches(self.command, self.path):
                            fault.fired += 1
                            return fault
                return None

            def _forward(self) -> None:
                fault = self._fault()
                proxy.requests.append((self.command, self.path, fault.kind if fault else "pass"))
                if fault and fault.kind == "status":
                    self.send_response(fault.status)
                    if fault.retry_after is not None:
                        self.send_header("Retry-After", str(fault.retry_after))
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if fault and fault.kind == "slow":
                    time.sleep(fault.delay)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                conn = http.client.HTTPConnection(proxy.upstream, timeout=60)
                conn.putrequest(self.command, self.path, skip_accept_encoding=True)
                for key, value in self.headers.items():  # repeated headers (Accept) stay repeated
                    if key.lower() not in ("host", "connection", "content-length"):
                        conn.putheader(key, value)
                if body is not None:
                    conn.putheader("Content-Length", str(len(body)))
                conn.endheaders(body)
                response = conn.getresponse()
                data = response.read()
                conn.close()
                self.send_response(response.status)
                for key, value in response.getheaders():
                    if key.lower() not in ("connection", "transfer-encoding", "content-length"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command == "HEAD":
                    return
                if fault and fault.kind in ("reset", "truncate") and len(data) > 1:
                    self.wfile.write(data[: len(data) // 2])
                    self.wfile.flush()
                    if fault.kind == "reset":
                        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if fault and fault.kind == "corrupt" and data:
                    data = bytes([data[0] ^ 0xFF]) + data[1:]
                self.wfile.write(data)

            do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _forward

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.host = f"127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def count(self, kind: str) -> int:
        """How many requests got this treatment ("pass" for forwarded untouched)."""
        return sum(1 for _, _, what in self.requests if what == kind)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
