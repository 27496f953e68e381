"""pyfuse3 Operations: VFS calls translated into storage calls.

The rows of the view (DESIGN.md, "The mounted view") live here; registry rules live in
``layerfs.storage``. Every handler goes through :func:`fuse_handler`.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import stat
import time
from dataclasses import dataclass, field

import pyfuse3
import trio

from ..drivers import FilesystemDriver, PathNotFoundError, StorageDriver
from ..storage import Digest, Registry, paths
from ..storage.blobs import BlobReader
from ..storage.digest import CANONICAL, check_algorithm
from ..storage.errors import InvalidLinkError, RegistryError
from ..storage.links import decode_link
from ..storage.reference import validate_name, validate_tag
from .errors import Refusal, errno_of, fuse_handler
from .inodes import InodeTable
from .sessions import UploadSession, UploadTable
from .view import LINK_KINDS, SPECIAL_DIRS, Kind, Parts, Place, classify

log = logging.getLogger("layerfs.fs")

BLOCK_SIZE = 1 << 20  # st_blksize: makes cp write 1 MiB at a time
BLOB_TIMEOUT = 300.0  # blobs never change
DIR_TIMEOUT = 1.0  # a registry may change the store beside us
UPLOAD_TIMEOUT = 0.0
NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
XATTR_PREFIX = "user.layerfs."
LONGEST_DIGEST = len("sha512:") + 128
FIXED_DIRS = (("blobs",), ("repositories",))


@dataclass
class StoredFileReader:
    """Positional reads of one stored file through one seekable stream, so the 128 KiB
    reads of a ``cat`` continue a single driver stream instead of opening one each
    (on S3 a request and a ranged GET per read). The kernel sends read-ahead
    concurrently: one seek and read at a time."""

    driver: StorageDriver
    path: str
    reader: BlobReader | None = None
    lock: trio.Lock = field(default_factory=trio.Lock)

    async def read_at(self, offset: int, size: int, file_size: int) -> bytes:
        async with self.lock:
            if self.reader is None or self.reader.size != file_size:  # an upload grew
                await self.aclose()
                self.reader = BlobReader(self.driver, self.path, file_size)
            self.reader.seek(offset)
            return await self.reader.read(size)

    async def aclose(self) -> None:
        if self.reader is not None:
            reader, self.reader = self.reader, None
            await reader.aclose()


@dataclass
class BlobHandle:
    stream: StoredFileReader
    size: int


@dataclass
class FileHandle:
    """A read-only store file that is neither blob nor link."""

    stream: StoredFileReader
    size: int


@dataclass
class UploadHandle:
    session: UploadSession
    writable: bool
    stream: StoredFileReader | None = None


@dataclass
class LinkHandle:
    place: Place
    content: bytearray
    writable: bool
    dirty: bool = False


@dataclass
class DirHandle:
    parts: Parts
    names: list[str] = field(default_factory=list)


Handle = BlobHandle | FileHandle | UploadHandle | LinkHandle | DirHandle


def decode(name: bytes) -> str:
    return name.decode("utf-8", "surrogateescape")


def check_component(name: str, what: str) -> None:
    if not name or name in (".", "..") or not set(name) <= NAME_CHARS:
        raise Refusal(
            errno.EINVAL, f"invalid {what} name {name!r}: use letters, digits, '.', '_', '-'"
        )


class Operations(pyfuse3.Operations):
    supports_dot_lookup = False
    enable_writeback_cache = False

    def __init__(
        self, driver: StorageDriver, nursery: trio.Nursery, read_only: bool = False
    ) -> None:
        super().__init__()
        self.driver = driver
        self.registry = Registry(driver)
        self.read_only = read_only
        self.inodes = InodeTable()
        self.uploads = UploadTable(self.registry, nursery)
        self.handles: dict[int, Handle] = {}
        self._next_fh = 1
        # made by mkdir (or kept by an upload's rm): shown even with nothing stored below
        self.created_dirs: set[Parts] = set()
        self.repository_marks: set[Parts] = set()  # mkdir'ed leaves: show _uploads etc.
        self.pending_links: dict[Parts, LinkHandle] = {}  # created, not yet applied
        self.link_errors: dict[Parts, str] = {}
        self.uid, self.gid = os.getuid(), os.getgid()
        self.started = time.time_ns()

    # helpers ------------------------------------------------------------------
    def _new_fh(self, handle: Handle) -> int:
        fh, self._next_fh = self._next_fh, self._next_fh + 1
        self.handles[fh] = handle
        return fh

    def _handle(self, fh: int) -> Handle:
        try:
            return self.handles[fh]
        except KeyError:
            raise Refusal(errno.EBADF, f"file handle {fh} is not open") from None

    def _writable(self, what: str) -> None:
        if self.read_only:
            raise Refusal(errno.EROFS, f"{what}: the mount is read-only")

    def _place(self, ino: int) -> Place:
        return classify(self.inodes.path(ino))

    def _child(self, parent: int, name: bytes) -> Place:
        return classify((*self.inodes.path(parent), decode(name)))

    def _attrs(
        self, parts: Parts, mode: int, size: int, mtime_ns: int, timeout: float
    ) -> pyfuse3.EntryAttributes:
        attrs = pyfuse3.EntryAttributes()
        attrs.st_ino = self.inodes.ino(parts)
        attrs.st_mode = mode
        attrs.st_nlink = 2 if stat.S_ISDIR(mode) else 1
        attrs.st_uid, attrs.st_gid = self.uid, self.gid
        attrs.st_size = size
        attrs.st_blksize = BLOCK_SIZE
        attrs.st_blocks = (size + 511) // 512
        attrs.st_atime_ns = attrs.st_mtime_ns = attrs.st_ctime_ns = mtime_ns
        attrs.entry_timeout = attrs.attr_timeout = timeout
        return attrs

    async def _stat(self, place: Place) -> tuple[int, int, bool] | None:
        """(size, mtime_ns, is_dir) of a place in the store, None when absent."""
        try:
            info = await self.driver.stat(place.store_path)
        except PathNotFoundError:
            return None
        return info.size, int(info.mod_time.timestamp() * 1e9), info.is_dir

    async def _dir_present(self, place: Place) -> bool:
        if place.kind == Kind.ROOT or place.parts in FIXED_DIRS:
            return True
        if place.parts in self.created_dirs:
            return True
        found = await self._stat(place)
        if found is not None:
            return found[2]
        if place.is_special_root:
            repo_parts = place.parts[: place.parts.index(_special_of(place))]
            return await self._dir_present(classify(repo_parts))
        return False

    async def _getattr(self, place: Place) -> pyfuse3.EntryAttributes:
        mode_dir = stat.S_IFDIR | (0o555 if self.read_only else 0o755)
        if place.kind == Kind.ROOT or place.parts in FIXED_DIRS:
            # always there, answered without the store (which may be unreachable)
            return self._attrs(place.parts, mode_dir, 0, self.started, DIR_TIMEOUT)
        if place.is_dir:
            found = await self._stat(place)
            stored = found is not None and found[2]
            if not stored and not await self._dir_present(place):
                raise Refusal(errno.ENOENT, f"no directory {'/'.join(place.parts)}")
            mtime = found[1] if stored and found else self.started
            return self._attrs(place.parts, mode_dir, 0, mtime, DIR_TIMEOUT)
        if place.kind == Kind.UPLOAD:
            return await self._upload_attrs(place)
        pending = self.pending_links.get(place.parts)
        if pending is not None:
            return self._attrs(
                place.parts, stat.S_IFREG | 0o644, len(pending.content), time.time_ns(), 0
            )
        found = await self._stat(place)
        if found is None:
            raise Refusal(errno.ENOENT, f"no file {'/'.join(place.parts)}")
        size, mtime, is_dir = found
        if is_dir:  # a directory the view has no row for: shown read-only
            return self._attrs(place.parts, stat.S_IFDIR | 0o555, 0, mtime, DIR_TIMEOUT)
        if place.kind == Kind.BLOB_DATA:
            return self._attrs(place.parts, stat.S_IFREG | 0o444, size, mtime, BLOB_TIMEOUT)
        writable = place.kind in LINK_KINDS and not self.read_only
        mode = stat.S_IFREG | (0o644 if writable else 0o444)
        return self._attrs(place.parts, mode, size, mtime, DIR_TIMEOUT)

    async def _upload_id(self, place: Place) -> str:
        upload_id = await self.uploads.find(place.repository, place.upload_name)
        if upload_id is None:
            raise Refusal(errno.ENOENT, f"no upload {place.upload_name} in {place.repository}")
        return upload_id

    async def _upload_attrs(self, place: Place) -> pyfuse3.EntryAttributes:
        upload_id = await self._upload_id(place)
        size = await self.uploads.size(place.repository, upload_id)
        mode = stat.S_IFREG | (0o444 if self.read_only else 0o644)
        return self._attrs(place.parts, mode, size, time.time_ns(), UPLOAD_TIMEOUT)

    # lookup and attributes ----------------------------------------------------------
    @fuse_handler
    async def lookup(
        self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        place = self._child(parent_inode, name)
        attrs = await self._getattr(place)
        self.inodes.remember(attrs.st_ino)
        return attrs

    @fuse_handler
    async def getattr(self, inode: int, ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        return await self._getattr(self._place(inode))

    async def forget(self, inode_list: list[tuple[int, int]]) -> None:
        for ino, count in inode_list:
            self.inodes.forget(ino, count)

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
        self._writable("setattr")
        if place.kind in (Kind.BLOB_DATA, Kind.BLOB_DIR, Kind.ROOT):
            raise Refusal(errno.EPERM, f"blobs are immutable: {'/'.join(place.parts)}")
        if fields.update_size:
            await self._truncate(place, attr.st_size)
        # Modes, owners and times are not stored by the registry's layout; accepting
        # them lets cp -p, rsync and touch work on uploads and links.
        return await self._getattr(place)

    async def _truncate(self, place: Place, size: int) -> None:
        if place.kind == Kind.UPLOAD:
            upload_id = await self._upload_id(place)
            session = await self.uploads.open(place.repository, upload_id, place.upload_name)
            try:
                if size == 0:
                    await session.pipe.drain()
                    await session.upload.restart()
                elif size != session.pipe.size:
                    raise Refusal(
                        errno.EINVAL,
                        f"upload {place.upload_name}: truncate to {size} bytes refused;"
                        " only 0 (restart) is allowed",
                    )
            finally:
                await self.uploads.close_if_unused(session)
            return
        if place.kind in LINK_KINDS:
            handle = self.pending_links.get(place.parts)
            if handle is not None:
                del handle.content[size:]
                return
            for open_handle in self.handles.values():
                if isinstance(open_handle, LinkHandle) and open_handle.place == place:
                    del open_handle.content[size:]
                    open_handle.dirty = True
                    return
        raise Refusal(errno.EPERM, f"cannot resize {'/'.join(place.parts)}")

    # directories -------------------------------------------------------------------
    @fuse_handler
    async def opendir(self, inode: int, ctx: pyfuse3.RequestContext) -> int:
        place = self._place(inode)
        if not (place.is_dir and await self._dir_present(place)) and not (
            (found := await self._stat(place)) and found[2]
        ):
            raise Refusal(errno.ENOTDIR, f"not a directory: {'/'.join(place.parts)}")
        return self._new_fh(DirHandle(place.parts, sorted(await self._list(place))))

    async def _list(self, place: Place) -> set[str]:
        if place.kind == Kind.ROOT:
            return {"blobs", "repositories"}
        if place.kind == Kind.UPLOADS:
            return set(await self.uploads.names(place.repository))
        names: set[str] = set()
        with contextlib.suppress(PathNotFoundError):
            names.update(p.rsplit("/", 1)[1] for p in await self.driver.list(place.store_path))
        depth = len(place.parts) + 1
        names.update(p[-1] for p in self.created_dirs if len(p) == depth and p[:-1] == place.parts)
        names.update(p[-1] for p in self.pending_links if len(p) == depth and p[:-1] == place.parts)
        if place.kind == Kind.NAMESPACE and (
            place.parts in self.repository_marks or names & set(SPECIAL_DIRS)
        ):
            names.update(SPECIAL_DIRS)
        if place.kind == Kind.LINK_DIR and place.parts[-1] == "_manifests":
            names.update(("revisions", "tags"))
        return names

    @fuse_handler
    async def readdir(self, fh: int, start_id: int, token: pyfuse3.ReaddirToken) -> None:
        handle = self._handle(fh)
        assert isinstance(handle, DirHandle)
        for index in range(start_id, len(handle.names)):
            name = handle.names[index]
            try:
                attrs = await self._getattr(classify((*handle.parts, name)))
            except (Refusal, RegistryError, PathNotFoundError):
                continue  # gone since opendir
            if not pyfuse3.readdir_reply(
                token, name.encode("utf-8", "surrogateescape"), attrs, index + 1
            ):
                return
            self.inodes.remember(attrs.st_ino)

    @fuse_handler
    async def releasedir(self, fh: int) -> None:
        self.handles.pop(fh, None)

    @fuse_handler
    async def mkdir(
        self, parent_inode: int, name: bytes, mode: int, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        place = self._child(parent_inode, name)
        self._writable("mkdir")
        if not await self._dir_present(classify(place.parts[:-1])):
            raise Refusal(errno.ENOENT, f"no directory {'/'.join(place.parts[:-1])}")
        self._check_new_dir(place)
        if await self._dir_present(place) or await self._stat(place) is not None:
            raise Refusal(errno.EEXIST, f"{'/'.join(place.parts)} exists")
        self.created_dirs.add(place.parts)
        if place.kind == Kind.NAMESPACE:
            self.repository_marks.discard(place.parts[:-1])
            self.repository_marks.add(place.parts)
        attrs = await self._getattr(place)
        self.inodes.remember(attrs.st_ino)
        return attrs

    def _check_new_dir(self, place: Place) -> None:
        """Refuse a directory the layout has no place for (with the reason)."""
        where = "/".join(place.parts)
        if place.kind == Kind.NAMESPACE or (
            place.kind == Kind.OTHER and place.parts[0] == "repositories"
        ):
            validate_name("/".join(place.parts[1:]))  # e.g. repositories/_layers
            return
        if place.kind != Kind.LINK_DIR or place.is_special_root:
            raise Refusal(errno.EPERM, f"mkdir {where}: the layout has no directory here")
        sub, special = place.sub, _special_of(place)
        if special == "_layers":
            self._check_digest_dirs(sub, where)
        elif sub[0] == "revisions":
            self._check_digest_dirs(sub[1:], where)
        elif sub[0] == "tags":
            validate_tag(sub[1])
            if len(sub) >= 3 and sub[2] not in ("current", "index"):
                raise Refusal(errno.EINVAL, f"mkdir {where}: a tag holds current/ and index/")
            if len(sub) >= 4:
                self._check_digest_dirs(sub[3:], where)

    @staticmethod
    def _check_digest_dirs(sub: Parts, where: str) -> None:
        if len(sub) == 1:
            check_algorithm(sub[0])
        elif len(sub) == 2:
            Digest.from_parts(sub[0], sub[1])
        else:
            raise Refusal(errno.EPERM, f"mkdir {where}: the layout has no directory here")

    @fuse_handler
    async def rmdir(self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        place = self._child(parent_inode, name)
        self._writable("rmdir")
        if place.kind in (Kind.ROOT, Kind.BLOB_DIR) or place.parts == ("repositories",):
            raise Refusal(errno.EPERM, f"rmdir {'/'.join(place.parts)}: not removable")
        if not place.is_dir:
            raise Refusal(errno.ENOTDIR, f"not a directory: {'/'.join(place.parts)}")
        if await self._list_for_rmdir(place):
            raise Refusal(errno.ENOTEMPTY, f"{'/'.join(place.parts)} is not empty")
        # A directory may exist only implicitly (object stores) or only in this mount.
        await self.driver.delete_if_present(place.store_path)
        self.created_dirs.discard(place.parts)
        self.repository_marks.discard(place.parts)

    async def _list_for_rmdir(self, place: Place) -> set[str]:
        names = await self._list(place)
        if place.kind == Kind.NAMESPACE:
            names -= set(SPECIAL_DIRS)  # the implicit ones; stored ones are checked below
            for special in SPECIAL_DIRS:
                child = classify((*place.parts, special))
                found = await self._stat(child)
                if found is not None and await self._list(child) - {"revisions", "tags"}:
                    names.add(special)
        if place.kind == Kind.LINK_DIR and place.parts[-1] == "_manifests":
            for sub in ("revisions", "tags"):
                names.discard(sub)
                if await self._list(classify((*place.parts, sub))):
                    names.add(sub)
        return names

    # files ----------------------------------------------------------------------------
    @fuse_handler
    async def create(
        self, parent_inode: int, name: bytes, mode: int, flags: int, ctx: pyfuse3.RequestContext
    ) -> tuple[pyfuse3.FileInfo, pyfuse3.EntryAttributes]:
        place = self._child(parent_inode, name)
        self._writable("create")
        if not await self._dir_present(classify(place.parts[:-1])):
            raise Refusal(errno.ENOENT, f"no directory {'/'.join(place.parts[:-1])}")
        if place.kind == Kind.UPLOAD:
            info = await self._create_upload(place, flags)
        elif place.kind in (Kind.LAYER_LINK, Kind.REVISION_LINK, Kind.TAG_LINK):
            info = await self._create_link(place, flags)
        elif place.kind == Kind.BLOB_DATA or place.kind == Kind.BLOB_DIR:
            raise Refusal(errno.EPERM, "blobs are written by finishing an upload, not directly")
        else:
            raise Refusal(errno.EPERM, f"create {'/'.join(place.parts)}: no file belongs here")
        attrs = await self._getattr(place)
        self.inodes.remember(attrs.st_ino)
        return info, attrs

    async def _create_upload(self, place: Place, flags: int) -> pyfuse3.FileInfo:
        check_component(place.upload_name, "upload")
        existing = await self.uploads.find(place.repository, place.upload_name)
        if existing is not None:
            if flags & os.O_EXCL:
                raise Refusal(errno.EEXIST, f"upload {place.upload_name} exists")
            return await self._open_upload(place, flags)
        validate_name(place.repository)
        session = await self.uploads.create(place.repository, place.upload_name)
        session.handles += 1
        log.info(
            "upload %s started in %s as %s", session.upload.id, place.repository, place.upload_name
        )
        return pyfuse3.FileInfo(fh=self._new_fh(UploadHandle(session, True)), direct_io=True)

    async def _create_link(self, place: Place, flags: int) -> pyfuse3.FileInfo:
        if await self._stat(place) is not None:
            return await self._open_link(place, flags, writable=True)
        handle = LinkHandle(place, bytearray(), writable=True)
        self.pending_links[place.parts] = handle
        return pyfuse3.FileInfo(fh=self._new_fh(handle), direct_io=True)

    @fuse_handler
    async def open(self, inode: int, flags: int, ctx: pyfuse3.RequestContext) -> pyfuse3.FileInfo:
        place = self._place(inode)
        writable = (flags & os.O_ACCMODE) != os.O_RDONLY
        if writable or flags & os.O_TRUNC:
            self._writable("open for writing")
        if place.kind == Kind.BLOB_DATA:
            if writable:
                raise Refusal(errno.EPERM, "blobs are immutable; finish an upload instead")
            info = await self.registry.blobs.stat(_blob_digest(place))
            handle = BlobHandle(StoredFileReader(self.driver, place.store_path), info.size)
            return pyfuse3.FileInfo(fh=self._new_fh(handle), keep_cache=True)
        if place.kind == Kind.UPLOAD:
            return await self._open_upload(place, flags)
        if place.kind in LINK_KINDS:
            if writable and place.kind == Kind.TAG_INDEX_LINK:
                raise Refusal(errno.EPERM, "tag index links are written by tagging")
            return await self._open_link(place, flags, writable)
        if writable:
            raise Refusal(errno.EPERM, f"{'/'.join(place.parts)} is read-only")
        size = (await self.driver.stat(place.store_path)).size
        handle = FileHandle(StoredFileReader(self.driver, place.store_path), size)
        return pyfuse3.FileInfo(fh=self._new_fh(handle), direct_io=True)

    async def _open_upload(self, place: Place, flags: int) -> pyfuse3.FileInfo:
        upload_id = await self._upload_id(place)
        session = await self.uploads.open(place.repository, upload_id, place.upload_name)
        session.handles += 1
        writable = (flags & os.O_ACCMODE) != os.O_RDONLY
        try:
            if flags & os.O_TRUNC and writable:
                await session.pipe.drain()
                await session.upload.restart()
                log.info("upload %s restarted (O_TRUNC)", upload_id)
        except BaseException:
            await self._release_session(session)
            raise
        return pyfuse3.FileInfo(fh=self._new_fh(UploadHandle(session, writable)), direct_io=True)

    async def _open_link(self, place: Place, flags: int, writable: bool) -> pyfuse3.FileInfo:
        pending = self.pending_links.get(place.parts)
        if pending is not None:
            content = bytearray(pending.content)
        elif flags & os.O_TRUNC:
            content = bytearray()
        else:
            content = bytearray(await self.driver.get_content(place.store_path))
        handle = LinkHandle(place, content, writable, dirty=bool(flags & os.O_TRUNC))
        return pyfuse3.FileInfo(fh=self._new_fh(handle), direct_io=True)

    @fuse_handler
    async def read(self, fh: int, off: int, size: int) -> bytes:
        handle = self._handle(fh)
        if isinstance(handle, BlobHandle | FileHandle):
            return await handle.stream.read_at(off, size, handle.size)
        if isinstance(handle, LinkHandle):
            return bytes(handle.content[off : off + size])
        if isinstance(handle, UploadHandle):
            session = handle.session
            await session.pipe.flush()  # what writers queued becomes readable
            if handle.stream is None:
                handle.stream = StoredFileReader(self.driver, session.upload.data_path)
            return await handle.stream.read_at(off, size, session.pipe.size)
        raise Refusal(errno.EISDIR, "read of a directory")

    @fuse_handler
    async def write(self, fh: int, off: int, buf: bytes) -> int:
        handle = self._handle(fh)
        if isinstance(handle, UploadHandle) and handle.writable:
            return await self._upload_call(handle.session, handle.session.pipe.write_at(off, buf))
        if isinstance(handle, LinkHandle) and handle.writable:
            if off > len(handle.content):
                handle.content.extend(b"\0" * (off - len(handle.content)))
            handle.content[off : off + len(buf)] = buf
            handle.dirty = True
            if _link_complete(handle.content):
                # Shells ignore errors of close(): refuse at write, where printf sees it.
                await self._apply_link(handle)
            return len(buf)
        raise Refusal(errno.EBADF, "file is not open for writing")

    async def _upload_call(self, session: UploadSession, call):  # type: ignore[no-untyped-def]
        """Await a storage call on an upload, keeping its error for the xattr."""
        try:
            return await call
        except BaseException as exc:
            if isinstance(exc, Exception):
                self.uploads.errors[session.upload.id] = f"{errno.errorcode[errno_of(exc)]}: {exc}"
            raise

    @fuse_handler
    async def flush(self, fh: int) -> None:
        handle = self._handle(fh)
        if isinstance(handle, UploadHandle) and handle.writable:
            await self._upload_call(handle.session, handle.session.pipe.flush())
        elif isinstance(handle, LinkHandle) and handle.dirty:
            await self._apply_link(handle)

    @fuse_handler
    async def fsync(self, fh: int, datasync: bool) -> None:
        await self.flush(fh)

    @fuse_handler
    async def release(self, fh: int) -> None:
        handle = self.handles.pop(fh, None)
        if isinstance(handle, BlobHandle | FileHandle):
            await handle.stream.aclose()
        elif isinstance(handle, UploadHandle):
            if handle.stream is not None:
                await handle.stream.aclose()
            await self._release_session(handle.session)
        elif isinstance(handle, LinkHandle):
            if self.pending_links.get(handle.place.parts) is handle:
                del self.pending_links[handle.place.parts]
            if handle.dirty:  # nobody flushed: apply now; errors can only be logged
                try:
                    await self._apply_link(handle)
                except Exception as exc:
                    log.warning("link %s not written: %s", "/".join(handle.place.parts), exc)

    async def _release_session(self, session: UploadSession) -> None:
        try:
            await self.uploads.release(session)
        except Exception as exc:  # release cannot report errors; flush did, if it could
            log.warning("upload %s: keeping its data failed: %s", session.upload.id, exc)

    # links ---------------------------------------------------------------------------
    async def _apply_link(self, handle: LinkHandle) -> None:
        place = handle.place
        try:
            target = decode_link("/".join(place.parts), bytes(handle.content).rstrip(b"\n"))
            await self._link(place, target)
        except Exception as exc:
            self.link_errors[place.parts] = f"{errno.errorcode[errno_of(exc)]}: {exc}"
            raise
        handle.dirty = False
        self.link_errors.pop(place.parts, None)
        if self.pending_links.get(place.parts) is handle:
            del self.pending_links[place.parts]
        for parts in list(self.created_dirs):
            if place.parts[: len(parts)] == parts:
                self.created_dirs.discard(parts)  # stored now
        log.info("%s %s -> %s", place.kind.value, "/".join(place.parts), target)

    async def _link(self, place: Place, target: Digest) -> None:
        repo = self.registry.repository(place.repository)
        if place.kind == Kind.TAG_LINK:
            await repo.tags.tag(place.tag, target)
            return
        named = place.link_digest
        if target.algorithm != CANONICAL:
            raise InvalidLinkError(f"a link names a blob by its sha256 digest, not {target}")
        if place.kind == Kind.REVISION_LINK:
            if named != target:
                raise InvalidLinkError(f"revision link of {named} must hold {named}, not {target}")
            await repo.manifests.register(target)
            return
        if named.algorithm == CANONICAL and named != target:
            raise InvalidLinkError(f"layer link of {named} must hold {named}, not {target}")
        if named.algorithm != CANONICAL:
            await self.registry.blobs.stat(target)
            actual = await self.driver.hash_file(paths.blob_data(target), [named.algorithm])
            if actual[named.algorithm] != named.hex:
                raise InvalidLinkError(f"blob {target} does not hash to {named}")
            await repo.layers.link(target, [named])
            return
        await repo.layers.link(target)

    # removing and renaming -----------------------------------------------------------
    @fuse_handler
    async def unlink(self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        place = self._child(parent_inode, name)
        self._writable("unlink")
        if place.kind == Kind.UPLOAD:
            await self._cancel_upload(place)
        elif place.parts in self.pending_links:
            del self.pending_links[place.parts]
        elif place.kind == Kind.REVISION_LINK:
            repo = self.registry.repository(place.repository)
            await repo.manifests.delete(place.link_digest, repo.tags)
        elif place.kind in LINK_KINDS:
            await self.driver.delete(place.store_path)
        elif place.kind == Kind.BLOB_DATA:
            raise Refusal(errno.EPERM, "blobs go away only through layerfs gc")
        else:
            raise Refusal(errno.EPERM, f"rm {'/'.join(place.parts)}: not removable")
        log.info("removed %s %s", place.kind.value, "/".join(place.parts))

    async def _cancel_upload(self, place: Place) -> None:
        upload_id = await self._upload_id(place)
        session = self.uploads.sessions.get(upload_id)
        if session is not None:
            await session.pipe.drain()
            await session.upload.cancel()
            await self.uploads.forget(upload_id)
        else:
            await self.registry.repository(place.repository).uploads.cancel(upload_id)
        self.uploads.errors.pop(upload_id, None)
        self._keep_visible(place.parts[: place.parts.index("_uploads")])

    def _keep_visible(self, repository: Parts) -> None:
        """The ``rm`` of an upload must not take its repository away, though on an
        object store (no empty directories) it may have been the last key: the
        repository stays in the view until rmdir or unmount, as one made by mkdir
        would. Asking the store first would cost a request per level, and its failure
        would turn a done ``rm`` into an error."""
        self.created_dirs.update(repository[:depth] for depth in range(2, len(repository) + 1))
        self.repository_marks.add(repository)

    @fuse_handler
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
        target = self._child(parent_inode_new, name_new)
        self._writable("rename")
        if flags & pyfuse3.RENAME_EXCHANGE:
            raise Refusal(errno.EINVAL, "rename: exchanging entries is not supported")
        if source.kind != Kind.UPLOAD:
            raise Refusal(errno.EPERM, f"rename {'/'.join(source.parts)}: only uploads move")
        if target.kind != Kind.UPLOAD or target.repository != source.repository:
            raise Refusal(errno.EXDEV, "an upload moves only within its _uploads directory")
        upload_id = await self._upload_id(source)
        if ":" in target.upload_name:
            await self._finish_upload(source, upload_id, target.upload_name)
        else:
            await self._rename_upload(source, target, upload_id, flags)
        self.inodes.move(source.parts, target.parts)

    async def _finish_upload(self, source: Place, upload_id: str, digest_text: str) -> None:
        session = await self.uploads.open(source.repository, upload_id, source.upload_name)
        session.handles += 1
        try:
            digest = Digest.parse(digest_text)
            await self._upload_call(session, session.pipe.flush())
            info = await self._upload_call(session, session.upload.finish(digest))
        finally:
            session.handles -= 1
            if session.handles <= 0:
                await self.uploads.forget(upload_id)
        self.uploads.errors.pop(upload_id, None)
        log.info(
            "upload %s finished as %s (%d bytes) in %s",
            upload_id,
            info.digest,
            info.size,
            source.repository,
        )

    async def _rename_upload(
        self, source: Place, target: Place, upload_id: str, flags: int
    ) -> None:
        check_component(target.upload_name, "upload")
        existing = await self.uploads.find(target.repository, target.upload_name)
        if existing == upload_id:
            return
        if existing is not None:
            if flags & pyfuse3.RENAME_NOREPLACE:
                raise Refusal(errno.EEXIST, f"upload {target.upload_name} exists")
            await self._cancel_upload(target)
        await self.registry.repository(source.repository).uploads.set_name(
            upload_id, target.upload_name
        )
        session = self.uploads.sessions.get(upload_id)
        if session is not None:
            session.name = target.upload_name

    # extended attributes ----------------------------------------------------------------
    async def _xattrs(self, place: Place) -> dict[str, bytes]:
        if place.kind == Kind.ROOT:
            values = {
                "pid": str(os.getpid()).encode(),
                "uploads": json.dumps(self.uploads.status()).encode(),
                "store": getattr(self.driver, "root", self.driver.name).encode(),
            }
            if hasattr(self.driver, "bytes_read"):  # object stores count what they fetch
                values["bytes-read"] = str(self.driver.bytes_read).encode()
            return values
        if place.kind == Kind.UPLOAD:
            upload_id = await self._upload_id(place)
            uploads = self.registry.repository(place.repository).uploads
            started = await uploads.started_at(upload_id)
            values = {
                "uuid": upload_id.encode(),
                "offset": str(await self.uploads.size(place.repository, upload_id)).encode(),
                "startedat": started.strftime("%Y-%m-%dT%H:%M:%SZ").encode(),
            }
            if upload_id in self.uploads.errors:
                values["error"] = self.uploads.errors[upload_id].encode()
            return values
        if place.parts in self.link_errors:
            return {"error": self.link_errors[place.parts].encode()}
        return {}

    @fuse_handler
    async def getxattr(self, inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> bytes:
        key = decode(name)
        if not key.startswith(XATTR_PREFIX):
            # The kernel asks for security.capability before every write: answer at once.
            raise pyfuse3.FUSEError(pyfuse3.ENOATTR)
        values = await self._xattrs(self._place(inode))
        if key[len(XATTR_PREFIX) :] not in values:
            raise pyfuse3.FUSEError(pyfuse3.ENOATTR)
        return values[key[len(XATTR_PREFIX) :]]

    @fuse_handler
    async def listxattr(self, inode: int, ctx: pyfuse3.RequestContext) -> list[bytes]:
        return [(XATTR_PREFIX + k).encode() for k in await self._xattrs(self._place(inode))]

    @fuse_handler
    async def setxattr(
        self, inode: int, name: bytes, value: bytes, ctx: pyfuse3.RequestContext
    ) -> None:
        raise Refusal(errno.ENOTSUP, "the store keeps no extended attributes")

    @fuse_handler
    async def removexattr(self, inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        raise Refusal(errno.ENOTSUP, "the store keeps no extended attributes")

    @fuse_handler
    async def statfs(self, ctx: pyfuse3.RequestContext) -> pyfuse3.StatvfsData:
        data = pyfuse3.StatvfsData()
        if isinstance(self.driver, FilesystemDriver):
            disk = await trio.to_thread.run_sync(os.statvfs, self.driver.root)
            for name in (
                "f_bsize",
                "f_frsize",
                "f_blocks",
                "f_bfree",
                "f_bavail",
                "f_files",
                "f_ffree",
                "f_favail",
            ):
                setattr(data, name, getattr(disk, name))
        else:
            data.f_bsize = data.f_frsize = BLOCK_SIZE
        data.f_namemax = 255
        return data

    # shutting down ----------------------------------------------------------------------
    async def close_uploads(self) -> None:
        """Store data and hash state of every open upload (before unmounting)."""
        for session in list(self.uploads.sessions.values()):
            try:
                await session.pipe.flush()
                await self.uploads.forget(session.upload.id)
                log.info("upload %s closed at %d bytes", session.upload.id, session.upload.size)
            except Exception as exc:
                log.warning("upload %s: closing failed: %s", session.upload.id, exc)


def _link_complete(content: bytearray) -> bool:
    """A link's content is whole once it parses, ends a line or is longer than any digest."""
    if b"\n" in content or len(content) > LONGEST_DIGEST:
        return True
    try:
        Digest.parse(content.decode("ascii"))
    except (UnicodeDecodeError, RegistryError):
        return False
    return True


def _special_of(place: Place) -> str:
    return next(p for p in place.parts if p in SPECIAL_DIRS)


def _blob_digest(place: Place) -> Digest:
    return Digest.from_parts(place.parts[1], place.parts[3])
