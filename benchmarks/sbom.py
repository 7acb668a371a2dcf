"""SBOM benchmark: `container-lock sbom` over build manifests of N images with their packages (one run).

Each image is shaped like a real one: a Debian bookworm base (~200 dpkg packages,
each with its source package, a licence and the layer that brought it, over
three layers), distinct digests per image, half of the images pinned by a
multi-arch index; ten images per loader-package manifest. For each N the
manifests are written, then `container-lock sbom --deploy-dir` runs as a
subprocess (process start, build, serialise, schema validation, write).

Each size runs `--runs` times (default 2) and the fastest run counts (the machine is
shared: the minimum is the least disturbed). Sizes up to 100 images run `--small-runs`
times (default 7), in turns (1, 10, 100, 1, 10, 100, …) so that a change of load hits
them alike: at 10 images the marginal cost is a difference of ~0.1 s. Prints per N: wall time, wall per image,
the marginal cost per image ((T(N) − T(1)) / (N − 1): process start and the schema
load taken out), the same from the child's CPU time (user + system, which other
processes on the machine disturb less than wall time), the child's peak RSS (its own
rusage), and the ratio of the marginal cost per image at the largest N to that at the
smallest, for wall and CPU time.
Run: `.venv/bin/python -m benchmarks.sbom [--images 10 100 1000] [--packages 200] [--runs 2]`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import machine
from containerlock.contents.inventory import INVENTORY_VERSION
from containerlock.oci.record import RECORD_VERSION
from containerlock.payload.archive import MANIFEST_VERSION

PER_PACKAGE = 10  # images per loader-package manifest
LICENSES = ("GPL-2.0-or-later", "LGPL-2.1-or-later", "MIT", "BSD-3-Clause", "Apache-2.0", "public-domain")
DEB12 = {"ID": "debian", "VERSION_ID": "12", "PRETTY_NAME": "Debian GNU/Linux 12 (bookworm)"}


def digest(*parts: object) -> str:
    return "sha256:" + hashlib.sha256(repr(parts).encode()).hexdigest()


def inventory(n: int, layers: list[str], packages: int) -> dict[str, Any]:
    """A bookworm-like dpkg inventory: most packages from the base layer, some from the later two."""
    found = []
    for i in range(packages):
        source = f"src{i // 3:03d}"
        found.append(
            {
                "type": "deb",
                "name": f"lib{source}-{i % 3}",
                "version": f"{i % 7}.{i % 11}.{i}-1+deb12u{i % 4}",
                "arch": "amd64" if i % 5 else "all",
                "source": source,
                "license": LICENSES[i % len(LICENSES)],
                "database": "var/lib/dpkg/status",
                "layer": layers[0 if i < packages * 0.8 else 1 + i % 2],
            }
        )
    found.sort(key=lambda f: f["name"])
    return {"version": INVENTORY_VERSION, "os": DEB12, "packages": found, "notes": []}


def image_facts(n: int, packages: int) -> dict[str, Any]:
    """One packaged image as do_install_fetched_containers records it, with its inventory."""
    reference = f"registry.example:5000/team/app{n:04d}"
    manifest = digest("manifest", n)
    layers = [digest("layer", n, i) for i in range(3)]
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
                "digest": layer,
                "size": 1_000_000 * (i + 1) + n,
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            }
            for i, layer in enumerate(layers)
        ],
        "file": f"/usr/share/pkg{n // PER_PACKAGE}/images/app{n:04d}.tar.zst",
        "file_sha256": digest("file", n),
        "file_size": 50_000_000 + n,
        "format": "docker-archive",
        "payload": "recompress",
        "compression": "zst",
        "compression_level": 3,
        "inventory": inventory(n, layers, packages),
    }


def write_manifests(deploy: Path, images: int, packages: int) -> None:
    """`images` images in loader-package manifests of PER_PACKAGE images each."""
    deploy.mkdir(parents=True)
    for p in range((images + PER_PACKAGE - 1) // PER_PACKAGE):
        count = min(PER_PACKAGE, images - p * PER_PACKAGE)
        doc = {
            "version": MANIFEST_VERSION,
            "package": {"name": f"pkg{p:03d}", "version": "1.0", "arch": "amd64"},
            "engine": "podman",
            "source_date_epoch": 1700000000,
            "images": [image_facts(p * PER_PACKAGE + i, packages) for i in range(count)],
        }
        (deploy / f"pkg{p:03d}.json").write_text(json.dumps(doc, indent=1, sort_keys=True))


def command() -> list[str]:
    """`container-lock` next to this interpreter (the venv's), else `python -m audit`."""
    script = Path(sys.executable).parent / "container-lock"
    return [str(script)] if script.exists() else [sys.executable, "-m", "audit"]


def run_sbom(deploy: Path, out: Path) -> tuple[float, float, int]:
    """Wall seconds, CPU seconds and peak RSS (bytes) of one `container-lock sbom` child."""
    start = time.perf_counter()
    child = subprocess.Popen(
        [*command(), "sbom", "--deploy-dir", str(deploy), "-o", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    _, status, usage = os.wait4(child.pid, 0)
    elapsed = time.perf_counter() - start
    child.returncode = os.waitstatus_to_exitcode(status)
    stderr = child.stderr.read().decode() if child.stderr else ""
    if child.returncode:
        raise SystemExit(f"container-lock sbom failed ({child.returncode}): {stderr}")
    return elapsed, usage.ru_utime + usage.ru_stime, usage.ru_maxrss * 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--packages", type=int, default=200)
    parser.add_argument("--runs", type=int, default=2, help="runs per size; the fastest counts")
    parser.add_argument("--small-runs", type=int, default=7, help="runs per size up to 100 images")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="cl-bench-sbom."))
    print(f"machine: {machine()}")
    print(f"{args.packages} dpkg packages and 3 layers per image, {PER_PACKAGE} images per manifest")
    try:
        sizes = sorted(set(args.images) | {1})
        results: dict[int, tuple[float, float, int, int]] = {}
        small = [n for n in sizes if n <= 100]
        for n in sizes:
            write_manifests(workdir / f"n{n}" / "container-lock", n, args.packages)
        runs: dict[int, list[tuple[float, float, int]]] = {n: [] for n in sizes}
        for _ in range(args.small_runs):
            for n in small:
                runs[n].append(
                    run_sbom(workdir / f"n{n}" / "container-lock", workdir / f"n{n}" / "sbom.cdx.json")
                )
        for n in sizes:
            while len(runs[n]) < args.runs:
                runs[n].append(
                    run_sbom(workdir / f"n{n}" / "container-lock", workdir / f"n{n}" / "sbom.cdx.json")
                )
            results[n] = (
                min(t for t, _, _ in runs[n]),
                min(c for _, c, _ in runs[n]),
                max(rss for _, _, rss in runs[n]),
                (workdir / f"n{n}" / "sbom.cdx.json").stat().st_size,
            )
            shutil.rmtree(workdir / f"n{n}")
        header = (
            "images",
            "wall s",
            "s/image",
            "marginal ms/image",
            "CPU s",
            "CPU marginal ms",
            "RSS MB",
            "SBOM MB",
        )
        widths = (7, 8, 8, 18, 8, 16, 7, 8)
        print(" ".join(f"{h:>{w}}" for h, w in zip(header, widths, strict=True)))
        wall = {n: r[0] for n, r in results.items()}
        cpu = {n: r[1] for n, r in results.items()}
        marginal = {n: (wall[n] - wall[1]) / (n - 1) if n > 1 else float("nan") for n in sizes}
        cpu_marginal = {n: (cpu[n] - cpu[1]) / (n - 1) if n > 1 else float("nan") for n in sizes}
        for n in sizes:
            _, _, rss, size = results[n]
            print(
                f"{n:>7} {wall[n]:>8.2f} {wall[n] / n:>8.4f} {marginal[n] * 1e3:>18.1f} "
                f"{cpu[n]:>8.2f} {cpu_marginal[n] * 1e3:>16.1f} {rss / 1e6:>7.0f} {size / 1e6:>8.1f}"
            )
        low, high = min(n for n in sizes if n > 1), max(sizes)
        print(
            f"process start + 1 image: {wall[1]:.2f} s wall, {cpu[1]:.2f} s CPU; marginal cost per image "
            f"{high} vs {low} images: {marginal[high] / marginal[low]:.2f}x wall, "
            f"{cpu_marginal[high] / cpu_marginal[low]:.2f}x CPU (goal 0.8-1.2); "
            f"wall/image {high} vs {low}: {wall[high] / high / (wall[low] / low):.2f}x"
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
