"""pyfuse3 Operations: a thin dispatcher from VFS calls to one handler per path kind.

Each request decodes its arguments, classifies the path (``view.classify``) and
forwards to the handler of its kind (:attr:`Operations.kinds`, every handler a
:class:`~.kinds.PathKind`: :mod:`.directories`, :mod:`.storefiles`,
:mod:`.uploadfiles`, :mod:`.finishes`, :mod:`.linkfiles`), or of its open handle. What
the mount keeps beside the store is :class:`~.state.MountState`. Registry rules live
in ``layerfs.storage``; the errno of every exception is decided in :mod:`.errors`.
See docs/DESIGN.md.
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
from .directories import BlobDirectories, Directories, RootDirectory
from .errors import Refusal, fuse_handler
from .finishes import Finishes
from .kinds import PathKind
from .linkfiles import LinkFiles
from .state import (
    BLOCK_SIZE,
    DirHandle,
    Handle,
    LinkHandle,
    MountState,
    StoreFileHandle,
    UploadHandle,
)
from .storefiles import Blobs, StoreFiles
from .uploadfiles import UploadFiles
from .view import NAME_MAX, Kind, Place, classify, looked_up, new_name, rename_target
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
        self.state = state = MountState(store, nursery, read_only, clock)
        self.dirs = Directories(state, self._getattr)
        store_files, uploads, links = StoreFiles(state), UploadFiles(state), LinkFiles(state)
        self.kinds: dict[Kind, PathKind] = {
            Kind.ROOT: RootDirectory(state, self._getattr),
            Kind.BLOB_DIR: BlobDirectories(state, self._getattr),
            Kind.BLOB_DATA: Blobs(state),
            Kind.NAMESPACE: self.dirs,
            Kind.UPLOADS: self.dirs,
            Kind.UPLOAD: uploads,
            Kind.FINISH: Finishes(uploads),
            Kind.LINK_DIR: self.dirs,
            Kind.LAYER_LINK: links,
            Kind.REVISION_LINK: links,
            Kind.TAG_LINK: links,
            Kind.TAG_INDEX_LINK: links,
            Kind.OTHER: store_files,
        }
        # the handler of each kind of open file
        self.owners: dict[type, PathKind] = {
            DirHandle: self.dirs,
            StoreFileHandle: store_files,
            UploadHandle: uploads,
            LinkHandle: links,
        }
        self.xattrs = Xattrs(lambda place: self._kind(place).xattrs(place))
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

    def _kind(self, place: Place) -> PathKind:
        return self.kinds[place.kind]

    def _owner(self, handle: Handle) -> PathKind:
        return self.owners[type(handle)]

    async def _getattr(self, place: Place) -> pyfuse3.EntryAttributes:
        return await self._kind(place).getattr(place)

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
        size = attr.st_size if fields.update_size else None
        handle = self.state.handles.get(fh) if size is not None and fh is not None else None
        await self._kind(place).setattr(place, size, handle)
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
        info = await self._kind(place).create(place, flags)
        try:
            return info, await self._entry(place)
        except BaseException:
            await self.release(info.fh)
            raise

    @fuse_handler
    async def open(self, inode: int, flags: int, ctx: pyfuse3.RequestContext) -> pyfuse3.FileInfo:
        place = self._place(inode)
        return await self._kind(place).open(place, flags)

    @fuse_handler
    async def read(self, fh: int, off: int, size: int) -> bytes:
        handle = self.state.handles.get(fh)
        return await self._owner(handle).read(handle, off, size)

    @fuse_handler
    async def write(self, fh: int, off: int, buf: bytes) -> int:
        handle = self.state.handles.get(fh)
        return await self._owner(handle).write(handle, off, buf)

    @fuse_handler
    async def flush(self, fh: int) -> None:
        handle = self.state.handles.get(fh)
        await self._owner(handle).flush(handle)

    @fuse_handler
    async def fsync(self, fh: int, datasync: bool) -> None:
        await self.flush(fh)

    @fuse_handler
    async def release(self, fh: int) -> None:
        handle = self.state.handles.pop(fh)
        if handle is not None:
            await self._owner(handle).release(handle)

    # removing, renaming and what the layout cannot hold ---------------------------------
    @fuse_handler
    @changes_the_store
    async def unlink(self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        place = self._child(parent_inode, name)
        self.state.check_writable("unlink")
        await self._kind(place).unlink(place)
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
        await self._kind(source).check_movable(source)  # only an upload moves
        target = rename_target(self.state.inodes.path(parent_inode_new), name_new)
        await self._kind(target).rename_into(source, target, flags)  # a finish, or a rename
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
