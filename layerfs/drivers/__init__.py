"""Storage drivers: bytes at paths (memory, filesystem, s3)."""

from __future__ import annotations

from .base import (
    BackendUnavailableError,
    FileInfo,
    FileWriter,
    InvalidOffsetError,
    InvalidPathError,
    PathNotFoundError,
    PendingWrite,
    Reader,
    StorageDriver,
    StorageDriverError,
    WriterClosedError,
)
from .filesystem import FilesystemDriver
from .memory import MemoryDriver

__all__ = [
    "BackendUnavailableError",
    "FileInfo",
    "FileWriter",
    "FilesystemDriver",
    "InvalidOffsetError",
    "InvalidPathError",
    "MemoryDriver",
    "PathNotFoundError",
    "PendingWrite",
    "Reader",
    "StorageDriver",
    "StorageDriverError",
    "WriterClosedError",
    "driver_from_url",
]


def driver_from_url(store: str) -> StorageDriver:
    """``memory://``, ``s3://BUCKET[/ROOTDIRECTORY]`` (endpoint, region and
    credentials from the standard AWS environment and files) or a local directory."""
    if store == "memory://":
        return MemoryDriver()
    if store.startswith("s3://"):
        from .s3 import S3Driver

        bucket, _, root = store[len("s3://") :].partition("/")
        return S3Driver(bucket, root)
    if "://" in store:
        raise ValueError(f"unsupported store {store!r}: give a directory, s3:// or memory://")
    return FilesystemDriver(store)
