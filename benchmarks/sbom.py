"""SBOM benchmark: `container-lock sbom` over build manifests describing N images (one run).

Writes N/10 loader-package manifests of 10 images each (three layers per
image, half of them from multi-arch indexes), then times `container-lock sbom`
(build the document, serialise, validate against the CycloneDX 1.6 schema).
Run: `.venv/bin/python -m benchmarks.sbom [-n 100]`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import machine
from containerlock.package import MANIFEST_VERSION
from containerlock.record import RECORD_VERSION


def digest(*parts: object) -> str:
    return "sha256:" + hashlib.sha256(repr(parts).encode()).hexdigest()


def image_facts(n: int) -> dict:
    reference = f"registry.example:5000/team/app{n:03d}"
    manifest = digest("manifest", n)
    return {
        "version": RECORD_VERSION,
        "reference": reference,
        "tag": "1.0",
        "platform": "linux/amd64",
        "manifest": manifest,
        "digest": digest("index", n) if n % 2 else manifest,
        "config": digest("config", n),
        "layers": [
            {
                "digest": digest("layer", n, i),
                "size": 1000 * i + n,
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            }
            for i in range(3)
        ],
        "file": f"/usr/share/pkg{n // 10}/images/x{n}.tar.zst",
        "file_sha256": digest("file", n),
        "file_size": 12345 + n,
        "format": "docker-archive",
        "compression": "zst",
        "compression_level": 3,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, default=100)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="cl-bench-sbom."))
    print(f"machine: {machine()}")
    try:
        deploy = workdir / "container-lock"
        deploy.mkdir()
        for p in range(max(1, args.n // 10)):
            images = [image_facts(p * 10 + i) for i in range(min(10, args.n - p * 10))]
            (deploy / f"pkg{p}.json").write_text(
                json.dumps(
                    {
                        "version": MANIFEST_VERSION,
                        "package": {"name": f"pkg{p}", "version": "1.0", "arch": "amd64"},
                        "engine": "docker",
                        "source_date_epoch": 1700000000,
                        "images": images,
                    }
                )
            )
        start = time.perf_counter()
        subprocess.run(
            [
                sys.executable,
                "-m",
                "audit",
                "sbom",
                "--deploy-dir",
                str(workdir),
                "-o",
                str(workdir / "sbom.json"),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        elapsed = time.perf_counter() - start
        size = (workdir / "sbom.json").stat().st_size
        print(
            f"SBOM of {args.n} images ({args.n * 3} layers): {elapsed:.2f} s wall "
            f"(process start, build, serialise, schema validation), {size / 1e3:.0f} kB"
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
