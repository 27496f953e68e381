"""The one place where exceptions become errno values.

No exception but ``FUSEError`` may leave a pyfuse3 handler (the mount would die), so
every handler runs inside :func:`fuse_handler`: known errors become their errno with a
sentence in the log, anything else becomes EIO with a traceback.
"""

from __future__ import annotations

import errno
import functools
import logging
from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

import pyfuse3

from ..deadline import request_deadline
from ..storage import errors as se
from ..storage.errors import (
    BackendUnavailableError,
    FileChangedError,
    InvalidOffsetError,
    InvalidPathError,
    PathNotFoundError,
    StorageDriverError,
    StoreFullError,
    StoreReadOnlyError,
    UnsafeEntryError,
)

log = logging.getLogger("layerfs.fs")

ERRNO_OF: list[tuple[type[BaseException], int]] = [
    (se.DigestMismatchError, errno.EBADMSG),
    # a manifest naming blobs not linked here is bad content, not a missing path:
    # EINVAL, so a shell says "Invalid argument" rather than "No such file"
    (se.ManifestBlobsUnknownError, errno.EINVAL),
    (se.BlobUnknownError, errno.ENOENT),
    (se.UploadUnknownError, errno.ENOENT),
    (se.ManifestUnknownError, errno.ENOENT),
    (se.TagUnknownError, errno.ENOENT),
    (se.UploadClosedError, errno.ESTALE),
    (se.UploadBusyError, errno.EBUSY),
    (se.RegistryError, errno.EINVAL),  # names, tags, digests, links, sizes, manifests
    (PathNotFoundError, errno.ENOENT),
    (InvalidPathError, errno.EINVAL),
    (InvalidOffsetError, errno.EINVAL),
    (UnsafeEntryError, errno.EACCES),  # a symlink or device in the store: never followed
    (FileChangedError, errno.EBUSY),  # another program appended to an upload meanwhile
    (StoreFullError, errno.ENOSPC),
    (StoreReadOnlyError, errno.EROFS),
    (BackendUnavailableError, errno.EIO),
    (StorageDriverError, errno.EIO),
]


class Refusal(Exception):
    """A request the view refuses on purpose: an errno and a sentence for the log."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.errno = code


def errno_of(exc: BaseException) -> int:
    if isinstance(exc, Refusal):
        return exc.errno
    for kind, code in ERRNO_OF:
        if isinstance(exc, kind):
            return code
    return errno.EIO


P = ParamSpec("P")
R = TypeVar("R")

# errno values that are answers, not events worth a log line
_QUIET = {errno.ENOENT: "lookup", errno.ENODATA: "xattr", errno.EEXIST: "mkdir -p"}


def fuse_handler(func: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """Turn every exception of ``func`` into a FUSEError (see module docstring)."""

    @functools.wraps(func)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            timeout = getattr(args[0], "request_timeout", None) if args else None
            if timeout is None:  # no store call waits on a deadline (a local store)
                return await func(*args, **kwargs)
            with request_deadline(timeout):
                return await func(*args, **kwargs)
        except pyfuse3.FUSEError:
            raise
        except (Refusal, se.RegistryError, StorageDriverError) as exc:
            code = errno_of(exc)
            level = logging.DEBUG if code in _QUIET else logging.WARNING
            log.log(level, "%s refused (%s): %s", func.__name__, errno.errorcode[code], exc)
            raise pyfuse3.FUSEError(code) from None
        except Exception:
            log.exception("%s failed unexpectedly; answering EIO", func.__name__)
            raise pyfuse3.FUSEError(errno.EIO) from None

    return wrapper
