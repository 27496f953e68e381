"""Uploads as the mount sees them: found by the name a user gave them, shared by every
open handle, with the figures ``layerfs status`` shows (docs/DESIGN.md, "State")."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import trio

from ..storage import Registry, Upload
from ..storage.errors import UploadClosedError
from ..storage.writebehind import WriteBehind

log = logging.getLogger("layerfs.fs")


@dataclass
class UploadSession:
    """One upload opened through the mount; lives while a handle holds it.

    ``handles`` counts the open file handles and the requests (truncate, finish) that
    use the session without one. ``removed`` is set when the upload is cancelled or
    replaced while handles remain: they then get ESTALE, never a wait."""

    upload: Upload
    pipe: WriteBehind
    name: str
    handles: int = 0
    removed: bool = False
    opened: float = field(default_factory=time.monotonic)
    size_at_open: int = 0

    @property
    def repository(self) -> str:
        return self.upload.repository

    def check_usable(self) -> None:
        if self.removed or not self.upload.usable:
            raise UploadClosedError(f"upload {self.name} was removed while open")

    def status(self) -> dict[str, object]:
        age = time.monotonic() - self.opened
        written = self.pipe.size - self.size_at_open
        return {
            "repository": self.repository,
            "name": self.name,
            "uuid": self.upload.id,
            "bytes": self.pipe.size,
            "rate": round(written / age) if age > 0 else 0,
            "age": round(age, 3),
        }


class UploadTable:
    """Name → upload id per repository, and the sessions of open uploads by id."""

    def __init__(self, registry: Registry, nursery: trio.Nursery) -> None:
        self.registry = registry
        self.nursery = nursery  # runs the write-behind of open uploads
        self.sessions: dict[str, UploadSession] = {}  # by upload id
        self.errors: dict[str, str] = {}  # last error by upload id

    async def names(self, repository: str) -> dict[str, str]:
        """Every upload of ``repository`` by the name it shows under
        (``storage.walk.uploads_by_name``: every mount agrees, none is hidden)."""
        # the store's names, not the sessions': another mount may have renamed one
        return await self.registry.repository(repository).uploads.by_name()

    async def find(self, repository: str, name: str) -> str | None:
        return (await self.names(repository)).get(name)

    async def create(self, repository: str, name: str) -> UploadSession | None:
        """A new upload shown as ``name``; None when another upload took that name at
        the same moment (the caller opens that one instead)."""
        uploads = self.registry.repository(repository).uploads
        upload = await uploads.create()
        await uploads.set_name(upload.id, name)
        session = UploadSession(upload, WriteBehind(upload, self.nursery), name)
        self.sessions[upload.id] = session
        if await self.find(repository, name) != upload.id:
            await self.forget(upload.id)
            await upload.cancel()
            return None
        return session

    async def open(self, repository: str, upload_id: str, name: str) -> UploadSession:
        session = self.sessions.get(upload_id)
        if session is None:
            upload = await self.registry.repository(repository).uploads.resume(upload_id)
            pipe = WriteBehind(upload, self.nursery)
            session = UploadSession(upload, pipe, name, size_at_open=upload.size)
            self.sessions[upload_id] = session
        return session

    async def size(self, repository: str, upload_id: str) -> int:
        session = self.sessions.get(upload_id)
        if session is not None:
            if session.pipe.queued == 0:  # nothing of ours in flight: ask the store
                await session.upload.refresh()
            return session.pipe.size
        return (await self.registry.repository(repository).uploads.resume(upload_id)).size

    async def release(self, session: UploadSession) -> None:
        """Drop one holder; the last one stores data and hash state and ends the session."""
        session.handles -= 1
        await self.close_if_unused(session)

    async def close_if_unused(self, session: UploadSession) -> None:
        """End a session nobody holds. An open that arrives while its data is being
        stored gets this same session, which then stays."""
        if session.handles > 0 or self.sessions.get(session.upload.id) is not session:
            return
        try:
            if not session.removed:
                await session.pipe.flush()
        finally:
            if session.handles == 0 and self.sessions.get(session.upload.id) is session:
                await self.forget(session.upload.id)

    async def cancel(self, session: UploadSession) -> None:
        """Remove the upload; handles still open on it get ESTALE from now on."""
        session.removed = True
        await self.forget(session.upload.id)
        await session.pipe.drain()
        await session.upload.cancel()
        self.errors.pop(session.upload.id, None)

    async def forget(self, upload_id: str) -> None:
        session = self.sessions.pop(upload_id, None)
        if session is not None:
            await session.pipe.aclose()

    async def close_all(self) -> None:
        """Store data and hash state of every open upload and end its session."""
        for session in list(self.sessions.values()):
            try:
                await session.pipe.flush()
                log.info("upload %s closed at %d bytes", session.upload.id, session.pipe.size)
            except Exception as exc:
                log.warning("upload %s: closing failed: %s", session.upload.id, exc)
            finally:
                await self.forget(session.upload.id)

    def status(self) -> list[dict[str, object]]:
        return [s.status() for s in self.sessions.values()]
