"""Shared fixtures: a real registry, generated images, a user HOME for skopeo, BitBake build dirs."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import coverage
from tests.harness.bitbake import BuildDir
from tests.harness.containers_conf import write_registries_conf
from tests.harness.podman import Podman

pytest_plugins = ["tests.harness.fixtures"]


@pytest.fixture(scope="session", autouse=True)
def user_home(tmp_path_factory: pytest.TempPathFactory, registry) -> Iterator[Path]:
    """A HOME whose registries.conf marks the loopback registry insecure (plain HTTP)."""
    home = tmp_path_factory.mktemp("home")
    write_registries_conf(home, insecure=[registry.host])
    old = os.environ.get("HOME")
    os.environ["HOME"] = str(home)
    yield home
    if old is not None:
        os.environ["HOME"] = old


@pytest.fixture
def build(tmp_path: Path) -> Iterator[BuildDir]:
    """A BitBake build directory with the test core layer and this project's layer."""
    build = BuildDir(tmp_path / "build")
    build.set(DL_DIR=str(tmp_path / "downloads"), TMPDIR=str(tmp_path / "build" / "tmp"))
    yield build
    build.events.close()


@pytest.fixture
def podman(tmp_path: Path) -> Iterator[Podman]:
    """Real podman (root, vfs) with a private store, and podman/docker shims on a PATH."""
    engine = Podman(tmp_path / "podman")
    yield engine
    engine.close()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """What the real-build tiers (Isar, OE) covered: refs, releases, machines, the layer."""
    lines = coverage.summary_lines()
    if lines:
        terminalreporter.write_sep("=", "real-build tiers: what they covered")
        for line in lines:
            terminalreporter.write_line(line)
