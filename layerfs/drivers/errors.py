"""What a driver may raise (nothing else leaves one: contract.py), and the path rule
every driver call is checked against."""

from __future__ import annotations

import re

# distribution's path rule, with no "." or ".." component (which would name something
# outside the root), in one match: it is checked on every driver call
PATH_RE = re.compile(r"(?:/(?!\.\.?(?:/|$))[A-Za-z0-9._-]+)+")


class StorageDriverError(Exception):
    """Base of every error a driver raises."""


class PathNotFoundError(StorageDriverError):
    def __init__(self, path: str, driver: str = "") -> None:
        prefix = f"{driver}: " if driver else ""
        super().__init__(f"{prefix}path not found: {path}")
        self.path = path


class InvalidPathError(StorageDriverError):
    def __init__(self, path: str, driver: str = "") -> None:
        prefix = f"{driver}: " if driver else ""
        super().__init__(f"{prefix}invalid path: {path!r}")
        self.path = path


class InvalidOffsetError(StorageDriverError):
    def __init__(self, path: str, offset: int, driver: str = "") -> None:
        super().__init__(f"{driver}: invalid offset {offset} for {path}")
        self.path = path
        self.offset = offset


class FileChangedError(StorageDriverError):
    """Another program wrote the file since this writer last did: appending now would
    put this writer's bytes after someone else's (maps to EBUSY)."""


class WriterClosedError(StorageDriverError):
    """A FileWriter was used after close, commit or cancel."""


class UnsafeEntryError(StorageDriverError):
    """An entry the driver will not follow or open: a symbolic link, a device, a
    FIFO (maps to EACCES). The store's writers could point it anywhere."""

    def __init__(self, path: str, what: str, driver: str = "") -> None:
        prefix = f"{driver}: " if driver else ""
        super().__init__(f"{prefix}{path}: {what}")
        self.path = path
        self.what = what  # what it is and what was not done to it, for a report


class StoreFullError(StorageDriverError):
    """The store's disk or quota is full (maps to ENOSPC)."""


class StoreReadOnlyError(StorageDriverError):
    """The store's file system is read-only (maps to EROFS)."""


class BackendUnavailableError(StorageDriverError):
    """The backend kept failing after retries (maps to EIO)."""


class BackendRequestError(StorageDriverError):
    """The backend refused a request (access denied, a bad request, no such bucket):
    asking again will not help (maps to EIO, with the backend's reason logged)."""


def check_path(path: str, driver: str = "", allow_root: bool = False) -> str:
    """Raise InvalidPathError unless ``path`` obeys distribution's path rule."""
    if allow_root and path == "/":
        return path
    if not isinstance(path, str) or not PATH_RE.fullmatch(path):
        raise InvalidPathError(str(path), driver)
    return path
