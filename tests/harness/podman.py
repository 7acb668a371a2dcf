"""Real podman with a private store (root, vfs) and `podman`/`docker` shims for the loader script."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path

PODMAN = "/usr/bin/podman"
# What `podman run` needs on these machines (see DEVELOPERS.md).
RUN_OPTIONS = (
    "--runtime",
    "runc",
    "--network",
    "none",
    "--ulimit",
    "nofile=1024:1024",
    "--ulimit",
    "nproc=1024:1024",
)


class Podman:
    """podman with its store under `workdir` (root, vfs) named by a storage.conf in
    CONTAINERS_STORAGE_CONF, as a device's podman finds its store: nothing shared with the host,
    and the loader reads the same store file podman writes."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        # podman refuses a runroot longer than 50 characters.
        self.runroot = Path(tempfile.mkdtemp(prefix="cl-podman.", dir="/tmp"))
        self.storage_conf = workdir / "storage.conf"
        self.storage_conf.write_text(
            f'[storage]\ndriver = "vfs"\ngraphroot = "{workdir / "root"}"\nrunroot = "{self.runroot}"\n'
        )
        self.options = ["--cgroup-manager", "cgroupfs", "--events-backend", "file"]
        self.shims = workdir / "bin"
        self.shims.mkdir(parents=True, exist_ok=True)
        for name in ("podman", "docker"):
            shim = self.shims / name
            shim.write_text(
                "#!/bin/sh\n"
                f"CONTAINERS_STORAGE_CONF={shlex.quote(str(self.storage_conf))}\n"
                "export CONTAINERS_STORAGE_CONF\n"
                f'exec {shlex.join([PODMAN, *self.options])} "$@"\n'
            )
            shim.chmod(0o755)

    def __call__(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run `podman <args>` on the private store."""
        return subprocess.run(
            [PODMAN, *self.options, *args],
            capture_output=True,
            text=True,
            check=check,
            env={**os.environ, "CONTAINERS_STORAGE_CONF": str(self.storage_conf)},
        )

    def env(self) -> dict[str, str]:
        """An environment whose PATH resolves `podman` and `docker` to this store; the loaders'
        state (what they loaded) is kept beside it, as on a device."""
        return {
            **os.environ,
            "PATH": f"{self.shims}:{os.environ.get('PATH', '/usr/bin:/bin')}",
            "CONTAINERS_STORAGE_CONF": str(self.storage_conf),
            "CONTAINER_LOADER_STATE_DIR": str(self.workdir / "loader-state"),
        }

    def image_id(self, ref: str) -> str | None:
        """The image ID (config digest, hex) a name resolves to, or None."""
        result = self("image", "inspect", "--format", "{{.Id}}", ref, check=False)
        return result.stdout.strip() or None

    def names(self) -> set[str]:
        """`repository:tag` of every image in the store."""
        out = self("images", "--format", "{{.Repository}}:{{.Tag}}").stdout
        return set(out.split())

    def close(self) -> None:
        """Remove every image and the run root."""
        self("rmi", "--all", "--force", check=False)
        shutil.rmtree(self.runroot, ignore_errors=True)
