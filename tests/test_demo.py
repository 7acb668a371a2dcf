"""The README's demo command runs end to end (registry → lock → strict build → .deb → podman → run)."""

from __future__ import annotations

import re
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
    assert "): nothing to do: 1 image(s) already present" in out  # the loaders' rerun summaries
    assert "): nothing to do: 2 image(s) already present" in out
    assert "hello from the container-lock test image\n" in out
    # demo-podman-img's service: its unit runs demo/web by the pinned ID on the host's network;
    # asked over HTTP from the host, it answers with the page in the image, then it is removed.
    web_id = re.search(r"demo/web:1\.0: loaded \(([0-9a-f]{64})\)", out)
    assert web_id, out
    start = re.search(r"\n      ExecStart=(/usr/bin/podman run .*)\n", out)
    assert start and start[1].endswith(f" --name web --network host {web_id[1]}"), out
    answer = out[out.index("   $ curl http://127.0.0.1:") :].splitlines()
    assert answer[1] == "   hello from the demo/web service, run by its pinned image ID", answer[:3]
    assert answer[2] == "   stopped and removed: yes"
    # The next release: update --diff names what the re-pin brings, downloading only the new layer.
    assert "Images: 1 re-pinned, 0 added, 0 removed, 0 unchanged; a device downloads" in out
    assert "libssl3:amd64 │ deb/debian │ upgraded │ 3.0.15-1~deb12u1 │ 3.0.16-1~deb12u1" in out
    assert "curl:amd64    │ deb/debian │ added    │ -" in out
    assert "demo-tool     │ pypi       │ upgraded │ 2.1" in out
    assert "layers downloaded for the diff: 1 of 3 (the others were in DL_DIR)" in out
    # … and the demo ends with the diff of its two lock states.
    tail = out[out.index("== container-lock diff of the two lock states") :]
    assert "Images: 1 re-pinned, 0 added, 0 removed, 1 unchanged\n" in tail  # demo/web stays
    assert tail.rstrip().endswith("(exit 0)\n\nDemo finished.")
