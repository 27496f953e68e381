"""Uploads as the mount sees them: found by the name a user gave them, shared by every
open handle, with the figures ``layerfs status`` shows."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import trio

from ..storage import Registry, Upload
from ..storage.writebehind import WriteBehind


@dataclass
class UploadSession:
    """One upload opened through the mount; lives while a handle is open."""

    upload: Upload
    pipe: WriteBehind
    name: str
    handles: int = 0
    opened: float = field(default_factory=time.monotonic)
    size_at_open: int = 0

    @property
    def repository(self) -> str:
        return self.upload.repository

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
    """Name → upload id per repository, and the sessions of open uploads."""

    def __init__(self, registry: Registry, nursery: trio.Nursery) -> None:
        self.registry = registry
        self.nursery = nursery  # runs the write-behind of open uploads
        self.sessions: dict[str, UploadSession] = {}  # by upload id
        self.errors: dict[str, str] = {}  # last error by upload id

    async def names(self, repository: str) -> dict[str, str]:
        """Every upload of ``repository`` by the name it shows under."""
        uploads = self.registry.repository(repository).uploads
        found = {}
        for upload_id in await uploads.ids():
            session = self.sessions.get(upload_id)
            name = session.name if session else await uploads.name_of(upload_id)
            found[name] = upload_id
        return found

    async def find(self, repository: str, name: str) -> str | None:
        return (await self.names(repository)).get(name)

    async def create(self, repository: str, name: str) -> UploadSession:
        uploads = self.registry.repository(repository).uploads
        upload = await uploads.create()
        await uploads.set_name(upload.id, name)
        session = UploadSession(upload, WriteBehind(upload, self.nursery), name)
        self.sessions[upload.id] = session
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
            return session.pipe.size
        return (await self.registry.repository(repository).uploads.resume(upload_id)).size

    async def release(self, session: UploadSession) -> None:
        """Drop one handle; the last one stores data and hash state and ends the session."""
        session.handles -= 1
        await self.close_if_unused(session)

    async def close_if_unused(self, session: UploadSession) -> None:
        """End a session no handle holds (one opened for a truncate, say)."""
        if session.handles > 0:
            return
        try:
            await session.pipe.flush()
        finally:
            await self.forget(session.upload.id)

    async def forget(self, upload_id: str) -> None:
        session = self.sessions.pop(upload_id, None)
        if session is not None:
            await session.pipe.aclose()

    def status(self) -> list[dict[str, object]]:
        return [s.status() for s in self.sessions.values()]
