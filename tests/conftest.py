"""Shared fixtures: one ``driver`` fixture per storage backend, so every suite that
asks for it runs against each of them."""

from __future__ import annotations

import socket
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from layerfs.drivers import FilesystemDriver, MemoryDriver, StorageDriver
from layerfs.drivers.s3 import S3Driver

from .mounts import Mount
from .registry import DockerRegistry
from .seaweed import SeaweedFS
from .stores import FilesystemStore, S3Store

Store = FilesystemStore | S3Store

DRIVERS = ["memory", "filesystem", "s3"]


def make_driver(kind: str, tmp_path: Path, seaweed: SeaweedFS | None = None) -> StorageDriver:
    if kind == "s3":
        assert seaweed is not None
        return S3Driver(
            S3_BUCKET,
            f"t/{tmp_path.name}",
            endpoint=seaweed.endpoint,
            access_key="any",
            secret_key="any",
        )
    if kind == "memory":
        return MemoryDriver()
    if kind == "filesystem":
        return FilesystemDriver(str(tmp_path / "store"))
    raise ValueError(f"unknown driver kind {kind!r}")


@pytest.fixture(params=DRIVERS)
async def driver(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[StorageDriver]:
    seaweed = request.getfixturevalue("seaweedfs") if request.param == "s3" else None
    made = make_driver(request.param, tmp_path, seaweed)
    try:
        yield made
    finally:
        await made.aclose()


S3_BUCKET = "layerfs-tests"


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedFS]:
    """One SeaweedFS for the session; each test works below its own key prefix."""
    server = SeaweedFS(tmp_path_factory.mktemp("seaweedfs")).start()
    try:
        server.create_bucket(S3_BUCKET)
        yield server
    finally:
        server.stop()


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
def store_registry(store: Store, tmp_path: Path) -> Iterator[DockerRegistry]:
    """docker-registry 2.8 serving ``store`` (its filesystem or s3 driver)."""
    registry = DockerRegistry(tmp_path, store.registry_storage()).start()
    try:
        yield registry
    finally:
        registry.stop()


@pytest.fixture(params=["filesystem", "s3"])
def store(request: pytest.FixtureRequest, store_dir: Path, tmp_path: Path) -> Store:
    """A store for mount tests: ``store_dir``, or a key prefix on SeaweedFS."""
    if request.param == "s3":
        return S3Store(request.getfixturevalue("seaweedfs"), S3_BUCKET, f"m-{tmp_path.name}")
    return FilesystemStore(store_dir)


@pytest.fixture
def mount(store: Store, tmp_path: Path) -> Iterator[Mount]:
    """``layerfs mount -f`` of ``store`` on a kernel FUSE mount."""
    mounted = Mount(store.spec, tmp_path / "mnt", tmp_path / "layerfs.log", env=store.env)
    mounted.start()
    try:
        yield mounted
    finally:
        mounted.stop()


@pytest.fixture
def silent_endpoint() -> Iterator[str]:
    """An S3 endpoint that accepts connections and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except TimeoutError:
                continue
            except OSError:
                return

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(2)
        for conn in held:
            conn.close()
        listener.close()
