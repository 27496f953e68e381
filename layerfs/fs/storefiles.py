"""Blobs and the other stored files the view shows read-only.

A blob never changes (its name is its digest), so the kernel may keep its pages and
trust its attributes for long; anything else is shown as the store has it now.
"""

from __future__ import annotations

import errno
import os
import stat

import pyfuse3

from .errors import Refusal
from .state import BLOB_TIMEOUT, DIR_TIMEOUT, MountState, StoreFileHandle
from .view import Kind, Place


class StoreFiles:
    def __init__(self, state: MountState) -> None:
        self.state = state

    async def getattr(self, place: Place) -> pyfuse3.EntryAttributes:
        found = await self.state.stat(place)
        if found is None:
            raise Refusal(errno.ENOENT, f"no file {place.where}")
        size, mtime, is_dir = found
        if is_dir:  # a directory the view has no row for: shown read-only
            return self.state.dir_attrs(place.parts, mtime, writable=False)
        mode = stat.S_IFREG | 0o444
        timeout = BLOB_TIMEOUT if place.kind == Kind.BLOB_DATA else DIR_TIMEOUT
        return self.state.attrs(place.parts, mode, size, mtime, timeout)

    async def open(self, place: Place, flags: int) -> pyfuse3.FileInfo:
        if (flags & os.O_ACCMODE) != os.O_RDONLY or flags & os.O_TRUNC:
            self.state.check_writable("open for writing")
            if place.kind == Kind.BLOB_DATA:
                raise Refusal(errno.EPERM, "blobs are immutable; finish an upload instead")
            raise Refusal(errno.EPERM, f"{place.where} is read-only")
        state = self.state
        if place.kind == Kind.BLOB_DATA:
            size = (await state.registry.blobs.stat(place.link_digest)).size
        else:
            size = (await state.store.stat(place.store_path)).size
        handle = StoreFileHandle(state.store.reader(place.store_path), size)
        blob = place.kind == Kind.BLOB_DATA
        return pyfuse3.FileInfo(fh=state.handles.add(handle), keep_cache=blob, direct_io=not blob)

    @staticmethod
    async def read(handle: StoreFileHandle, offset: int, size: int) -> bytes:
        return await handle.stream.read_at(offset, size, handle.size)

    @staticmethod
    async def release(handle: StoreFileHandle) -> None:
        await handle.stream.aclose()
