"""Shared set-up for the benchmarks: machine line, registry + images, BitBake build dirs."""

from __future__ import annotations

import os
import platform
import statistics
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.harness.bitbake import BuildDir
from tests.harness.containers_conf import write_registries_conf
from tests.harness.images import ImageFactory, PushedImage
from tests.harness.registry import Registry


def machine() -> str:
    """One line: host, cores, CPU model, Python."""
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    cpu = next((ln.split(":", 1)[1].strip() for ln in cpuinfo if ln.startswith("model name")), "?")
    return f"{platform.node()}: {os.cpu_count()} cores, {cpu}, Python {platform.python_version()}"


def median_of(action: Callable[[int], float], runs: int) -> float:
    """Median of what `action(i)` reports as its own duration, over `runs` calls."""
    return statistics.median(action(i) for i in range(runs))


@contextmanager
def registry_with_factory(workdir: Path) -> Iterator[tuple[Registry, ImageFactory]]:
    """A loopback registry, a HOME whose registries.conf trusts it, and an image factory."""
    registry = Registry(workdir / "registry").start()
    try:
        write_registries_conf(workdir / "home", insecure=[registry.host])
        os.environ["HOME"] = str(workdir / "home")
        yield registry, ImageFactory(workdir / "images", registry.host)
    finally:
        registry.stop()


def build_dir(workdir: Path, name: str, dl_dir: Path | None = None) -> BuildDir:
    """A build directory with its own TMPDIR and (unless given) its own DL_DIR."""
    build = BuildDir(workdir / f"build-{name}")
    build.set(DL_DIR=str(dl_dir or workdir / f"dl-{name}"), TMPDIR=str(workdir / f"build-{name}" / "tmp"))
    return build


def pinned_url(image: PushedImage) -> str:
    return f"docker://{image.host}/{image.repository};tag={image.tag};digest={image.digest}"
