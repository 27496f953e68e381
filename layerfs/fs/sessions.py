"""Uploads as the mount sees them: found by the name a user gave them, shared by every
open handle, with the figures ``layerfs status`` shows (docs/DESIGN.md, "State kept
by the mount")."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import trio

from ..deadline import within_request
from ..storage import Registry, Upload, walk
from ..storage.errors import UploadBusyError, UploadClosedError
from ..storage.uploads import Stamp
from ..storage.writebehind import WriteBehind

if TYPE_CHECKING:
    from .state import UploadHandle

log = logging.getLogger("layerfs.fs")


@dataclass
class UploadSession:
    """One upload opened through the mount; lives while a handle holds it.

    ``handles`` counts the open file handles and the requests (truncate, finish) that
    use the session without one. ``removed`` is set when the upload is cancelled or
    replaced while handles remain: they then get ESTALE, never a wait.

    One writer at a time (README, "Concurrent writers"): ``writer`` is the handle
    whose writes the upload takes, from its open to its release. Another writable
    open is refused (EBUSY) while that handle has written since its last flush; when
    it has flushed everything (a program that closed: the kernel sends the release
    after close returns, so it can come after the next open), the open waits up to
    ``grace`` seconds (``UploadTable.release_grace``) for the release, and is refused if
    it does not come.
    ``finishing`` refuses writes and restarts while a finish runs. ``streams`` are
    the handles with a reader's stream on the data, closed before the data moves."""

    upload: Upload
    pipe: WriteBehind
    name: str
    handles: int = 0
    removed: bool = False
    opened: float = field(default_factory=time.monotonic)
    size_at_open: int = 0
    writer: object | None = None
    writer_dirty: bool = False  # the writer wrote (or opened) since its last flush
    finishing: bool = False
    streams: list[UploadHandle] = field(default_factory=list)
    released: trio.Event = field(default_factory=trio.Event)  # the writer let go

    @property
    def repository(self) -> str:
        return self.upload.repository

    def check_usable(self) -> None:
        if self.removed or not self.upload.usable:
            raise UploadClosedError(f"upload {self.name} was removed while open")

    async def claim_writer(self, handle: object, grace: float) -> None:
        """Make ``handle`` the upload's one writer, or raise UploadBusyError."""
        deadline = trio.current_time() + grace
        while self.writer is not None and self.writer is not handle:
            if self.writer_dirty or self.finishing or trio.current_time() >= deadline:
                raise UploadBusyError(f"upload {self.name} is open for writing elsewhere")
            with trio.move_on_at(deadline):
                await self.released.wait()
        if self.finishing:
            raise UploadBusyError(f"upload {self.name} is being finished")
        self.writer, self.writer_dirty = handle, True
        self.released = trio.Event()

    def check_writer(self, handle: object) -> None:
        """Raise unless ``handle`` is the writer and may write now."""
        self.check_usable()
        if self.finishing:
            raise UploadBusyError(f"upload {self.name} is being finished")
        if self.writer is not handle:
            raise UploadClosedError(f"upload {self.name}: this handle is not its writer")

    def flushed(self, handle: object) -> None:
        if self.writer is handle:
            self.writer_dirty = False

    def let_go(self, handle: object) -> None:
        """``handle`` closed: it writes no more."""
        if self.writer is handle:
            self.writer, self.writer_dirty = None, False
            self.released.set()

    async def close_streams(self) -> None:
        """Close every reader's stream on the data, before the data moves: no
        descriptor of this mount's outlives the upload (a read opens it again)."""
        for handle in list(self.streams):
            if handle.stream is not None:
                await handle.stream.aclose()

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


@dataclass
class _Listing:
    """One repository's uploads as last read: each id's stored name."""

    names: dict[str, str]  # upload id -> its stored name (the id when it has none)
    read_at: float  # when every name was read
    view: dict[str, str] | None = None  # name -> id (walk.by_name), made when asked


class UploadNames:
    """Upload ids by the name they show under, per repository.

    Finding a name means reading every upload's ``name`` file, so a listing of
    ``_uploads`` and the lookups that follow it would read them all once per entry.
    What was read is kept for ``trusted`` seconds, as long as the kernel trusts a
    directory, and kept current by this mount's own creates, renames and removals:
    another mount's or the registry's changes are seen within that time (README,
    "The mounted view"). Names are read several at once (S3 answers in parallel)."""

    READERS = 16

    def __init__(
        self, registry: Registry, trusted: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.registry, self.trusted, self.clock = registry, trusted, clock
        self._listings: dict[str, _Listing] = {}
        self._generation = 0  # counts this mount's own changes, for reads under way

    async def by_name(self, repository: str) -> dict[str, str]:
        listing = self._listings.get(repository)
        if listing is None or self.clock() - listing.read_at >= self.trusted:
            listing = await self._read(repository, {})
        if listing.view is None:
            listing.view = walk.by_name(listing.names)
        return listing.view

    async def refresh_new(self, repository: str) -> dict[str, str]:
        """``by_name`` after one more listing of the ids, reading only the names of
        uploads that appeared since (another mount's create at this moment)."""
        listing = self._listings.get(repository)
        if listing is not None:
            listing = await self._read(repository, listing.names, listing.read_at)
        return await self.by_name(repository)

    async def _read(
        self, repository: str, known: dict[str, str], read_at: float | None = None
    ) -> _Listing:
        uploads = self.registry.repository(repository).uploads
        started, generation = self.clock(), self._generation
        ids = await uploads.ids()
        names = {i: known[i] for i in ids if i in known}
        limiter = trio.CapacityLimiter(self.READERS)

        async def read(upload_id: str) -> None:
            async with limiter:
                names[upload_id] = await uploads.name_of(upload_id)

        async with trio.open_nursery() as nursery:
            for upload_id in ids:
                if upload_id not in names:
                    nursery.start_soon(read, upload_id)
        listing = _Listing(names, started if read_at is None else read_at)
        if generation == self._generation:  # else this mount renamed or removed one meanwhile
            self._listings[repository] = listing
        return listing

    def named(self, repository: str, upload_id: str, name: str) -> None:
        """This mount gave ``upload_id`` the name ``name`` (a create or a rename)."""
        self._generation += 1
        listing = self._listings.get(repository)
        if listing is not None:
            listing.names[upload_id] = name
            listing.view = None

    def removed(self, repository: str, upload_id: str) -> None:
        """This mount removed ``upload_id`` (cancelled, finished, replaced)."""
        self._generation += 1
        listing = self._listings.get(repository)
        if listing is not None and listing.names.pop(upload_id, None) is not None:
            listing.view = None


class UploadTable:
    """Name → upload id per repository, and the sessions of open uploads by id."""

    def __init__(
        self,
        registry: Registry,
        nursery: trio.Nursery,
        trusted: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.registry = registry
        self.nursery = nursery  # runs the write-behind of open uploads
        self.sessions: dict[str, UploadSession] = {}  # by upload id
        self.release_grace = 1.0  # how long a writable open waits for a closed writer's release
        self._opening: dict[str, trio.Event] = {}  # ids whose session is being made
        # (size, mtime) of an upload's data right after this mount last stored it
        # with its hash state: a later session trusts that state only while the
        # data still shows exactly this (storage.uploads.Upload, "stamp")
        self.stamps: dict[str, Stamp] = {}
        self.errors: dict[str, str] = {}  # last error by upload id
        self.index = UploadNames(registry, trusted, clock)

    async def names(self, repository: str) -> dict[str, str]:
        """Every upload of ``repository`` by the name it shows under
        (``storage.walk.by_name``: every mount agrees, none is hidden)."""
        return await self.index.by_name(repository)

    async def find(self, repository: str, name: str) -> str | None:
        return (await self.names(repository)).get(name)

    async def create(self, repository: str, name: str) -> UploadSession | None:
        """A new upload shown as ``name``; None when another upload took that name at
        the same moment (the caller opens that one instead)."""
        uploads = self.registry.repository(repository).uploads
        upload = await uploads.create()
        await uploads.set_name(upload.id, name)
        self.index.named(repository, upload.id, name)
        session = UploadSession(upload, WriteBehind(upload, self.nursery), name)
        self.sessions[upload.id] = session
        if (await self.index.refresh_new(repository)).get(name) != upload.id:
            await self.forget(upload.id)
            await upload.cancel()
            self.gone(repository, upload.id)
            return None
        return session

    async def rename(self, repository: str, upload_id: str, name: str) -> None:
        await self.registry.repository(repository).uploads.set_name(upload_id, name)
        self.index.named(repository, upload_id, name)
        session = self.sessions.get(upload_id)
        if session is not None:
            session.name = name

    async def open(self, repository: str, upload_id: str, name: str) -> UploadSession:
        """The upload's one session: opens that arrive while it is being made wait
        for it rather than each making their own (two sessions would write one data
        file with two ideas of its end and its hash)."""
        while upload_id not in self.sessions and upload_id in self._opening:
            with within_request(f"upload {upload_id}"):  # being opened, or upkeep's
                await self._opening[upload_id].wait()
        session = self.sessions.get(upload_id)
        if session is not None:
            return session
        made = self._opening[upload_id] = trio.Event()
        try:
            uploads = self.registry.repository(repository).uploads
            upload = await uploads.resume(upload_id, stamp=self.stamps.get(upload_id))
            pipe = WriteBehind(upload, self.nursery)
            session = UploadSession(upload, pipe, name, size_at_open=upload.size)
            self.sessions[upload_id] = session
        finally:
            del self._opening[upload_id]
            made.set()
        return session

    @asynccontextmanager
    async def claimed(self, upload_id: str) -> AsyncIterator[bool]:
        """Claim an upload for the upkeep the mount does itself (a purge, completing a
        finish cut short): False where a session has it or is being made; else opens
        of it wait until the work ends, then find what it left
        (``storage.maintenance.Claim``)."""
        if upload_id in self.sessions or upload_id in self._opening:
            yield False
            return
        done = self._opening[upload_id] = trio.Event()
        try:
            yield True
        finally:
            del self._opening[upload_id]
            done.set()

    async def size(self, repository: str, upload_id: str) -> int:
        session = self.sessions.get(upload_id)
        if session is not None:
            if session.pipe.queued == 0:  # nothing of ours in flight: ask the store
                await session.upload.refresh()
            return session.pipe.size
        return await self.registry.repository(repository).uploads.data_size(upload_id)

    # holding: a session lives while a handle or a request holds it -------------------
    def hold(self, session: UploadSession) -> UploadSession:
        """Hold ``session`` for a handle, until the handle's ``release``."""
        session.handles += 1
        return session

    async def release(self, session: UploadSession) -> None:
        """Drop one holder. A session removed or finished meanwhile is forgotten at
        once (handles left on it get ESTALE); else the last holder stores data and
        hash state and ends the session."""
        session.handles -= 1
        if session.removed:
            if self.sessions.get(session.upload.id) is session:
                await self.forget(session.upload.id)
            return
        await self.close_if_unused(session)

    async def release_quietly(self, session: UploadSession) -> None:
        """``release``, its failure logged: a release cannot report one (a flush did,
        if it could), and a request's own outcome is what it answers."""
        try:
            await self.release(session)
        except Exception as exc:
            log.warning("upload %s: keeping its data failed: %s", session.upload.id, exc)

    @asynccontextmanager
    async def holding(self, session: UploadSession) -> AsyncIterator[UploadSession]:
        """Hold ``session`` for one request (a truncate, a finish): it outlives the
        request's awaits, and is released as the request ends, however it ends."""
        self.hold(session)
        try:
            yield session
        finally:
            await self.release_quietly(session)

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

    async def remove(self, repository: str, upload_id: str) -> None:
        """Cancel an upload, open here or not."""
        session = self.sessions.get(upload_id)
        if session is not None:
            await self.cancel(session)
        else:
            await self.registry.repository(repository).uploads.cancel(upload_id)
            self.gone(repository, upload_id)

    async def cancel(self, session: UploadSession) -> None:
        """Remove the upload; handles still open on it get ESTALE from now on."""
        session.removed = True
        await self.forget(session.upload.id)
        await session.pipe.drain()
        await session.upload.cancel()
        self.gone(session.repository, session.upload.id)

    def gone(self, repository: str, upload_id: str) -> None:
        """This mount removed or finished the upload: forget its name and last error."""
        self.index.removed(repository, upload_id)
        self.errors.pop(upload_id, None)
        self.stamps.pop(upload_id, None)

    async def forget(self, upload_id: str) -> None:
        session = self.sessions.pop(upload_id, None)
        if session is not None:
            await session.pipe.aclose()
            await session.close_streams()
            stamp = session.upload.stamp
            if stamp is None or session.removed:
                self.stamps.pop(upload_id, None)
            else:
                self.stamps[upload_id] = stamp

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
