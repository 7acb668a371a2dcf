"""Payload kinds: package time, payload size and device load time (docker and podman), one run.

For the ~100 MB compressible image and a real Debian bookworm minbase root file system (one
layer, made by mmdebstrap), each payload kind is built through real BitBake from a fresh DL_DIR
(fetch + package, timed): `layers` (the registry's blobs as fetched), `recompress` zstd -3 and
-19, and `recompress none` (an uncompressed docker-archive: the load baseline). Each payload is
then loaded with the package's own loader script into a fresh podman store and a private dockerd.
Ratios: fetch+package vs the bare pipeline (`skopeo copy … docker-archive:` + `zstd -3`), and
device load vs loading the uncompressed archive. Goals for `layers`: ≤ 0.6× and ≤ 1.1×.
Run: `.venv/bin/python -m benchmarks.payload [--size-mb 100] [--runs 2]`.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
import time
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


def measure(workdir: Path, name: str, image: PushedImage, runs: int, dockerd: Dockerd) -> None:
    bare = median_of(lambda _: bare_pipeline(workdir, image), runs)
    rows = {}
    for kind in KINDS:
        timings = [package(workdir, image, kind, run) for run in range(runs)]
        share = timings[-1][1]
        size = sum(p.stat().st_size for p in (share / "images").iterdir())

        def podman_load(run: int, share: Path = share, tag: str = kind.replace(" ", "")) -> float:
            engine = Podman(workdir / f"podman-{tag}-{run}")
            try:
                return load(share, engine.env(), "podman")
            finally:
                engine.close()

        def docker_load(_: int, share: Path = share) -> float:
            dockerd.remove_all()
            return load(share, dockerd.env(), "docker")

        rows[kind] = (
            sorted(t for t, _ in timings)[len(timings) // 2],
            size,
            median_of(docker_load, runs),
            median_of(podman_load, runs),
        )
    print(f"\n{name}: bare skopeo → docker-archive + zstd -3: {bare:.2f} s")
    header = ("payload", "fetch+package", "vs bare", "size MB", "docker load", "podman load")
    print("  " + " ".join(f"{h:>14}" for h in header))
    none_docker, none_podman = rows["none"][2], rows["none"][3]
    for kind, (package_s, size, docker_s, podman_s) in rows.items():
        cells = (
            kind,
            f"{package_s:.2f} s",
            f"{package_s / bare:.2f}x",
            f"{size / 1e6:.1f}",
            f"{docker_s:.2f} s {docker_s / none_docker:.2f}x",
            f"{podman_s:.2f} s {podman_s / none_podman:.2f}x",
        )
        print("  " + " ".join(f"{c:>14}" for c in cells))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size-mb", type=int, default=100)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--rootfs-cache", type=Path, default=Path(tempfile.gettempdir()) / "cl-bench-rootfs")
    parser.add_argument("--images", default="large,minbase", help="Which images (comma-separated).")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="cl-bench-payload."))
    print(f"machine: {machine()}")
    try:
        with registry_with_factory(workdir) as (_, factory), Dockerd() as dockerd:
            if "large" in args.images:
                large = factory.large_compressible("bench/large", size_mb=args.size_mb)
                measure(workdir, f"~{args.size_mb} MB compressible image", large, args.runs, dockerd)
            if "minbase" in args.images:
                minbase = factory.rootfs("bench/minbase", debian_minbase(args.rootfs_cache))
                measure(workdir, "Debian bookworm minbase", minbase, args.runs, dockerd)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
