"""Shared fixtures: one ``driver`` fixture per storage backend, so every suite that
asks for it runs against each of them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from layerfs.drivers import FilesystemDriver, MemoryDriver, StorageDriver

from .registry import DockerRegistry

DRIVERS = ["memory", "filesystem"]


@pytest.fixture(params=DRIVERS)
async def driver(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[StorageDriver]:
    kind = request.param
    made: StorageDriver
    if kind == "memory":
        made = MemoryDriver()
    else:
        made = FilesystemDriver(str(tmp_path / "store"))
    try:
        yield made
    finally:
        await made.aclose()


@pytest.fixture
def store_dir(tmp_path: Path) -> Path:
    path = tmp_path / "store"
    path.mkdir()
    return path


@pytest.fixture
def docker_registry(store_dir: Path, tmp_path: Path) -> Iterator[DockerRegistry]:
    """docker-registry 2.8 serving ``store_dir`` (the filesystem driver's root)."""
    registry = DockerRegistry(tmp_path, {"filesystem": {"rootdirectory": str(store_dir)}})
    registry.start()
    try:
        yield registry
    finally:
        registry.stop()
