"""pyfuse3 Operations: a thin dispatcher from VFS calls to one module per path kind.

Each handler decodes its arguments, classifies the path (``view.classify``) and hands
off to :mod:`.directories`, :mod:`.storefiles` (blobs and other stored files),
:mod:`.uploadfiles`, :mod:`.linkfiles` or :mod:`.xattrs`. What the mount keeps beside
the store is :class:`~.state.MountState`. Registry rules live in ``layerfs.storage``;
the errno of every exception is decided in :mod:`.errors`. See docs/DESIGN.md.
"""

from __future__ import annotations

import errno
import functools
import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

import pyfuse3
import trio

from ..storage.store import Store
from .directories import Directories
from .errors import Refusal, fuse_handler
from .linkfiles import LinkFiles
from .state import (
    BLOCK_SIZE,
    DirHandle,
    LinkHandle,
    MountState,
    StoreFileHandle,
    UploadHandle,
)
from .storefiles import StoreFiles
from .uploadfiles import UploadFiles
from .view import LINK_KINDS, NAME_MAX, Kind, Place, classify, is_finish_name, looked_up, new_name
from .xattrs import Xattrs

log = logging.getLogger("layerfs.fs")
H = TypeVar("H", bound=Callable[..., Any])


def changes_the_store(handler: H) -> H:
    """A handler that may add, remove or rename entries of the store: what the mount
    listed is forgotten before and after it, so no lookup answers from a listing older
    than the change (a link file's content is stored by LinkFiles.apply, which does the
    same; an upload's bytes are in no listing)."""

    @functools.wraps(handler)
    async def wrapper(self: Operations, *args: Any) -> Any:
        self.state.changed()
        try:
            return await handler(self, *args)
        finally:
            self.state.changed()

    return wrapper  # type: ignore[return-value]


class Operations(pyfuse3.Operations):
    supports_dot_lookup = False
    enable_writeback_cache = False

    def __init__(
        self,
        store: Store,
        nursery: trio.Nursery,
        read_only: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.state = MountState(store, nursery, read_only, clock)
        self.dirs = Directories(self.state, self._getattr)
        self.store_files = StoreFiles(self.state)
        self.uploads = UploadFiles(self.state)
        self.links = LinkFiles(self.state)
        self.xattrs = Xattrs(self.state, self.uploads, self.links)
        self.readdir_reply = pyfuse3.readdir_reply  # replaced in tests without a kernel

    @property
    def registry(self):  # type: ignore[no-untyped-def]
        return self.state.registry

    @property
    def request_timeout(self) -> float | None:
        """The most any request may wait on the store (layerfs/deadline.py)."""
        return self.state.store.timeout

    # paths -------------------------------------------------------------------------
    def _place(self, ino: int) -> Place:
        return classify(self.state.inodes.path(ino))

    def _child(self, parent: int, name: bytes) -> Place:
        return classify((*self.state.inodes.path(parent), looked_up(name)))

    def _new_child(self, parent: int, name: bytes, what: str) -> Place:
        return classify((*self.state.inodes.path(parent), new_name(name, what)))

    async def _getattr(self, place: Place) -> pyfuse3.EntryAttributes:
        if place.is_dir:
            return await self.dirs.getattr(place)
        if place.kind == Kind.UPLOAD:
            return await self.uploads.getattr(place)
        if place.kind in LINK_KINDS:
            return await self.links.getattr(place)
        return await self.store_files.getattr(place)

    async def _entry(self, place: Place) -> pyfuse3.EntryAttributes:
        """Attributes handed to the kernel with a new reference to the inode."""
        attrs = await self._getattr(place)
        self.state.inodes.remember(attrs.st_ino)
        return attrs

    # lookup and attributes -----------------------------------------------------------
    @fuse_handler
    async def lookup(
        self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        return await self._entry(self._child(parent_inode, name))

    @fuse_handler
    async def getattr(self, inode: int, ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        return await self._getattr(self._place(inode))

    async def forget(self, inode_list: list[tuple[int, int]]) -> None:
        for ino, count in inode_list:
            self.state.inodes.forget(ino, count)

    @fuse_handler
    async def setattr(
        self,
        inode: int,
        attr: pyfuse3.EntryAttributes,
        fields: pyfuse3.SetattrFields,
        fh: int | None,
        ctx: pyfuse3.RequestContext,
    ) -> pyfuse3.EntryAttributes:
        place = self._place(inode)
        self.state.check_writable("setattr")
        if place.kind in (Kind.BLOB_DATA, Kind.BLOB_DIR, Kind.ROOT):
            raise Refusal(errno.EPERM, f"blobs are immutable: {place.where}")
        if fields.update_size:
            handle = self.state.handles.get(fh) if fh is not None else None
            if place.kind == Kind.UPLOAD:
                upload = handle if isinstance(handle, UploadHandle) else None
                await self.uploads.truncate(place, attr.st_size, upload)
            elif place.kind in LINK_KINDS:
                link = handle if isinstance(handle, LinkHandle) else None
                self.links.truncate(place, attr.st_size, link)
            else:
                raise Refusal(errno.EPERM, f"cannot resize {place.where}")
        # Modes, owners and times are not stored by the registry's layout; accepting
        # them lets cp -p, rsync and touch work on uploads and links.
        return await self._getattr(place)

    # directories ---------------------------------------------------------------------
    @fuse_handler
    async def opendir(self, inode: int, ctx: pyfuse3.RequestContext) -> int:
        return await self.dirs.opendir(self._place(inode))

    @fuse_handler
    async def readdir(self, fh: int, start_id: int, token: pyfuse3.ReaddirToken) -> None:
        handle = self.state.handles.get(fh)
        if not isinstance(handle, DirHandle):
            raise Refusal(errno.ENOTDIR, f"file handle {fh} is not a directory")
        await self.dirs.readdir(handle, start_id, token, self.readdir_reply)

    @fuse_handler
    async def releasedir(self, fh: int) -> None:
        self.state.handles.pop(fh)

    @fuse_handler
    @changes_the_store
    async def mkdir(
        self, parent_inode: int, name: bytes, mode: int, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        place = self._new_child(parent_inode, name, "directory")
        await self.dirs.mkdir(place)
        return await self._entry(place)

    @fuse_handler
    @changes_the_store
    async def rmdir(self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        await self.dirs.rmdir(self._child(parent_inode, name))

    # files ----------------------------------------------------------------------------
    @fuse_handler
    @changes_the_store
    async def create(
        self, parent_inode: int, name: bytes, mode: int, flags: int, ctx: pyfuse3.RequestContext
    ) -> tuple[pyfuse3.FileInfo, pyfuse3.EntryAttributes]:
        self.state.check_writable("create")
        place = self._new_child(parent_inode, name, "file")
        if not await self.dirs.present(classify(place.parts[:-1])):
            raise Refusal(errno.ENOENT, f"no directory {'/'.join(place.parts[:-1])}")
        if place.kind == Kind.UPLOAD:
            info = await self.uploads.create(place, flags)
        elif place.kind in LINK_KINDS:
            info = await self.links.create(place, flags)
        elif place.kind in (Kind.BLOB_DATA, Kind.BLOB_DIR):
            raise Refusal(errno.EPERM, "blobs are written by finishing an upload, not directly")
        else:
            raise Refusal(errno.EPERM, f"create {place.where}: no file belongs here")
        try:
            return info, await self._entry(place)
        except BaseException:
            await self.release(info.fh)
            raise

    @fuse_handler
    async def open(self, inode: int, flags: int, ctx: pyfuse3.RequestContext) -> pyfuse3.FileInfo:
        place = self._place(inode)
        if place.kind == Kind.UPLOAD:
            return await self.uploads.open(place, flags)
        if place.kind in LINK_KINDS:
            return await self.links.open(place, flags)
        if place.is_dir:
            raise Refusal(errno.EISDIR, f"{place.where} is a directory")
        return await self.store_files.open(place, flags)

    @fuse_handler
    async def read(self, fh: int, off: int, size: int) -> bytes:
        handle = self.state.handles.get(fh)
        if isinstance(handle, StoreFileHandle):
            return await self.store_files.read(handle, off, size)
        if isinstance(handle, LinkHandle):
            return self.links.read(handle, off, size)
        if isinstance(handle, UploadHandle):
            return await self.uploads.read(handle, off, size)
        raise Refusal(errno.EISDIR, "read of a directory")

    @fuse_handler
    async def write(self, fh: int, off: int, buf: bytes) -> int:
        handle = self.state.handles.get(fh)
        if isinstance(handle, UploadHandle):
            return await self.uploads.write(handle, off, buf)
        if isinstance(handle, LinkHandle):
            return await self.links.write(handle, off, buf)
        raise Refusal(errno.EBADF, "file is not open for writing")

    @fuse_handler
    async def flush(self, fh: int) -> None:
        handle = self.state.handles.get(fh)
        if isinstance(handle, UploadHandle):
            await self.uploads.flush(handle)
        elif isinstance(handle, LinkHandle):
            await self.links.flush(handle)

    @fuse_handler
    async def fsync(self, fh: int, datasync: bool) -> None:
        await self.flush(fh)

    @fuse_handler
    async def release(self, fh: int) -> None:
        handle = self.state.handles.pop(fh)
        if isinstance(handle, StoreFileHandle):
            await self.store_files.release(handle)
        elif isinstance(handle, UploadHandle):
            await self.uploads.release(handle)
        elif isinstance(handle, LinkHandle):
            await self.links.release(handle)

    # removing, renaming and what the layout cannot hold ---------------------------------
    @fuse_handler
    @changes_the_store
    async def unlink(self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        place = self._child(parent_inode, name)
        self.state.check_writable("unlink")
        if place.kind == Kind.UPLOAD:
            await self.uploads.remove(place)
        elif place.kind in LINK_KINDS:
            await self.links.remove(place)
        elif place.kind == Kind.BLOB_DATA:
            raise Refusal(errno.EPERM, "blobs go away only through layerfs gc")
        elif place.is_dir:
            raise Refusal(errno.EISDIR, f"rm {place.where}: a directory")
        else:
            raise Refusal(errno.EPERM, f"rm {place.where}: not removable")
        log.info("removed %s %s", place.kind.value, place.where)

    @fuse_handler
    @changes_the_store
    async def rename(
        self,
        parent_inode_old: int,
        name_old: bytes,
        parent_inode_new: int,
        name_new: bytes,
        flags: int,
        ctx: pyfuse3.RequestContext,
    ) -> None:
        source = self._child(parent_inode_old, name_old)
        self.state.check_writable("rename")
        if flags & pyfuse3.RENAME_EXCHANGE:
            raise Refusal(errno.EINVAL, "rename: exchanging entries is not supported")
        if source.kind != Kind.UPLOAD:
            raise Refusal(errno.EPERM, f"rename {source.where}: only uploads move")
        text = name_new.decode("utf-8", "surrogateescape")
        if is_finish_name(text):  # a digest: finish the upload
            target = classify((*self.state.inodes.path(parent_inode_new), text))
            await self.uploads.finish(source, target, text)
        else:
            target = self._new_child(parent_inode_new, name_new, "upload")
            await self.uploads.rename(source, target, flags)
        self.state.inodes.move(source.parts, target.parts)

    @fuse_handler
    async def symlink(
        self, parent_inode: int, name: bytes, target: bytes, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        raise Refusal(errno.EPERM, "the registry's layout holds no symbolic links")

    @fuse_handler
    async def mknod(
        self, parent_inode: int, name: bytes, mode: int, rdev: int, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        raise Refusal(errno.EPERM, "the registry's layout holds no device or fifo files")

    @fuse_handler
    async def link(
        self, inode: int, new_parent_inode: int, new_name: bytes, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        raise Refusal(errno.EPERM, "the registry's layout holds no hard links")

    # extended attributes and the file system -----------------------------------------------
    @fuse_handler
    async def getxattr(self, inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> bytes:
        return await self.xattrs.get(self._place(inode), name)

    @fuse_handler
    async def listxattr(self, inode: int, ctx: pyfuse3.RequestContext) -> list[bytes]:
        return await self.xattrs.names(self._place(inode))

    @fuse_handler
    async def setxattr(
        self, inode: int, name: bytes, value: bytes, ctx: pyfuse3.RequestContext
    ) -> None:
        self.xattrs.refuse_change()

    @fuse_handler
    async def removexattr(self, inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        self.xattrs.refuse_change()

    @fuse_handler
    async def statfs(self, ctx: pyfuse3.RequestContext) -> pyfuse3.StatvfsData:
        data = pyfuse3.StatvfsData()
        disk = await self.state.store.statvfs()
        if disk is not None:
            for name in ("f_bsize", "f_frsize", "f_blocks", "f_bfree", "f_bavail", "f_files",
                         "f_ffree", "f_favail"):  # fmt: skip
                setattr(data, name, getattr(disk, name))
        else:
            data.f_bsize = data.f_frsize = BLOCK_SIZE
        data.f_namemax = NAME_MAX
        return data

    async def close_uploads(self) -> None:
        """Store data and hash state of every open upload (before unmounting)."""
        await self.state.uploads.close_all()
