"""The README's demo command runs end to end (registry → lock → strict build → .deb → podman → run)."""

from __future__ import annotations

import subprocess
import sys

from tests.harness.bitbake import REPO


def test_demo_runs_end_to_end() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tests.demo"], cwd=REPO, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    assert "\x1b[" not in out + result.stderr  # piped: no escape sequences
    assert "warning [unpinned]" in out  # container-lock check before pinning
    assert "added" in out  # container-lock update pinned demo/tool
    assert out.count("0 registry requests offline") == 2
    assert "application pkg:deb/debian/demo-docker-img@1.0?arch=amd64" in out  # the SBOM
    assert "variant   pkg:oci/hello@sha256%3A" in out
    assert (
        "package   pkg:deb/debian/libssl3@3.0.15-1~deb12u1?arch=amd64&distro=debian-12  (layer sha256:" in out
    )
    assert "package   pkg:pypi/demo-tool@2.1" in out
    assert out.count("second boot: exit 0\n") == 2
    assert out.count("): nothing to do: 1 image(s) already present") == 2  # the loaders' rerun summary
    assert out.rstrip().endswith("hello from the container-lock test image\n\nDemo finished.".rstrip())
