"""The FUSE layer without the kernel: ``Operations`` over a driver, called directly
with a fake request context, the way the kernel would call it.

Every call runs under a deadline (``BOUND`` seconds), so a handler that hangs fails
the test instead of stalling it; every error comes back as the errno a program would
see. The kernel-mount tests (tests/mounts.py) are the layer above this one.
"""

from __future__ import annotations

import errno
import os
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pyfuse3
import trio

from layerfs.drivers import StorageDriver
from layerfs.fs.operations import Operations
from layerfs.fs.state import INDEX_TIMEOUT
from layerfs.storage.store import Store

BOUND = 5.0  # seconds any one request may take without a store that stalls


class Errno(Exception):
    """A request answered with an error, as a program sees it."""

    def __init__(self, code: int, call: str) -> None:
        super().__init__(f"{call}: {errno.errorcode.get(code, code)}")
        self.errno = code


def context() -> pyfuse3.RequestContext:
    """The request context of a caller (its fields are read-only: uid 0, as root)."""
    return pyfuse3.RequestContext()


class SizeOnly:
    """SetattrFields of a truncate (pyfuse3's own cannot be filled in from Python)."""

    update_size = True
    update_mode = update_uid = update_gid = update_atime = update_mtime = False
    update_ctime = False


class Kernel:
    """Paths in, handler calls out: lookups walk the path as the kernel does (each
    one a reference the kernel would later forget)."""

    def __init__(self, ops: Operations, bound: float = BOUND) -> None:
        self.ops = ops
        self.bound = bound
        self.ops.readdir_reply = self._reply
        self._entries: list[tuple[bytes, pyfuse3.EntryAttributes, int]] = []

    def _reply(self, token: object, name: bytes, attrs: pyfuse3.EntryAttributes, nxt: int) -> bool:
        self._entries.append((name, attrs, nxt))
        return True

    async def call(self, name: str, *args: Any) -> Any:
        handler = getattr(self.ops, name)
        try:
            with trio.fail_after(self.bound):
                return await handler(*args)
        except pyfuse3.FUSEError as exc:
            raise Errno(exc.errno, name) from None

    async def walk(self, path: str) -> int:
        """The inode of ``path`` (relative to the mount's root)."""
        ino = pyfuse3.ROOT_INODE
        for part in filter(None, path.split("/")):
            ino = (await self.call("lookup", ino, part.encode(), context())).st_ino
        return ino

    async def parent(self, path: str) -> tuple[int, bytes]:
        head, _, name = path.rstrip("/").rpartition("/")
        return await self.walk(head), name.encode()

    # what programs do --------------------------------------------------------------
    async def stat(self, path: str) -> pyfuse3.EntryAttributes:
        return await self.call("getattr", await self.walk(path), context())

    async def listdir(self, path: str) -> list[str]:
        fh = await self.call("opendir", await self.walk(path), context())
        try:
            self._entries = []
            await self.call("readdir", fh, 0, None)
            return [name.decode() for name, _, _ in self._entries]
        finally:
            await self.call("releasedir", fh)

    async def mkdir(self, path: str) -> None:
        parent, name = await self.parent(path)
        await self.call("mkdir", parent, name, 0o755, context())

    async def makedirs(self, path: str) -> None:
        done = ""
        for part in filter(None, path.split("/")):
            done = f"{done}/{part}" if done else part
            try:
                await self.mkdir(done)
            except Errno as exc:
                if exc.errno != errno.EEXIST:
                    raise

    async def rmdir(self, path: str) -> None:
        parent, name = await self.parent(path)
        await self.call("rmdir", parent, name, context())

    async def create(self, path: str, flags: int = os.O_WRONLY | os.O_CREAT) -> int:
        parent, name = await self.parent(path)
        info, _ = await self.call("create", parent, name, 0o644, flags, context())
        return info.fh

    async def open(self, path: str, flags: int = os.O_RDONLY) -> int:
        return (await self.call("open", await self.walk(path), flags, context())).fh

    async def write(self, fh: int, offset: int, data: bytes) -> int:
        return await self.call("write", fh, offset, data)

    async def read(self, fh: int, offset: int, size: int) -> bytes:
        return await self.call("read", fh, offset, size)

    async def flush(self, fh: int) -> None:
        await self.call("flush", fh)

    async def release(self, fh: int) -> None:
        await self.call("release", fh)

    async def close(self, fh: int) -> None:
        """close(2): flush, then release whatever flush said."""
        try:
            await self.flush(fh)
        finally:
            await self.release(fh)

    async def truncate(self, path: str, size: int, fh: int | None = None) -> None:
        attrs = pyfuse3.EntryAttributes()
        attrs.st_size = size
        fields = SizeOnly()
        await self.call("setattr", await self.walk(path), attrs, fields, fh, context())

    async def unlink(self, path: str) -> None:
        parent, name = await self.parent(path)
        await self.call("unlink", parent, name, context())

    async def rename(self, source: str, target: str, flags: int = 0) -> None:
        old_parent, old_name = await self.parent(source)
        new_parent, new_name = await self.parent(target)
        await self.call("rename", old_parent, old_name, new_parent, new_name, flags, context())

    async def getxattr(self, path: str, name: str) -> bytes:
        return await self.call("getxattr", await self.walk(path), name.encode(), context())

    async def write_file(self, path: str, data: bytes) -> None:
        """``cp``: create, write in pieces at the end, close."""
        fh = await self.create(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        try:
            for start in range(0, len(data), 1 << 17):
                await self.write(fh, start, data[start : start + (1 << 17)])
            await self.flush(fh)
        finally:
            await self.release(fh)

    async def read_file(self, path: str) -> bytes:
        fh = await self.open(path)
        try:
            size = (await self.stat(path)).st_size
            return await self.read(fh, 0, size + 1)
        finally:
            await self.release(fh)


class Clock:
    """A clock a test moves by hand: what the mount remembers of the store is then
    seen to expire exactly when the test says (``past_the_timeout``)."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def past_the_timeout(self) -> None:
        """Move on by more than any time the mount trusts what it read (DIR_TIMEOUT,
        and INDEX_TIMEOUT for what only digests name)."""
        self.now += INDEX_TIMEOUT + 1.0


@asynccontextmanager
async def mounted(
    driver: StorageDriver, read_only: bool = False, clock: Callable[[], float] = time.monotonic
) -> AsyncIterator[Kernel]:
    """``Operations`` serving ``driver`` until the block ends, then shut down as an
    unmount does (open uploads closed with their state). ``clock`` is what the mount
    times what it remembers by (a test moves it past the timeout)."""
    try:
        async with trio.open_nursery() as nursery:
            ops = Operations(Store(driver), nursery, read_only=read_only, clock=clock)
            try:
                yield Kernel(ops)
            finally:
                with trio.fail_after(BOUND):
                    await ops.close_uploads()
                nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:  # the test's own failure, not a group of one
        if len(group.exceptions) != 1:
            raise
        raise group.exceptions[0] from None
