"""docker's store in a root file system, written by a private dockerd on the build host.

docker's store (the layer and image databases of its data root, the storage driver's layers) has
no writer but dockerd, so a dockerd of the build host runs with the root file system's data root,
its own socket, exec root and pid file, no network setup and no configuration file of the host;
it only loads and tags (no container runs, nothing of the image is executed), then stops. What it
made for itself at run time (its containerd's state, the network database) is removed: the
device's dockerd makes its own at its first start.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from . import PreloadError

DOCKER = "docker"
DOCKERD = "dockerd"
DEFAULT_DATA_ROOT = "/var/lib/docker"
DEFAULT_DRIVER = "overlay2"
READY_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0
CALL_TIMEOUT = 1800.0
KEEP = ("image",)  # with the driver's directory: the store itself


@dataclass(frozen=True)
class Store:
    """docker's store on the device: data root (absolute on the device) and storage driver."""

    data_root: str
    driver: str


def store_of(rootfs: Path) -> Store:
    """The data root and storage driver of the root file system's /etc/docker/daemon.json, else
    docker's defaults."""
    conf = rootfs / "etc/docker/daemon.json"
    settings: dict[str, object] = {}
    if conf.is_file():
        try:
            settings = json.loads(conf.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise PreloadError(
                f"/etc/docker/daemon.json in {rootfs}: not JSON dockerd can read ({err})"
            ) from None
    data_root = settings.get("data-root") or DEFAULT_DATA_ROOT
    driver = settings.get("storage-driver") or DEFAULT_DRIVER
    if not isinstance(data_root, str) or not data_root.startswith("/"):
        raise PreloadError(f"/etc/docker/daemon.json: data-root {data_root!r} is not an absolute path")
    return Store(data_root, str(driver))


class PrivateDockerd:
    """dockerd on `<rootfs><data root>`, everything else of it under a temporary directory."""

    def __init__(self, rootfs: Path, store: Store) -> None:
        self.data_root = rootfs / store.data_root.lstrip("/")
        self.driver = store.driver
        self.root = Path(tempfile.mkdtemp(prefix="clpre.", dir="/tmp"))  # short: socket paths
        self.host = f"unix://{self.root}/d.sock"
        self.process: subprocess.Popen[bytes] | None = None
        self.existed: set[str] = set()

    def docker(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "DOCKER_CONFIG": str(self.root / "client")}
        return subprocess.run(
            [DOCKER, "-H", self.host, *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=CALL_TIMEOUT,
            check=False,
        )

    def start(self) -> PrivateDockerd:
        if shutil.which(DOCKERD) is None or shutil.which(DOCKER) is None:
            raise PreloadError(
                "docker's store needs dockerd and docker on the build host (apt-get install docker.io)"
            )
        self.data_root.mkdir(parents=True, exist_ok=True)
        self.existed = {p.name for p in self.data_root.iterdir()}
        (self.root / "daemon.json").write_text("{}\n")
        # A mount namespace of its own (as skopeo's): its mounts stay out of the build's.
        args = [
            "unshare", "--mount", "--propagation", "private", DOCKERD,
            "--config-file", str(self.root / "daemon.json"), "--data-root", str(self.data_root),
            "--storage-driver", self.driver, "--exec-root", str(self.root / "e"), "-H", self.host,
            "--pidfile", str(self.root / "d.pid"), "--iptables=false", "--ip-masq=false", "--bridge=none",
        ]  # fmt: skip
        with (self.root / "dockerd.log").open("ab") as log:
            self.process = subprocess.Popen(
                args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + READY_TIMEOUT
        while self.docker("info").returncode != 0:
            if self.process.poll() is not None or time.monotonic() > deadline:
                tail = self.log_tail()
                self.close()
                raise PreloadError(f"the build host's dockerd did not start on {self.data_root}: {tail}")
            time.sleep(0.3)
        return self

    def log_tail(self) -> str:
        lines = (self.root / "dockerd.log").read_text(errors="replace").splitlines()
        return "\n".join(lines[-8:])

    def load(self, archive: Path, references: list[str], image_id: str) -> None:
        """Load the docker-archive, tag it with every reference, check each names `image_id`."""
        loaded = self.docker("load", "-q", "-i", str(archive))
        if loaded.returncode != 0:
            raise PreloadError(
                f"{references[0]}: dockerd could not load {archive.name}: {loaded.stderr.strip()}"
            )
        for reference in references:
            tagged = self.docker("tag", image_id, reference)
            if tagged.returncode != 0:
                raise PreloadError(f"{reference}: tagging {image_id} failed: {tagged.stderr.strip()}")
        got = self.docker("image", "inspect", "--format", "{{.Id}}", *references)
        ids = {line.strip().removeprefix("sha256:") for line in got.stdout.splitlines()}
        if got.returncode != 0 or ids != {image_id}:
            raise PreloadError(
                f"{', '.join(references)}: dockerd names {sorted(ids) or 'nothing'}, expected {image_id}"
            )

    def close(self) -> None:
        """Stop dockerd (and the containerd it started), unmount what it left, remove its run-time
        state from the data root (what was there before stays)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        for line in reversed(Path("/proc/self/mountinfo").read_text().splitlines()):
            point = line.split()[4]
            if point.startswith((f"{self.root}/", f"{self.data_root}/")):
                subprocess.run(["umount", "-l", point], capture_output=True, check=False)
        if self.process is not None and self.data_root.is_dir():
            for entry in self.data_root.iterdir():
                if entry.name not in (*KEEP, self.driver) and entry.name not in self.existed:
                    shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
        with contextlib.suppress(OSError):
            shutil.rmtree(self.root)

    def __enter__(self) -> PrivateDockerd:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
