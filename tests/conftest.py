"""Shared fixtures: one ``driver`` fixture per storage backend, so every suite that
asks for it runs against each of them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from layerfs.drivers import FilesystemDriver, MemoryDriver, StorageDriver

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
