"""Shared fixtures: one ``driver`` fixture per storage backend, so every suite that
asks for it runs against each of them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from layerfs.drivers import FilesystemDriver, MemoryDriver, StorageDriver

from .mounts import Mount
from .registry import DockerRegistry

DRIVERS = ["memory", "filesystem"]


def make_driver(kind: str, tmp_path: Path) -> StorageDriver:
    if kind == "memory":
        return MemoryDriver()
    if kind == "filesystem":
        return FilesystemDriver(str(tmp_path / "store"))
    raise ValueError(f"unknown driver kind {kind!r}")


@pytest.fixture(params=DRIVERS)
async def driver(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[StorageDriver]:
    made = make_driver(request.param, tmp_path)
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


@pytest.fixture
def mount(store_dir: Path, tmp_path: Path) -> Iterator[Mount]:
    """``layerfs mount -f`` of ``store_dir`` on a kernel FUSE mount."""
    mounted = Mount(store_dir, tmp_path / "mnt", tmp_path / "layerfs.log").start()
    try:
        yield mounted
    finally:
        mounted.stop()
