"""A private dockerd (Debian's docker.io) on its own socket, data root and exec root, stopped cleanly."""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

# Debian's docker.io, explicitly: another `docker` (e.g. /usr/local/bin, a newer static client)
# may come first in PATH.
DOCKER = "/usr/bin/docker"
DOCKERD = "/usr/sbin/dockerd"
# What `docker run` needs here: dockerd runs with --bridge=none.
RUN_OPTIONS = ("--network", "none")


class DockerdError(RuntimeError):
    """dockerd is missing, did not become ready, or did not stop."""


def _require_docker_io() -> None:
    missing = [p for p in (DOCKER, DOCKERD) if not os.access(p, os.X_OK)]
    if missing:
        raise DockerdError(
            f"Debian's docker.io is not installed ({', '.join(missing)} missing): "
            "apt-get install --no-install-recommends docker.io (listed in .ci/setup)"
        )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie is dead for our purposes.
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _wait_gone(pids: list[int], timeout: float) -> list[int]:
    """Wait until `pids` have exited; returns those still alive after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        alive = [p for p in pids if _alive(p)]
        if not alive or time.monotonic() >= deadline:
            return alive
        time.sleep(0.1)


class Dockerd:
    """dockerd with every path under one temp dir, the vfs driver, no iptables and no bridge.

    Construct it, then `start()` (or use it as a context manager); `close()` stops dockerd and
    its containerd and removes all state. `bin` holds a `docker` wrapper for this daemon, for
    scripts that run `docker` from PATH (see `env()`).
    """

    def __init__(
        self,
        ready_timeout: float = 60.0,
        stop_timeout: float = 20.0,
        daemon_env: dict[str, str] | None = None,
        data_root_size: str | None = None,
    ) -> None:
        """`data_root_size` (e.g. "4m"): the data root is a tmpfs of that size, a real file system
        that runs out of space (`resize_data_root` grows it)."""
        _require_docker_io()
        self.daemon_env = daemon_env or {}  # extra environment for dockerd only (e.g. MOBY_DISABLE_PIGZ)
        self.ready_timeout = ready_timeout
        self.stop_timeout = stop_timeout
        # Short: unix socket paths (also containerd's, under the exec root) are limited to ~100 bytes.
        self.root = Path(tempfile.mkdtemp(prefix="cl-dockerd.", dir="/tmp"))
        self.data_root = self.root / "data"
        self.exec_root = self.root / "e"
        self.socket = self.root / "d.sock"
        self.pidfile = self.root / "d.pid"
        self.log = self.root / "dockerd.log"
        self.config = self.root / "config"  # DOCKER_CONFIG: not root's ~/.docker
        self.host = f"unix://{self.socket}"
        self.bin = self.root / "bin"
        for d in (self.data_root, self.exec_root, self.config, self.bin):
            d.mkdir()
        if data_root_size is not None:
            self._mount_tmpfs(data_root_size)
        wrapper = self.bin / "docker"
        wrapper.write_text(
            f"#!/bin/sh\nDOCKER_CONFIG={shlex.quote(str(self.config))} "
            f'exec {shlex.join([DOCKER, "-H", self.host])} "$@"\n'
        )
        wrapper.chmod(0o755)
        self.process: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        """The dockerd command line."""
        return [
            DOCKERD,
            "--data-root",
            str(self.data_root),
            "--exec-root",
            str(self.exec_root),
            "-H",
            self.host,
            "--pidfile",
            str(self.pidfile),
            "--storage-driver",
            "vfs",
            "--iptables=false",
            "--bridge=none",
        ]

    def start(self) -> Dockerd:
        """Start dockerd and wait (bounded) until `docker info` answers."""
        if self.process is not None:
            raise DockerdError("dockerd already started")
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**self._env(), **self.daemon_env},
                start_new_session=True,  # a ^C to pytest is not also delivered to dockerd
            )
        deadline = time.monotonic() + self.ready_timeout
        while True:
            if self.process.poll() is not None:
                tail = self.log_tail()
                self.close()
                raise DockerdError(
                    f"dockerd exited with status {self.process.returncode} before it was ready; "
                    f"its log ends:\n{tail}"
                )
            try:
                if self("info", check=False, timeout=10).returncode == 0:
                    return self
            except subprocess.TimeoutExpired:
                pass  # dockerd is starting but slow: the deadline decides
            if time.monotonic() >= deadline:
                tail = self.log_tail()
                self.close()
                raise DockerdError(
                    f"dockerd did not answer `docker -H {self.host} info` within {self.ready_timeout:g}s; "
                    f"its log ends:\n{tail}"
                )
            time.sleep(0.2)

    def _mount_tmpfs(self, size: str) -> None:
        try:
            subprocess.run(
                ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(self.data_root)],
                check=True,
                capture_output=True,
            )
        except subprocess.CalledProcessError as err:
            shutil.rmtree(self.root, ignore_errors=True)
            why = err.stderr.decode().strip()
            raise DockerdError(f"cannot mount a tmpfs as data root (root needed): {why}") from None

    def resize_data_root(self, size: str) -> None:
        """Grow (or shrink) the tmpfs data root of a `data_root_size` instance, live."""
        subprocess.run(["mount", "-o", f"remount,size={size}", str(self.data_root)], check=True)

    def kill_all(self) -> None:
        """SIGKILL dockerd, its containerd and shims at once, and empty the exec root (as a reboot
        empties /run). Not a power cut: what they wrote stays in the page cache. The data root
        stays as the kill left it; `start()` starts the daemon again on it."""
        if self.process is None:
            raise DockerdError("dockerd is not running")
        pids = [self.process.pid, *self._own_pids()]
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.process.wait(10)
        survivors = _wait_gone(pids, 10.0)
        if survivors:
            raise DockerdError(f"processes of {self.root} survived SIGKILL: {survivors}")
        self.process = None
        for point in self._mounts(self.exec_root):
            subprocess.run(["umount", "-l", point], capture_output=True)
        shutil.rmtree(self.exec_root)
        self.exec_root.mkdir()

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
        env["DOCKER_CONFIG"] = str(self.config)
        return env

    def __call__(
        self, *args: str, check: bool = True, timeout: float = 300, input: bytes | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run `/usr/bin/docker -H unix://SOCK <args>` (text output)."""
        result = subprocess.run(
            [DOCKER, "-H", self.host, *args],
            capture_output=True,
            env=self._env(),
            timeout=timeout,
            input=input,
        )
        out = subprocess.CompletedProcess(
            result.args, result.returncode, result.stdout.decode(errors="replace"), result.stderr.decode()
        )
        if check and out.returncode != 0:
            raise DockerdError(f"docker {shlex.join(args)} failed ({out.returncode}): {out.stderr.strip()}")
        return out

    def env(self) -> dict[str, str]:
        """An environment whose `docker` (first in PATH) is Debian's client talking to this dockerd."""
        env = self._env()
        env["PATH"] = f"{self.bin}:{env.get('PATH', '/usr/bin:/bin')}"
        env["CONTAINER_LOADER_STATE_DIR"] = str(self.bin.parent / "loader-state")  # beside the store
        return env

    def image_id(self, ref: str) -> str | None:
        """The image ID (`sha256:<hex>`) a name resolves to, or None."""
        result = self("image", "inspect", "--format", "{{.Id}}", ref, check=False)
        return result.stdout.strip() or None

    def repo_tags(self, ref: str) -> list[str]:
        """`RepoTags` of the image a name or ID resolves to ([] if absent)."""
        result = self(
            "image", "inspect", "--format", "{{range .RepoTags}}{{println .}}{{end}}", ref, check=False
        )
        return result.stdout.split() if result.returncode == 0 else []

    def image_ids(self) -> set[str]:
        """IDs of all images in the store."""
        return set(self("images", "--all", "--no-trunc", "--quiet").stdout.split())

    def names(self) -> set[str]:
        """`repository:tag` of every tagged image in the store."""
        out = self("images", "--format", "{{.Repository}}:{{.Tag}}").stdout
        return {n for n in out.split() if "<none>" not in n}

    def events(self, since: float, until: float) -> list[str]:
        """Image events (`<action> <id or name>`) between two `time.time()` values."""
        out = self(
            "events",
            "--since",
            f"{since:.6f}",
            "--until",
            f"{until:.6f}",
            "--filter",
            "type=image",
            "--format",
            "{{.Action}} {{.Actor.ID}}",
            timeout=60,
        ).stdout
        return out.splitlines()

    def remove_all(self) -> None:
        """Remove every container and image (tests share one engine)."""
        containers = self("ps", "--all", "--quiet", "--no-trunc").stdout.split()
        if containers:
            self("rm", "--force", *containers)
        images = self.image_ids()
        if images:
            self("rmi", "--force", *images)
        shutil.rmtree(self.bin.parent / "loader-state", ignore_errors=True)  # what the loaders recorded

    def log_tail(self, lines: int = 25) -> str:
        """The last lines of dockerd's log."""
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:]) or "(empty log)"

    def _own_pids(self) -> list[int]:
        """Processes (containerd, shims) whose command line names this instance's directory."""
        mark = str(self.root).encode()
        pids = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                if mark in (entry / "cmdline").read_bytes():
                    pids.append(int(entry.name))
            except OSError:
                continue
        return pids

    def _stop(self, pids: list[int]) -> list[int]:
        """SIGTERM, bounded wait, then SIGKILL; returns what survived even that."""
        for sig, timeout in ((signal.SIGTERM, self.stop_timeout), (signal.SIGKILL, 5.0)):
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
            pids = _wait_gone(pids, timeout)
            if not pids:
                break
        return pids

    @staticmethod
    def _mounts(under: Path) -> list[str]:
        """Mount points at or under `under`, deepest first."""
        prefix = str(under)
        points = []
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            point = line.split()[4].encode().decode("unicode_escape")
            if point == prefix or point.startswith(prefix + "/"):
                points.append(point)
        return sorted(points, key=len, reverse=True)

    def _unmount(self) -> None:
        """Unmount whatever dockerd left mounted under its directory, and a tmpfs data root."""
        for point in self._mounts(self.root):
            if subprocess.run(["umount", point], capture_output=True).returncode != 0:
                subprocess.run(["umount", "-l", point], capture_output=True)

    def close(self) -> None:
        """Stop dockerd (SIGTERM, bounded wait, SIGKILL) and its containerd, unmount, remove all state."""
        survivors: list[int] = []
        if self.process is not None:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGTERM)
                try:
                    self.process.wait(self.stop_timeout)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait(10)
            # dockerd stops the containerd it started; anything of ours still running is stopped here.
            survivors = self._stop(self._own_pids())
        self._unmount()
        shutil.rmtree(self.root, ignore_errors=True)
        if survivors:
            raise DockerdError(f"processes of {self.root} survived SIGKILL: {survivors}")

    def __enter__(self) -> Dockerd:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
