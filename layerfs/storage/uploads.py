"""Resumable blob uploads, byte-compatible with docker-registry's.

An upload lives in ``repositories/<name>/_uploads/<uuid>/``: ``data`` (the bytes so
far), ``startedat`` and ``hashstates/sha256/<offset>`` (Go-format SHA-256 states).
The running digest is kept as bytes arrive and stored at close, so a later finish —
by layerfs or by the registry — need not read the data again. See UPLOADS.md for
what is on disk at each step and what a crash there leaves.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import trio

from ..drivers import FileWriter, PathNotFoundError, StorageDriver, UnsafeEntryError
from ..faults import crash_point
from . import paths, walk
from .blobs import BlobInfo, BlobStore
from .digest import CANONICAL, EMPTY_SHA256, Digest
from .errors import (
    BlobUnknownError,
    DigestMismatchError,
    InvalidOffsetWriteError,
    SizeMismatchError,
    UploadBusyError,
    UploadClosedError,
    UploadUnknownError,
)
from .hashstate import HashStateError, ResumableSha256

log = logging.getLogger(__name__)

UUID_RE = paths.UPLOAD_ID_RE
# Buffers at least this large are hashed in a worker thread while the driver writes them.
PARALLEL_HASH = 256 << 10
VALIDATE_RETRIES = 3
VALIDATE_BACKOFF = 0.1


def format_started_at(when: datetime) -> bytes:
    """RFC 3339 in UTC without a fraction, as Go's ``time.RFC3339`` prints it."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ").encode("ascii")


def parse_started_at(content: bytes) -> datetime:
    return datetime.fromisoformat(content.decode("ascii").strip()).astimezone(UTC)


LinkBlob = Callable[[Digest, list[Digest]], Awaitable[None]]


@dataclass(frozen=True)
class Stamp:
    """An upload's data as the driver tells it apart (StorageDriver.stamp), taken
    when this program stored the data and its hash state, with the sha256 so far that
    the state holds. It tells later whether anyone wrote since, and vouches only for
    a state with that digest: on S3 two writers can store states at one offset, and
    the later one's state must not pass for the other's bytes (UPLOADS.md)."""

    data: object
    sha256: str


class Upload:
    """One upload in progress. Writes append; ``close`` keeps it resumable.

    The finish names only bytes it verified (UPLOADS.md, "Trusting the running
    hash"): the running sha256 is used only while it is ``trusted`` to cover exactly
    the stored bytes — built here from an empty file, or from a hash state this
    program stored whose ``stamp`` the data still shows — and the stored size is the
    size hashed; otherwise the finish hashes the stored bytes."""

    def __init__(
        self,
        driver: StorageDriver,
        blobs: BlobStore,
        link_blob: LinkBlob,
        name: str,
        upload_id: str,
        started_at: datetime,
        size: int,
        data_exists: bool,
        stamp: Stamp | None = None,
    ) -> None:
        self.driver = driver
        self.blobs = blobs
        self._link_blob = link_blob
        self.repository = name
        self.id = upload_id
        self.started_at = started_at
        self._size = size
        self._data_exists = data_exists
        self._writer: FileWriter | None = None
        self._hasher: ResumableSha256 | None = None
        self._state_stored_at: int | None = None  # a hash state this upload knows is stored
        self._wrote = False  # written or restarted through this object: it knows its size
        self._stamp = stamp  # the data right after this program last stored it and its state
        self._trusted = False  # the running hash covers exactly the stored bytes
        self._state = "open"
        self._lock = trio.Lock()

    # paths -------------------------------------------------------------------
    @property
    def data_path(self) -> str:
        return paths.upload_data(self.repository, self.id)

    @property
    def dir_path(self) -> str:
        return paths.upload_dir(self.repository, self.id)

    @property
    def size(self) -> int:
        return self._size

    @property
    def stamp(self) -> Stamp | None:
        """The data as this program last stored it with a matching hash state."""
        return self._stamp if self._trusted else None

    async def refresh(self) -> None:
        """Take the size from the store, for an upload only read through this object:
        another mount may have appended since. One written here knows its size better
        than a listing that may lag behind its own last part (S3)."""
        if self._writer is not None or self._wrote:
            return
        try:
            self._size = (await self.driver.stat(self.data_path)).size
            self._data_exists = True
        except PathNotFoundError:
            pass  # removed elsewhere: the next write or finish says so

    @property
    def writing(self) -> bool:
        """A writer is open: on S3 its bytes are parts not yet readable."""
        return self._writer is not None

    @property
    def usable(self) -> bool:
        """Open for writes: not closed, finished, cancelled or found removed."""
        return self._state == "open"

    def _check_usable(self) -> None:
        if self._state != "open":
            raise UploadClosedError(f"upload {self.id} is {self._state}")

    # writing -----------------------------------------------------------------
    async def write(self, data: bytes | bytearray | memoryview) -> int:
        """Append ``data``; the running sha256 follows it."""
        return await self.write_at(None, data)

    async def write_at(self, offset: int | None, data: bytes | bytearray | memoryview) -> int:
        """Append ``data``, which must start exactly at the current end (``offset``)."""
        return await self.write_pieces([bytes(data)], offset)

    async def write_pieces(self, pieces: Sequence[bytes], offset: int | None = None) -> int:
        """Append buffers in order as one write: one hash call and one driver call,
        and the pieces are never joined into a copy."""
        self._check_usable()
        size = sum(map(len, pieces))
        async with self._lock:
            self._check_usable()
            if offset is not None and offset != self._size:
                raise InvalidOffsetWriteError(self.id, offset, self._size)
            hasher, writer = await self._hasher_and_writer()
            try:
                if size >= PARALLEL_HASH:
                    await _hash_while_writing(hasher, writer, pieces)
                else:
                    _hash_pieces(hasher, pieces)
                    await writer.write_pieces(pieces)
            except BaseException:
                # What reached the driver is unknown: trust only what storage says.
                await self._drop_writer()
                raise
            self._size += size
            self._data_exists = True
            self._wrote = True
        return size

    async def _hasher_and_writer(self) -> tuple[ResumableSha256, FileWriter]:
        """The running hash and an open writer that agree on the end of the data. A
        writer opened again learns the size from the store: bytes another program
        appended since the hash was synced are hashed before ours go after them."""
        for _ in range(VALIDATE_RETRIES):
            hasher = await self._sync_hasher()
            writer = await self._open_writer()
            if hasher.size == self._size:
                return hasher, writer
            log.warning(
                "upload %s: the data grew from %d to %d bytes elsewhere; hashing again",
                self.id,
                hasher.size,
                self._size,
            )
            await self._drop_writer()
        raise UploadBusyError(f"upload {self.id} keeps growing through another writer")

    async def _open_writer(self) -> FileWriter:
        if self._writer is None:
            self._writer = await self.driver.writer(self.data_path, append=self._data_exists)
            self._data_exists = True
            self._size = self._writer.size
        return self._writer

    async def _drop_writer(self) -> None:
        writer, self._writer, self._hasher = self._writer, None, None
        self._trusted = False
        if writer is not None:
            try:
                await writer.close()
            except Exception as exc:  # the upload is re-read from storage next time
                log.warning("upload %s: closing writer after a failure: %s", self.id, exc)
        try:
            self._size = (await self.driver.stat(self.data_path)).size
            self._data_exists = True
        except PathNotFoundError:
            self._size, self._data_exists = 0, False

    async def restart(self) -> None:
        """Drop every byte written so far (``O_TRUNC``); the upload keeps its id."""
        self._check_usable()
        async with self._lock:
            if self._writer is not None:
                await self._writer.cancel()
                self._writer = None
            await self.driver.delete_if_present(
                paths.upload_hash_states_dir(self.repository, self.id)
            )
            self._state_stored_at = None
            self._writer = await self.driver.writer(self.data_path, append=False)
            self._data_exists = True
            self._size = 0
            self._hasher = ResumableSha256()
            self._trusted = True
            self._wrote = True

    # hash state -------------------------------------------------------------
    async def _stored_states(self) -> dict[int, str]:
        async def odd(path: str, why: str) -> None:
            log.warning("upload %s: ignoring hash state %s: %s", self.id, path, why)

        return await walk.hash_states(self.driver, self.repository, self.id, odd)

    async def _sync_hasher(self) -> ResumableSha256:
        """The sha256 of the data so far: kept in memory, else the newest stored
        state at or below the size plus a read of the bytes after it."""
        if self._hasher is not None and self._hasher.size == self._size:
            return self._hasher
        self._trusted = False
        hasher = ResumableSha256()
        for offset, path in sorted((await self._stored_states()).items(), reverse=True):
            if offset > self._size:
                await self.driver.delete_if_present(path)  # stale: written before a restart
                continue
            try:
                hasher = ResumableSha256.unmarshal(await self.driver.get_content(path))
            except (HashStateError, PathNotFoundError) as exc:
                log.warning("upload %s: unusable hash state %s: %s", self.id, path, exc)
                continue
            if hasher.size == offset:
                self._state_stored_at = offset
                break
            hasher = ResumableSha256()
        from_zero = hasher.size == 0  # every byte read here: nothing to take on trust
        if hasher.size < self._size:
            log.info(
                "upload %s: hashing %d bytes again (no state at %d)",
                self.id,
                self._size - hasher.size,
                self._size,
            )
            async for chunk in self.driver.read_all(self.data_path, hasher.size, 4 << 20):
                await trio.to_thread.run_sync(hasher.update, chunk)
        if hasher.size != self._size:
            raise SizeMismatchError(self._size, hasher.size)
        self._hasher = hasher
        self._trusted = from_zero or (
            self._state_stored_at == self._size and await self._unchanged()
        )
        return hasher

    async def _unchanged(self) -> bool:
        """Whether the running hash names the data: nobody wrote the data since its
        hash state at its size was stored, and that state is the one this program's
        stamp vouches for. The data shows exactly what it showed when this program
        stored the state (its ``stamp``), or, after a remount, it was last modified no
        later than the state (every writer, the registry too, stores a state after the
        bytes it covers)."""
        try:
            stamp = await self.driver.stamp(self.data_path)
            recorded = self._stamp if self._stamp is not None else await self._recorded_stamp()
            if recorded is not None and stamp == recorded.data:
                return self._vouches_for_hash(recorded)
            log.debug("upload %s: the data's stamp %r is not %r", self.id, stamp, recorded)
            if not self.driver.writes_in_place:  # S3: a state may be another writer's
                return False
            info = await self.driver.stat(self.data_path)
        except PathNotFoundError:
            return False
        state = paths.upload_hash_state(self.repository, self.id, CANONICAL, info.size)
        try:
            return (await self.driver.stat(state)).mod_time >= info.mod_time
        except PathNotFoundError:
            return False

    def _vouches_for_hash(self, stamp: Stamp) -> bool:
        hasher = self._hasher
        if hasher is not None and hasher.hexdigest() == stamp.sha256:
            return True
        log.warning(
            "upload %s: its hash state at %d is another writer's; hashing the data again",
            self.id,
            self._size,
        )
        return False

    async def _store_hash_state(self) -> None:
        """Store the state at the current size, unless it is known to be stored. Only
        a trusted state is stored: one taken on trust would pass its doubt on."""
        if self._state_stored_at == self._size or not self._trusted:
            return
        if self._hasher is not None and self._hasher.size == self._size:
            path = paths.upload_hash_state(self.repository, self.id, CANONICAL, self._size)
            await self.driver.put_content(path, self._hasher.marshal())
            self._state_stored_at = self._size

    # ending --------------------------------------------------------------------
    async def flush(self) -> None:
        """Persist the data and the hash state, and stay open for more writes."""
        if self._state != "open":
            return
        async with self._lock:
            writer = self._writer
            try:
                await self._close_writer(commit=False, store_state=False)
            except BaseException:
                await self._drop_writer()
                raise
            if writer is not None:
                await self._check_still_there()
                await self._store_hash_state()
                await self._take_stamp(writer)

    async def _take_stamp(self, writer: FileWriter) -> None:
        """Remember the data as ``writer`` left it, with the state just stored at its
        size. (A writer's bytes always follow exactly the bytes its hash covers: the
        driver refuses to append after another program's, FileChangedError.)"""
        hasher = self._hasher
        if not self._trusted or self._state_stored_at != self._size or hasher is None:
            self._stamp = None
            return
        data = writer.stamp
        if data is None:  # a writer that cannot tell: ask the store
            try:
                data = await self.driver.stamp(self.data_path)
            except PathNotFoundError:
                data = None
        if data is None:
            self._stamp = None
            return
        self._stamp = Stamp(data, hasher.hexdigest())
        # recorded for any mount, after this one is gone
        record = {"offset": self._size, "stamp": data, "sha256": self._stamp.sha256}
        path = paths.upload_stamp(self.repository, self.id)
        await self.driver.put_content(path, json.dumps(record).encode())

    async def _recorded_stamp(self) -> Stamp | None:
        """The stamp a mount recorded beside the state at the current size, if any."""
        try:
            raw = await self.driver.get_content(paths.upload_stamp(self.repository, self.id))
            record = json.loads(raw)
        except (PathNotFoundError, UnsafeEntryError, ValueError):
            return None
        if not isinstance(record, dict) or record.get("offset") != self._size:
            return None
        sha256 = record.get("sha256")
        if not isinstance(sha256, str):  # vouches for no state in particular
            return None
        return Stamp(_frozen(record.get("stamp")), sha256)

    async def _check_still_there(self) -> None:
        """Raise UploadUnknownError, leaving nothing behind, when the upload was removed
        (rm in another mount, purge-uploads, a registry DELETE) while this one wrote:
        what was just stored would otherwise be an upload directory without its
        ``startedat``. Checked after the write, so a removal at any moment before it
        is seen; one after it removes what was written too."""
        if await self.driver.exists(paths.upload_started_at(self.repository, self.id)):
            return
        await self.driver.delete_if_present(self.dir_path)
        self._state = "removed"
        raise UploadUnknownError(self.id)

    async def close(self) -> None:
        """Persist the data and the hash state; the upload can be resumed by id."""
        await self.flush()
        if self._state == "open":
            self._state = "closed"

    async def _close_writer(self, commit: bool, store_state: bool = True) -> None:
        if self._writer is None:
            return
        writer, self._writer = self._writer, None
        if commit:
            await writer.commit()
        await writer.close()
        if store_state:
            await self._store_hash_state()

    async def _commit_data(self) -> object | None:
        """Make the data final and durable before it is moved into ``blobs/``: through
        the open writer, or one opened again for the purpose (closed uploads too).
        Returns the stamp of what the commit left (None when there was nothing)."""
        if self._writer is None and self._data_exists:
            # judged before the commit, which gives the data a new stamp on S3
            if self._hasher is None or self._hasher.size != self._size:
                await self._hasher_from_state()
            elif self._trusted and not await self._unchanged():
                self._trusted = False  # written elsewhere since this program stored it
            try:
                self._writer = await self.driver.writer(self.data_path, append=True)
            except PathNotFoundError:
                self._data_exists = False  # moved by an interrupted finish: validate says
        writer = self._writer
        if writer is not None and writer.size != self._size:
            self._trusted = False  # the writer found more (or fewer) bytes than hashed
        # No hash state yet: a finish stores it once validated, before its move.
        await self._close_writer(commit=True, store_state=False)
        return None if writer is None else writer.stamp

    async def _hasher_from_state(self) -> None:
        """The running hash from the state at exactly the data's size, trusted while
        it vouches for the data (``_unchanged``); no byte is read here."""
        self._hasher, self._trusted = None, False
        path = paths.upload_hash_state(self.repository, self.id, CANONICAL, self._size)
        try:
            hasher = ResumableSha256.unmarshal(await self.driver.get_content(path))
        except (HashStateError, PathNotFoundError):
            return
        if hasher.size == self._size:
            self._hasher, self._state_stored_at = hasher, self._size
            self._trusted = await self._unchanged()

    async def cancel(self) -> None:
        """Remove every resource of the upload."""
        async with self._lock:
            if self._writer is not None:
                writer, self._writer = self._writer, None
                await writer.cancel()
            await self.driver.delete_if_present(self.dir_path)
            self._state = "cancelled"

    async def finish(self, digest: Digest, size: int | None = None) -> BlobInfo:
        """Validate against ``digest``, move into ``blobs/``, link, clean up.

        A mismatch raises and leaves the upload as it was, to be finished again with
        the right digest (or resumed)."""
        self._check_usable()
        async with self._lock:
            self._check_usable()
            committed = await self._commit_data()
            try:
                validated = await self._validate_with_retries(digest, size, committed)
            except DigestMismatchError:
                await self._store_hash_state()  # the next finish need not read again
                raise
            return await self._place_blob(digest, validated)

    @trio.lowlevel.enable_ki_protection
    async def _place_blob(
        self, digest: Digest, validated: tuple[Digest, object | None] | None
    ) -> BlobInfo:
        """Move the validated data into ``blobs/``, link it, remove the upload. Once
        begun this runs to its end: Ctrl-C is taken at the next checkpoint outside it
        and a cancellation waits for it (each store call still ends by its own
        deadline), so no interrupt leaves an upload beside its blob; a kill here
        leaves what UPLOADS.md's table says, and its repair."""
        with trio.CancelScope(shield=True):
            if validated is None:  # data already moved by an interrupted finish
                canonical = digest
            else:
                canonical, version = validated
                # the state at the final size records what the move takes away, so a
                # finish cut short before its link can be told and completed
                await self._store_hash_state()
                crash_point("finish:before-move")
                await self._move_into_place(canonical, version)
                crash_point("finish:before-link")
            aliases = [digest] if digest != canonical else []
            await self._link_blob(canonical, aliases)
            crash_point("finish:before-cleanup")
            await self.driver.delete_if_present(self.dir_path)
            self._state = "finished"
            return await self.blobs.stat(canonical)

    async def _validate_with_retries(
        self, digest: Digest, size: int | None, committed: object | None
    ) -> tuple[Digest, object | None] | None:
        for attempt in range(VALIDATE_RETRIES + 1):
            try:
                return await self._validate(digest, size, committed)
            except (SizeMismatchError, PathNotFoundError) as exc:
                # Symptoms of an eventually consistent backend; a digest mismatch is not.
                if attempt == VALIDATE_RETRIES:
                    raise
                log.info(
                    "upload %s: validation attempt %d failed (%s); retrying",
                    self.id,
                    attempt + 1,
                    exc,
                )
                await trio.sleep(VALIDATE_BACKOFF * (attempt + 1))
                await self._drop_writer()
        raise AssertionError("unreachable")

    async def _validate(
        self, digest: Digest, size: int | None, committed: object | None
    ) -> tuple[Digest, object | None] | None:
        """The canonical digest of the data and the version of it that was checked
        (the move takes only that version), or None when the data is gone because an
        earlier finish moved it to the blob already.

        The running hash names the data only while it is trusted, covers exactly the
        stored size, and the stored version is the one this finish's commit left;
        otherwise the committed bytes are read (never completing another writer's
        pending write) and hashed."""
        try:
            stored = (await self.driver.stat_committed(self.data_path)).size
            version: object | None = await self.driver.committed_stamp(self.data_path)
        except PathNotFoundError:
            if digest.algorithm == CANONICAL and await self.blobs.exists(digest):
                return None  # a finish that crashed after its move: link and clean up
            await self._check_still_there()  # removed meanwhile: not an empty upload
            if self._size != 0:
                raise
            stored, version = 0, None
        if size is not None and size != stored:
            raise SizeMismatchError(size, stored)
        hasher = self._hasher
        covers = hasher is not None and hasher.size == stored == self._size
        if not (self._trusted and covers and version == committed):
            hasher = None  # the stored bytes are read and hashed instead
        others = [digest.algorithm] if digest.algorithm != CANONICAL else []
        hexes: dict[str, str] = {}
        if hasher is None or others:
            hasher, hexes = await self._hash_stored(stored, others, version)
        canonical = Digest(CANONICAL, hasher.hexdigest())
        actual = canonical if not others else Digest(digest.algorithm, hexes[digest.algorithm])
        if actual != digest:
            raise DigestMismatchError(digest, actual)
        return canonical, version

    async def stored_digest(self) -> Digest | None:
        """The sha256 of the upload's committed bytes (None without any): from a hash
        state that vouches for them, else by reading them, never completing a
        pending write (a check changes nothing)."""
        async with self._lock:
            try:
                self._size = (await self.driver.stat_committed(self.data_path)).size
                await self._hasher_from_state()
                hasher = self._hasher
                if hasher is None or not self._trusted:
                    version = await self.driver.committed_stamp(self.data_path)
                    hasher, _ = await self._hash_stored(self._size, (), version)
            except PathNotFoundError:
                return None
            return Digest(CANONICAL, hasher.hexdigest())

    async def _hash_stored(
        self, stored: int, others: Sequence[str], version: object | None
    ) -> tuple[ResumableSha256, dict[str, str]]:
        """The sha256 (and ``others``) of the committed bytes, read from the store
        without completing any pending write: what the finish names when the running
        hash does not provably cover them (another writer, a resumed state nobody here
        vouches for). It becomes the running hash. The data must still be ``version``
        afterwards (else SizeMismatchError: the finish tries again)."""
        if stored:
            log.info(
                "upload %s: hashing its %d stored bytes (the running hash does not"
                " provably cover them)",
                self.id,
                stored,
            )
        hasher = ResumableSha256()
        extra = {algorithm: hashlib.new(algorithm) for algorithm in others}

        def update(chunk: bytes) -> None:
            hasher.update(chunk)
            for other in extra.values():
                other.update(chunk)

        if stored:
            async with await self.driver.committed_reader(self.data_path, 0) as reader:
                while chunk := await reader.read(4 << 20):
                    await trio.to_thread.run_sync(update, chunk)
        if hasher.size != stored:  # changed while read: nothing here can be trusted
            raise SizeMismatchError(stored, hasher.size)
        if version is not None and await self.driver.committed_stamp(self.data_path) != version:
            raise SizeMismatchError(stored, -1)  # replaced while read
        self._hasher, self._size, self._trusted = hasher, stored, True
        return hasher, {algorithm: h.hexdigest() for algorithm, h in extra.items()}

    async def _move_into_place(self, canonical: Digest, version: object | None) -> None:
        if await self.blobs.exists(canonical):
            return  # content addressed: the same bytes are there already
        target = paths.blob_data(canonical)
        try:
            await self.driver.move(self.data_path, target, expect=version)
        except PathNotFoundError:
            if canonical != EMPTY_SHA256:
                raise
            await self.driver.put_content(target, b"")  # nothing was ever written


def _frozen(value: object) -> object:
    """A stamp read back from JSON, as the driver gives it (lists become tuples)."""
    return tuple(_frozen(v) for v in value) if isinstance(value, list) else value


def _hash_pieces(hasher: ResumableSha256, pieces: Sequence[bytes]) -> None:
    for piece in pieces:
        hasher.update(piece)


async def _hash_while_writing(
    hasher: ResumableSha256, writer: FileWriter, pieces: Sequence[bytes]
) -> None:
    """Hash in a worker thread while the driver writes; raise the writer's own error."""
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.to_thread.run_sync, _hash_pieces, hasher, pieces)
            await writer.write_pieces(pieces)
    except BaseExceptionGroup as group:
        raise group.exceptions[0] from None


class UploadStore:
    """The uploads of one repository."""

    def __init__(
        self, driver: StorageDriver, blobs: BlobStore, link_blob: LinkBlob, name: str
    ) -> None:
        self.driver = driver
        self.blobs = blobs
        self._link_blob = link_blob
        self.repository = name

    def _upload(self, upload_id: str, started: datetime, size: int, exists: bool) -> Upload:
        return Upload(
            self.driver,
            self.blobs,
            self._link_blob,
            self.repository,
            upload_id,
            started,
            size,
            exists,
        )

    async def create(self) -> Upload:
        upload_id = str(uuid.uuid4())
        started = datetime.now(UTC).replace(microsecond=0)
        await self.driver.put_content(
            paths.upload_started_at(self.repository, upload_id), format_started_at(started)
        )
        upload = self._upload(upload_id, started, 0, False)
        await upload._open_writer()  # the data file exists from the start, as the registry's
        upload._hasher = ResumableSha256()
        upload._trusted = True
        return upload

    async def started_at(self, upload_id: str) -> datetime:
        if not UUID_RE.fullmatch(upload_id):
            raise UploadUnknownError(upload_id)
        try:
            content = await self.driver.get_content(
                paths.upload_started_at(self.repository, upload_id)
            )
        except PathNotFoundError:
            raise UploadUnknownError(upload_id) from None
        try:
            return parse_started_at(content)
        except ValueError:
            log.warning("upload %s: startedat %r does not parse", upload_id, content)
            return datetime.fromtimestamp(0, UTC)

    async def resume(self, upload_id: str, stamp: Stamp | None = None) -> Upload:
        """Open an upload again by id; the hash state is restored when first needed,
        and trusted only while the data shows ``stamp`` (what this program saw when
        it stored that state)."""
        started = await self.started_at(upload_id)
        try:
            info = await self.driver.stat(paths.upload_data(self.repository, upload_id))
            size, exists = info.size, True
        except PathNotFoundError:
            size, exists = 0, False
        upload = self._upload(upload_id, started, size, exists)
        upload._stamp = stamp
        return upload

    async def data_size(self, upload_id: str) -> int:
        """The size of an upload's data as the store shows it now (0 before its first
        byte), with one stat: what a listing of uploads shows. UploadUnknownError
        when there is no such upload."""
        try:
            return (await self.driver.stat(paths.upload_data(self.repository, upload_id))).size
        except PathNotFoundError:
            await self.started_at(upload_id)  # an upload without data yet, or none
            return 0

    async def set_name(self, upload_id: str, file_name: str) -> None:
        await self.driver.put_content(
            paths.upload_name(self.repository, upload_id), file_name.encode()
        )

    async def name_of(self, upload_id: str) -> str:
        """The name an upload shows under; its id when nobody named it, or when its
        name cannot be read without following a symbolic link."""
        try:
            raw = await self.driver.get_content(paths.upload_name(self.repository, upload_id))
            return raw.decode()
        except (PathNotFoundError, UnsafeEntryError, UnicodeDecodeError):
            return upload_id

    async def ids(self) -> list[str]:
        return await walk.upload_ids(self.driver, self.repository)

    async def by_name(self) -> dict[str, str]:
        """Every upload by the name it shows under (``walk.by_name``)."""
        ids = await self.ids()
        return walk.by_name({upload_id: await self.name_of(upload_id) for upload_id in ids})

    async def cancel(self, upload_id: str) -> None:
        upload = await self.resume(upload_id)
        await upload.cancel()

    async def interrupted_finish(self, upload_id: str) -> Digest | None:
        """The blob a finish moved this upload's data into before it was cut short
        (a kill or a full disk between the move and the link), or None.

        Such an upload has no ``data``, and its newest hash state (over more than 0
        bytes, stored by the finish's commit) names a blob of exactly that size:
        content addressed, so the blob is the upload's data, validated. An upload
        with a symbolic link on the way is none (it is left alone)."""
        try:
            return await self._interrupted_finish(upload_id)
        except UnsafeEntryError:
            return None

    async def _interrupted_finish(self, upload_id: str) -> Digest | None:
        if await self.driver.exists(paths.upload_data(self.repository, upload_id)):
            return None
        states = await walk.hash_states(self.driver, self.repository, upload_id)
        size, path = max(states.items(), default=(0, ""))
        if size == 0:
            return None
        try:
            state = ResumableSha256.unmarshal(await self.driver.get_content(path))
        except (HashStateError, PathNotFoundError):
            return None
        digest = Digest(CANONICAL, state.hexdigest())
        try:
            info = await self.blobs.stat(digest)
        except BlobUnknownError:
            return None
        return digest if state.size == size == info.size else None

    async def complete_interrupted_finish(self, upload_id: str, digest: Digest) -> None:
        """Do what the cut-short finish had left: link the blob, then clean up."""
        await self._link_blob(digest, [])
        await self.driver.delete_if_present(paths.upload_dir(self.repository, upload_id))
        log.warning(
            "upload %s of %s: completed a finish cut short after its move: linked %s",
            upload_id,
            self.repository,
            digest,
        )
