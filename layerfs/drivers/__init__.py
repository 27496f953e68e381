"""Storage drivers: bytes at paths (memory, filesystem; s3 to come)."""

from __future__ import annotations

from .base import (
    BackendUnavailableError,
    FileInfo,
    FileWriter,
    InvalidOffsetError,
    InvalidPathError,
    PathNotFoundError,
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
    "Reader",
    "StorageDriver",
    "StorageDriverError",
    "WriterClosedError",
    "driver_from_url",
]


def driver_from_url(store: str) -> StorageDriver:
    """``memory://`` or a local directory (created when missing)."""
    if store == "memory://":
        return MemoryDriver()
    if "://" in store:
        raise ValueError(f"unsupported store {store!r}: give a directory or memory://")
    return FilesystemDriver(store)
