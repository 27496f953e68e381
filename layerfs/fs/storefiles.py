"""Blobs and the other stored files the view shows read-only."""

from __future__ import annotations

import errno
import os
import stat

import pyfuse3

from .errors import Refusal
from .kinds import Immutable, PathKind
from .state import BLOB_TIMEOUT, DIR_TIMEOUT, MountState, StoreFileHandle
from .view import Place


class StoreFiles(PathKind):
    """Any stored file the layout has no row for, shown as the store has it now."""

    timeout = DIR_TIMEOUT
    immutable = False  # whether the kernel may keep its pages across opens

    def __init__(self, state: MountState) -> None:
        self.state = state

    async def getattr(self, place: Place) -> pyfuse3.EntryAttributes:
        found = await self.state.stat(place)
        if found is None:
            raise Refusal(errno.ENOENT, f"no file {place.where}")
        size, mtime, is_dir = found
        if is_dir:  # a directory the view has no row for: shown read-only
            return self.state.dir_attrs(place.parts, mtime, writable=False)
        return self.state.attrs(place.parts, stat.S_IFREG | 0o444, size, mtime, self.timeout)

    async def open(self, place: Place, flags: int) -> pyfuse3.FileInfo:
        if (flags & os.O_ACCMODE) != os.O_RDONLY or flags & os.O_TRUNC:
            self.state.check_writable("open for writing")
            raise Refusal(errno.EPERM, self.read_only(place))
        size = await self.size(place)
        handle = StoreFileHandle(self.state.store.reader(place.store_path), size)
        fh, kept = self.state.handles.add(handle), self.immutable
        return pyfuse3.FileInfo(fh=fh, keep_cache=kept, direct_io=not kept)

    def read_only(self, place: Place) -> str:
        return f"{place.where} is read-only"

    async def size(self, place: Place) -> int:
        return (await self.state.store.stat(place.store_path)).size

    async def read(self, handle: StoreFileHandle, offset: int, size: int) -> bytes:
        return await handle.stream.read_at(offset, size, handle.size)

    async def release(self, handle: StoreFileHandle) -> None:
        await handle.stream.aclose()


class Blobs(Immutable, StoreFiles):
    """``blobs/<alg>/<hh>/<hex>/data``: never changes (its name is its digest), so the
    kernel may keep its pages and trust its attributes for long."""

    timeout = BLOB_TIMEOUT
    immutable = True

    def read_only(self, place: Place) -> str:
        return "blobs are immutable; finish an upload instead"

    async def size(self, place: Place) -> int:
        return (await self.state.registry.blobs.stat(place.link_digest)).size

    async def unlink(self, place: Place) -> None:
        raise Refusal(errno.EPERM, "blobs go away only through layerfs gc")
