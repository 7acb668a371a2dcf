"""Payload kinds: package time, payload size and device load time (docker and podman), one run.

For the ~100 MB compressible image and a real Debian bookworm minbase root file system (one
layer, made by mmdebstrap), each payload kind is built through real BitBake from a fresh DL_DIR
(fetch + package, timed): `layers` (the registry's blobs as fetched), `recompress` zstd -3 and
-19, and `recompress none` (an uncompressed docker-archive: the load baseline). Each payload is
then loaded with the package's own loader script into a fresh podman store and two private
dockerds: one that finds `unpigz` (what a docker-loader package installs on the target: pigz)
and one started with MOBY_DISABLE_PIGZ=1 (Go's gzip). Loads are interleaved across kinds and
preceded by `sync`; each figure is the median of --runs.
Ratios: fetch+package vs the bare pipeline (`skopeo copy … docker-archive:` + `zstd -3`), and
device load vs loading the uncompressed archive. Goals for `layers`: ≤ 0.6× and ≤ 1.1×.
Run: `.venv/bin/python -m benchmarks.payload [--size-mb 100] [--runs 3] [--images large,minbase]`.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks.common import build_dir, machine, median_of, pinned_url, registry_with_factory
from tests.harness.dockerd import Dockerd
from tests.harness.images import PushedImage
from tests.harness.podman import Podman
from tests.harness.rootfs import debian_minbase

FETCH_AND_PACKAGE = ("do_fetch", "do_unpack", "do_install", "do_install_fetched_containers")
KINDS = {
    "layers": {"CONTAINER_PAYLOAD": "layers"},
    "zstd -3": {
        "CONTAINER_PAYLOAD": "recompress",
        "CONTAINER_COMPRESSION": "zst",
        "CONTAINER_ZSTD_LEVEL": "3",
    },
    "zstd -19": {
        "CONTAINER_PAYLOAD": "recompress",
        "CONTAINER_COMPRESSION": "zst",
        "CONTAINER_ZSTD_LEVEL": "19",
    },
    "none": {"CONTAINER_PAYLOAD": "recompress", "CONTAINER_COMPRESSION": "none"},
}


def package(workdir: Path, image: PushedImage, kind: str, run: int) -> tuple[float, Path]:
    """Fetch + package `image` as `kind` from an empty DL_DIR; (seconds, payload directory)."""
    build = build_dir(workdir, f"{kind.replace(' ', '')}-{run}")
    build.set(CONTAINER_INVENTORY="0", CONTAINER_COMPRESSION_THREADS="2", **KINDS[kind])
    d = build.parse(
        build.write_recipe("bench_1.0", f'inherit docker-loader\nSRC_URI += "{pinned_url(image)}"\n')
    )
    start = time.perf_counter()
    build.execute(d, *FETCH_AND_PACKAGE)
    return time.perf_counter() - start, Path(d.getVar("D")) / "usr" / "share" / "bench"


def bare_pipeline(workdir: Path, image: PushedImage) -> float:
    """What a script does without container-lock: skopeo to a docker-archive, then zstd -3."""
    archive = workdir / "bare.tar"
    archive.unlink(missing_ok=True)
    start = time.perf_counter()
    subprocess.run(
        [
            "skopeo",
            "copy",
            "-q",
            f"docker://{image.ref_by_digest}",
            f"docker-archive:{archive}:{image.reference}",
        ],
        check=True,
    )
    subprocess.run(["zstd", "-q", "-3", "-T2", "-f", str(archive)], check=True)
    elapsed = time.perf_counter() - start
    archive.unlink()
    Path(f"{archive}.zst").unlink()
    return elapsed


def load(share: Path, env: dict[str, str], engine: str) -> float:
    """Seconds the package's loader script takes to load its payload (after a `sync`)."""
    subprocess.run(["sync"], check=True)  # the previous store's removal must not be written meanwhile
    start = time.perf_counter()
    result = subprocess.run(
        [str(share / "container-loader.sh")],
        env={**env, "CONTAINER_LOADER_ENGINE": engine},
        capture_output=True,
        text=True,
    )
    elapsed = time.perf_counter() - start
    if result.returncode:
        raise RuntimeError(result.stderr)
    return elapsed


@dataclass
class Engines:
    """The loaders' engines: podman, dockerd as on a docker-loader target (with pigz), dockerd without."""

    workdir: Path
    dockerd: Dockerd
    dockerd_no_pigz: Dockerd

    def loads(self, share: Path, tag: str, run: int) -> dict[str, float]:
        """One load of `share` into each engine, from an empty store."""
        times = {}
        for column, dockerd in (("docker", self.dockerd), ("docker, no pigz", self.dockerd_no_pigz)):
            dockerd.remove_all()
            times[column] = load(share, dockerd.env(), "docker")
        # A store of its own: podman refuses a store made with another runroot.
        podman = Podman(Path(tempfile.mkdtemp(prefix=f"podman-{tag}-{run}-", dir=self.workdir)))
        try:
            times["podman"] = load(share, podman.env(), "podman")
        finally:
            podman.close()
        return times


COLUMNS = ("docker", "docker, no pigz", "podman")


def measure(workdir: Path, name: str, image: PushedImage, runs: int, engines: Engines) -> None:
    bare = median_of(lambda _: bare_pipeline(workdir, image), runs)
    packaged = {}
    for kind in KINDS:
        timings = [package(workdir, image, kind, run) for run in range(runs)]
        share = timings[-1][1]
        size = sum(p.stat().st_size for p in (share / "images").iterdir())
        packaged[kind] = (statistics.median(t for t, _ in timings), size, share)
    # Loads interleaved across kinds, so that a slow moment of the machine hits every kind alike.
    loads: dict[str, dict[str, list[float]]] = {kind: {c: [] for c in COLUMNS} for kind in KINDS}
    for run in range(runs):
        for kind, (_, _, share) in packaged.items():
            for column, seconds in engines.loads(share, kind.replace(" ", ""), run).items():
                loads[kind][column].append(seconds)
    print(f"\n{name}: bare skopeo → docker-archive + zstd -3: {bare:.2f} s; medians of {runs} runs")
    header = ("payload", "fetch+package", "vs bare", "size MB", *(f"{c} load" for c in COLUMNS))
    print("  " + " ".join(f"{h:>20}" for h in header))
    baseline = {c: statistics.median(loads["none"][c]) for c in COLUMNS}
    for kind, (package_s, size, _) in packaged.items():
        cells = [kind, f"{package_s:.2f} s", f"{package_s / bare:.2f}x", f"{size / 1e6:.1f}"]
        for column in COLUMNS:
            seconds = statistics.median(loads[kind][column])
            cells.append(f"{seconds:.2f} s {seconds / baseline[column]:.2f}x")
        print("  " + " ".join(f"{c:>20}" for c in cells))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size-mb", type=int, default=100)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rootfs-cache", type=Path, default=Path(tempfile.gettempdir()) / "cl-bench-rootfs")
    parser.add_argument("--images", default="large,minbase", help="Which images (comma-separated).")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="cl-bench-payload."))
    print(f"machine: {machine()}")
    try:
        with (
            registry_with_factory(workdir) as (_, factory),
            Dockerd() as dockerd,
            Dockerd(daemon_env={"MOBY_DISABLE_PIGZ": "1"}) as dockerd_no_pigz,
        ):
            engines = Engines(workdir, dockerd, dockerd_no_pigz)
            if "large" in args.images:
                large = factory.large_compressible("bench/large", size_mb=args.size_mb)
                measure(workdir, f"~{args.size_mb} MB compressible image", large, args.runs, engines)
            if "minbase" in args.images:
                minbase = factory.rootfs("bench/minbase", debian_minbase(args.rootfs_cache))
                measure(workdir, "Debian bookworm minbase", minbase, args.runs, engines)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
