"""The one wrapper of every driver: each method of the contract checks its paths
before the driver sees them, and any error that is not already a driver error leaves
it as one. A driver implements only its primitives; what it may raise is the set in
``base.py`` and nothing else, whatever its library raised (docs/DESIGN.md, "Layers").

The wrapping is done once per class (``StorageDriver.__init_subclass__``, and for
``Reader`` and ``FileWriter``), on the methods ``PATHS`` and ``STREAM_METHODS`` name.
"""

from __future__ import annotations

import errno
import functools
import inspect
import logging
from collections.abc import Callable
from typing import Any

import trio

from .errors import (
    BackendRequestError,
    PathNotFoundError,
    StorageDriverError,
    StoreFullError,
    StoreReadOnlyError,
    check_path,
)

log = logging.getLogger("layerfs.drivers")

# method: its path arguments, each (position after self, name, "/" allowed, a list)
PathArgument = tuple[int, str, bool, bool]
PATHS: dict[str, tuple[PathArgument, ...]] = {
    **{
        method: ((0, "path", False, False),)
        for method in (
            "get_content",
            "put_content",
            "reader",
            "writer",
            "stat",
            "stamp",
            "committed_size",
            "committed_stamp",
            "stat_committed",
            "committed_reader",
            "delete",
            "delete_if_present",
            "exists",
        )
    },
    **{
        method: ((0, "path", True, False),)
        for method in (
            "stat_dir",
            "list",
            "list_infos",
            "list_if_present",
            "list_tree",
            "list_tree_infos",
            "pending_writes",
        )
    },
    **{
        method: ((0, "paths", False, True),)
        for method in ("get_contents", "stat_many", "stat_committed_many", "file_sizes")
    },
    "list_trees": ((0, "tops", False, True),),
    # ``below`` is a path's tail ("/data"), checked as a path
    "file_sizes_in": ((0, "directories", False, True), (2, "below", False, False)),
    "move": ((0, "source", False, False), (1, "dest", False, False)),
    "abort_write": (),
    "statvfs": (),
}
STREAM_METHODS = ("read", "aclose", "write", "write_pieces", "close", "cancel", "commit")

# errors that are no failure of the store, left as they are: a driver's own, an
# operation it lacks, a test's assertion, cancellation
_PASSED = (NotImplementedError, AssertionError, trio.Cancelled)


def as_driver_error(exc: Exception, driver: str, where: str) -> Exception:
    """The driver error for ``exc``: OSError by its errno, anything else a failed
    request (logged with its traceback, since it says more than its message)."""
    if isinstance(exc, BaseExceptionGroup):
        # a nursery's: the calls a driver makes at once failed; the first tells why
        leaves = list(_leaves(exc))
        if not all(isinstance(leaf, Exception) and not isinstance(leaf, trio.Cancelled)
                   for leaf in leaves):  # fmt: skip
            return exc
        return as_driver_error(leaves[0], driver, where)  # type: ignore[arg-type]
    if isinstance(exc, (StorageDriverError, *_PASSED)):
        return exc
    if isinstance(exc, OSError):
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            return PathNotFoundError(where, driver)
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return StoreFullError(f"{driver}: {where}: {exc.strerror}")
        if exc.errno == errno.EROFS:
            return StoreReadOnlyError(f"{driver}: {where}: {exc.strerror}")
        return BackendRequestError(f"{driver}: {where}: {exc}")
    log.error("%s: %s: %s", driver, where, exc, exc_info=exc)
    return BackendRequestError(f"{driver}: {where}: {type(exc).__name__}: {exc}")


def _leaves(group: BaseExceptionGroup) -> Any:
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            yield from _leaves(exc)
        else:
            yield exc


def _checked_paths(
    self: Any, paths: tuple[PathArgument, ...], args: tuple, kwargs: dict
) -> tuple[str, tuple, dict]:
    """Check the path arguments of one call; returns the first, for messages, and the
    arguments, where an iterable of paths that is no list or tuple (made as it is
    read: a pass's path of every blob) is handed on checked as it is read."""
    first = ""
    for position, name, root, many in paths:
        in_args = position < len(args)
        value = args[position] if in_args else kwargs.get(name)
        if value is None:
            continue
        if many and not isinstance(value, list | tuple):
            value = (check_path(p, self.name, allow_root=root) for p in value)
            if in_args:
                args = (*args[:position], value, *args[position + 1 :])
            else:
                kwargs = {**kwargs, name: value}
            continue
        for path in value if many else (value,):
            check_path(path, self.name, allow_root=root)
            first = first or path
    return first, args, kwargs


def wrap_method(fn: Callable[..., Any], paths: tuple[PathArgument, ...] | None) -> Any:
    """``fn`` with its ``paths`` checked (a driver's method) or none (a stream's),
    and every error it raises a driver error."""

    @functools.wraps(fn)
    async def wrapped(self: Any, *args: Any, **kwargs: Any) -> Any:
        where = ""
        if paths:
            where, args, kwargs = _checked_paths(self, paths, args, kwargs)
        try:
            return await fn(self, *args, **kwargs)
        except Exception as exc:
            owner = getattr(self, "name", None) if paths is not None else None
            mapped = as_driver_error(exc, owner or type(self).__name__, where or fn.__name__)
            if mapped is exc:
                raise
            raise mapped from exc

    wrapped.__driver_contract__ = True  # type: ignore[attr-defined]
    return wrapped


def wrap_class(cls: type, methods: dict[str, tuple[PathArgument, ...] | None]) -> None:
    """Wrap the methods ``cls`` itself defines (``None``: a stream's, no paths)."""
    for name, paths in methods.items():
        fn = cls.__dict__.get(name)
        if fn is None or getattr(fn, "__driver_contract__", False):
            continue
        if not inspect.iscoroutinefunction(fn):
            continue
        setattr(cls, name, wrap_method(fn, paths))
