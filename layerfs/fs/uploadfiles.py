"""``_uploads/<name>``: an upload shown as one regular file.

Create starts an upload, writes append (a gap past the end reads as zeros), truncate
to 0 restarts it, ``rm`` cancels it, a rename to another name renames it and a rename
to ``<alg>:<hex>`` finishes it. Every handle on one upload shares one
:class:`~.sessions.UploadSession`; a session whose upload was removed while open
answers ESTALE at once, so no request waits for it (docs/DESIGN.md, "Uploads").
"""

from __future__ import annotations

import errno
import logging
import os
import stat
import time
from collections.abc import Awaitable
from typing import TypeVar

import pyfuse3

from ..storage.reference import validate_name
from .errors import Refusal, errno_of
from .kinds import PathKind
from .sessions import UploadSession
from .state import UPLOAD_TIMEOUT, MountState, UploadHandle
from .view import Place

log = logging.getLogger("layerfs.fs")
T = TypeVar("T")


def check_same_uploads(source: Place, target: Place) -> None:
    """An upload is renamed or finished only within its own ``_uploads``."""
    if target.repository != source.repository:
        raise Refusal(errno.EXDEV, "an upload moves only within its _uploads directory")


class UploadFiles(PathKind):
    def __init__(self, state: MountState) -> None:
        self.state = state

    @property
    def table(self):  # type: ignore[no-untyped-def]
        return self.state.uploads

    async def upload_id(self, place: Place) -> str:
        upload_id = await self.table.find(place.repository, place.upload_name)
        if upload_id is None:
            raise Refusal(errno.ENOENT, f"no upload {place.upload_name} in {place.repository}")
        return upload_id

    async def getattr(self, place: Place) -> pyfuse3.EntryAttributes:
        size = await self.table.size(place.repository, await self.upload_id(place))
        mode = stat.S_IFREG | (0o444 if self.state.read_only else 0o644)
        return self.state.attrs(place.parts, mode, size, time.time_ns(), UPLOAD_TIMEOUT)

    async def call(self, session: UploadSession, call: Awaitable[T]) -> T:
        """Await a storage call on an upload, keeping its error for the xattr."""
        try:
            return await call
        except Exception as exc:
            code = errno.errorcode[errno_of(exc)]
            self.table.errors[session.upload.id] = f"{code}: {exc}"
            raise

    # opening -----------------------------------------------------------------------
    async def create(self, place: Place, flags: int) -> pyfuse3.FileInfo:
        validate_name(place.repository)
        existing = await self.table.find(place.repository, place.upload_name)
        if existing is None:
            session = await self.table.create(place.repository, place.upload_name)
            if session is not None:
                handle = UploadHandle(self.table.hold(session), True)
                # a new session: nobody else holds it
                await session.claim_writer(handle, self.table.release_grace)
                log.info(
                    "upload %s started in %s as %s",
                    session.upload.id,
                    place.repository,
                    place.upload_name,
                )
                return self._file_info(handle)
            # another mount created the same name at this moment: that upload is it
        if flags & os.O_EXCL:
            raise Refusal(errno.EEXIST, f"upload {place.upload_name} exists")
        return await self.open(place, flags)

    async def open(self, place: Place, flags: int) -> pyfuse3.FileInfo:
        writable = (flags & os.O_ACCMODE) != os.O_RDONLY
        if writable or flags & os.O_TRUNC:
            self.state.check_writable("open for writing")
        upload_id = await self.upload_id(place)
        session = await self.table.open(place.repository, upload_id, place.upload_name)
        handle = UploadHandle(self.table.hold(session), writable)
        try:
            if writable:
                await self._claim(session, handle)
            if flags & os.O_TRUNC and writable:
                await session.pipe.drain()
                session.check_writer(handle)  # still ours after the wait
                await session.upload.restart()
                log.info("upload %s restarted (O_TRUNC)", upload_id)
        except BaseException:
            session.let_go(handle)
            await self.table.release_quietly(session)
            raise
        return self._file_info(handle)

    async def _claim(self, session: UploadSession, handle: UploadHandle) -> None:
        """Make ``handle`` the upload's one writer; a refusal is kept for the xattr."""
        try:
            await session.claim_writer(handle, self.table.release_grace)
        except Exception as exc:
            self.table.errors[session.upload.id] = f"{errno.errorcode[errno_of(exc)]}: {exc}"
            raise

    def _file_info(self, handle: UploadHandle) -> pyfuse3.FileInfo:
        return pyfuse3.FileInfo(fh=self.state.handles.add(handle), direct_io=True)

    # data --------------------------------------------------------------------------
    async def read(self, handle: UploadHandle, offset: int, size: int) -> bytes:
        """The bytes uploaded so far. Where the store can read what an open writer
        holds (a file system), queued writes are stored first; where it cannot (S3,
        whose parts are readable only once completed), the read sees what was stored
        before the writer began rather than completing the upload: that would cost a
        server-side copy of the whole object on every read of a growing upload."""
        session = handle.session
        session.check_usable()
        store = self.state.store
        committed = store.reads_only_committed(session.upload.writing or session.pipe.queued > 0)
        if not committed:
            await self.call(session, session.pipe.flush())
            if offset + size > session.pipe.size:  # past what we know: another mount's?
                await session.upload.refresh()
            end = session.pipe.size
        else:
            end = await store.committed_size(session.upload.data_path)
        if handle.stream is None or handle.stream.committed != committed:
            if handle.stream is not None:
                await handle.stream.aclose()
            else:
                session.streams.append(handle)
            handle.stream = store.reader(session.upload.data_path, committed)
        session.check_usable()  # removed while the stream opened: no descriptor on it
        return await handle.stream.read_at(offset, size, end)

    async def write(self, handle: UploadHandle, offset: int, data: bytes) -> int:
        if not handle.writable:
            raise Refusal(errno.EBADF, "file is not open for writing")
        session = handle.session
        session.check_writer(handle)
        session.writer_dirty = True
        return await self.call(session, session.pipe.write_at(offset, data))

    async def flush(self, handle: UploadHandle) -> None:
        if handle.writable:
            session = handle.session
            session.check_writer(handle)
            await self.call(session, session.pipe.flush())
            session.flushed(handle)

    async def release(self, handle: UploadHandle) -> None:
        session = handle.session
        session.let_go(handle)
        if handle in session.streams:
            session.streams.remove(handle)
        if handle.stream is not None:
            await handle.stream.aclose()
        await self.table.release_quietly(session)

    async def setattr(self, place: Place, size: int | None, handle: object) -> None:
        if size is not None:
            await self.truncate(place, size, handle if isinstance(handle, UploadHandle) else None)

    async def truncate(self, place: Place, size: int, handle: UploadHandle | None) -> None:
        """To 0 restarts the upload; to its size changes nothing; past it appends zeros
        (``cp`` of a sparse file ending in a hole); anything else is refused."""
        if handle is not None:
            session = handle.session
        else:
            upload_id = await self.upload_id(place)
            session = await self.table.open(place.repository, upload_id, place.upload_name)
        async with self.table.holding(session):
            session.check_usable()
            if handle is not None and handle.writable:
                session.check_writer(handle)
            elif session.finishing or session.writer_dirty:
                raise Refusal(
                    errno.EBUSY,
                    f"upload {place.upload_name}: truncate refused: it is being written"
                    " or finished",
                )
            if size == 0:
                await session.pipe.drain()
                await self.call(session, session.upload.restart())
            elif size > session.pipe.size:
                await self.call(session, session.pipe.write_at(size, b""))
            elif size != session.pipe.size:
                raise Refusal(
                    errno.EINVAL,
                    f"upload {place.upload_name}: truncate to {size} bytes refused;"
                    f" it holds {session.pipe.size}: only 0 (restart) or more is allowed",
                )

    # removing and renaming ------------------------------------------------------------
    async def unlink(self, place: Place) -> None:
        await self.table.remove(place.repository, await self.upload_id(place))
        self.state.keep_visible(place.parts, place.repository_parts)

    async def check_movable(self, source: Place) -> None:
        await self.upload_id(source)  # ENOENT first, as rename(2) says it

    async def rename_into(self, source: Place, target: Place, flags: int) -> None:
        """``mv x y``: the upload takes another name (``user.layerfs.name``)."""
        upload_id = await self.upload_id(source)
        check_same_uploads(source, target)
        existing = await self.table.find(target.repository, target.upload_name)
        if existing == upload_id:
            return
        if existing is not None:
            if flags & pyfuse3.RENAME_NOREPLACE:
                raise Refusal(errno.EEXIST, f"upload {target.upload_name} exists")
            await self.unlink(target)
        await self.table.rename(source.repository, upload_id, target.upload_name)

    # extended attributes ---------------------------------------------------------------
    async def xattrs(self, place: Place) -> dict[str, bytes]:
        upload_id = await self.upload_id(place)
        uploads = self.state.registry.repository(place.repository).uploads
        started = await uploads.started_at(upload_id)
        values = {
            "uuid": upload_id.encode(),
            "offset": str(await self.table.size(place.repository, upload_id)).encode(),
            "startedat": started.strftime("%Y-%m-%dT%H:%M:%SZ").encode(),
        }
        if upload_id in self.table.errors:
            values["error"] = self.table.errors[upload_id].encode()
        return values
