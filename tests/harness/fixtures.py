"""pytest fixtures for the real registry, the image factory and a private dockerd (session-wide)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.harness.dockerd import Dockerd
from tests.harness.images import ImageFactory
from tests.harness.registry import Registry


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """Debian's docker-registry on a random 127.0.0.1 port, temp storage."""
    with Registry(tmp_path_factory.mktemp("registry")) as reg:
        yield reg


@pytest.fixture(scope="session")
def image_factory(tmp_path_factory: pytest.TempPathFactory, registry: Registry) -> ImageFactory:
    """Generates and pushes test images to the session registry."""
    return ImageFactory(tmp_path_factory.mktemp("images"), registry.host)


@pytest.fixture(scope="session")
def dockerd() -> Iterator[Dockerd]:
    """A private dockerd (Debian's docker.io, vfs, no network), shared by the session; fails if absent.

    Tests that load images remove them afterwards (`Dockerd.remove_all`).
    """
    with Dockerd() as engine:
        yield engine
