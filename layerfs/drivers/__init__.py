"""Storage drivers: bytes at paths (memory, filesystem, s3)."""

from __future__ import annotations

import os
from typing import Any

from .base import (
    BackendRequestError,
    BackendUnavailableError,
    FileChangedError,
    FileInfo,
    FileWriter,
    InvalidOffsetError,
    InvalidPathError,
    PathNotFoundError,
    PendingWrite,
    Reader,
    StorageDriver,
    StorageDriverError,
    StoreFullError,
    StoreReadOnlyError,
    UnsafeEntryError,
    WriterClosedError,
)
from .filesystem import FilesystemDriver
from .memory import MemoryDriver

__all__ = [
    "BackendRequestError",
    "BackendUnavailableError",
    "FileChangedError",
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
    "StoreFullError",
    "StoreReadOnlyError",
    "UnsafeEntryError",
    "WriterClosedError",
    "driver_from_url",
]


def driver_from_url(
    store: str, s3: dict[str, Any] | None = None, create: bool = True
) -> StorageDriver:
    """``memory://``, ``s3://BUCKET[/ROOTDIRECTORY]`` or a local directory. An S3
    store takes ``s3``'s endpoint, region, profile, part_size and timeout (else
    ``LAYERFS_S3_TIMEOUT``), and the rest from the standard AWS environment and files.
    A local directory is made when missing, unless ``create`` is False."""
    if s3 and not store.startswith("s3://"):
        raise ValueError(f"{', '.join(sorted(s3))}: only for s3:// stores, not {store!r}")
    if store == "memory://":
        return MemoryDriver()
    if store.startswith("s3://"):
        from .s3 import S3Driver

        bucket, _, root = store[len("s3://") :].partition("/")
        options = dict(s3 or {})
        if "timeout" not in options and os.environ.get("LAYERFS_S3_TIMEOUT"):
            options["timeout"] = float(os.environ["LAYERFS_S3_TIMEOUT"])
        return S3Driver(bucket, root, **options)
    if "://" in store:
        raise ValueError(f"unsupported store {store!r}: give a directory, s3:// or memory://")
    return FilesystemDriver(store, create=create)
