"""pytest fixtures for the real registry and the image factory (session-wide)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

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
