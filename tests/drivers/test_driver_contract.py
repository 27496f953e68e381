"""The driver contract (layerfs/drivers/contract.py) on all three drivers: every
method refuses every invalid path with InvalidPathError before the driver sees it,
and whatever a broken backend raises below any method (an OSError of any errno, a
library's own exception) leaves the method as a driver error, never as anything else.
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
import trio

from layerfs.drivers import (
    FilesystemDriver,
    InvalidPathError,
    MemoryDriver,
    PathNotFoundError,
    PendingWrite,
    StorageDriver,
    StorageDriverError,
    StoreFullError,
)
from layerfs.drivers.contract import PATHS
from layerfs.drivers.s3 import S3Driver

INVALID = ["", "rel", "/trail/", "//double", "/a//b", "/spa ce", "/\u00e9", "/a/../b", "/a\n"]
VALID = "/contract/file"


def call_arguments(method: str, path: str = VALID) -> tuple[Any, ...]:
    """Arguments for one call of ``method`` with ``path`` at each of its path places."""
    places = PATHS[method]
    rest: dict[str, tuple[Any, ...]] = {
        "put_content": (b"x",),
        "reader": (0,),
        "writer": (True,),
        "list_tree": (lambda _: True,),
        "list_trees": (lambda _: True,),
        "list_tree_infos": (100,),
    }
    if method == "move":
        return (path, path)
    if method == "abort_write":
        return (PendingWrite(VALID, datetime.now(UTC), "an upload id"),)
    if not places:
        return ()
    many = places[0][3]
    return ([VALID, path] if many else path, *rest.get(method, ()))


def methods_with_paths() -> list[str]:
    return sorted(m for m, places in PATHS.items() if places)


@pytest.mark.parametrize("method", methods_with_paths())
async def test_every_method_refuses_every_invalid_path(driver: StorageDriver, method: str) -> None:
    for path in INVALID + ([] if PATHS[method][0][2] else ["/"]):
        with pytest.raises(InvalidPathError):
            await getattr(driver, method)(*call_arguments(method, path))
        if method == "move":  # the destination alone
            with pytest.raises(InvalidPathError):
                await driver.move(VALID, path)


class Broken:
    """A backend object whose every attribute, called, raises ``error``."""

    def __init__(self, error: Callable[[], BaseException]) -> None:
        self._error = error

    def __getattr__(self, name: str) -> Any:
        def fail(*args: Any, **kwargs: Any) -> Any:
            raise self._error()

        return fail


class BrokenFiles(dict):  # type: ignore[type-arg]
    """The memory driver's table of files, failing on every use."""

    def __init__(self, error: Callable[[], BaseException]) -> None:
        super().__init__()
        self._error = error

    def _fail(self, *args: Any, **kwargs: Any) -> Any:
        raise self._error()

    __getitem__ = __setitem__ = __delitem__ = __contains__ = __iter__ = _fail
    get = pop = items = keys = values = setdefault = _fail


ERRORS: dict[str, Callable[[], BaseException]] = {
    "EIO": lambda: OSError(errno.EIO, "input/output error"),
    "ENOSPC": lambda: OSError(errno.ENOSPC, "no space left"),
    "ENOENT": lambda: OSError(errno.ENOENT, "gone"),
    "library": lambda: RuntimeError("the library broke"),
}


def break_backend(driver: StorageDriver, error: Callable[[], BaseException]) -> None:
    if isinstance(driver, FilesystemDriver):
        driver._beneath = Broken(error)  # type: ignore[assignment]
    elif isinstance(driver, S3Driver):
        driver.client = Broken(error)
    elif isinstance(driver, MemoryDriver):
        driver._files = BrokenFiles(error)
    else:
        raise AssertionError(f"no way to break {driver.name}")


@pytest.mark.parametrize("kind", sorted(ERRORS))
async def test_every_method_raises_only_driver_errors_on_a_broken_backend(
    driver: StorageDriver, kind: str
) -> None:
    await driver.put_content(VALID, b"stored before the backend broke")
    writer = await driver.writer("/contract/open", append=False)
    await writer.write(b"x")
    reader = await driver.reader(VALID)
    break_backend(driver, ERRORS[kind])
    calls: list[tuple[str, Callable[[], Any]]] = [
        (m, lambda m=m: getattr(driver, m)(*call_arguments(m))) for m in sorted(PATHS)
    ]
    calls += [
        ("writer.write", lambda: writer.write(b"y" * (16 << 20))),
        ("writer.commit", writer.commit),
        ("reader.read", lambda: reader.read(1 << 20)),
    ]
    leaked = []
    for name, call in calls:
        try:
            with trio.fail_after(30):
                await call()
        except (StorageDriverError, NotImplementedError) as exc:
            if kind == "ENOSPC" and isinstance(exc, PathNotFoundError):
                leaked.append(f"{name}: ENOSPC became {type(exc).__name__}")
        except Exception as exc:  # what the contract exists to keep in
            leaked.append(f"{name}: {type(exc).__name__}: {exc}")
    assert not leaked, leaked


async def test_an_errno_keeps_its_meaning(tmp_path: Any) -> None:
    """ENOSPC below any method is StoreFullError (ENOSPC in the mount), ENOENT
    PathNotFoundError."""
    driver = FilesystemDriver(tmp_path / "store")
    await driver.put_content(VALID, b"x")
    break_backend(driver, ERRORS["ENOSPC"])
    with pytest.raises(StoreFullError):
        await driver.get_content(VALID)
    break_backend(driver, ERRORS["ENOENT"])
    with pytest.raises(PathNotFoundError):
        await driver.stat(VALID)
