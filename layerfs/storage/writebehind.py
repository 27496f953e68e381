"""Write-behind for uploads: a write returns once its buffer is queued, so the next
one can arrive while earlier ones are hashed and stored.

FUSE waits for each WRITE's answer before it sends the next, so storing inline would
add the hashing and disk time to every request. Here at most ``depth`` buffers wait
(bounded memory, no spool); a failure is kept and reported by the next write or
flush, where a program sees it, and the upload is then as storage says it is.
"""

from __future__ import annotations

import trio

from ..deadline import no_request_deadline, within_request
from .errors import InvalidOffsetWriteError, UploadClosedError
from .uploads import Upload

DEFAULT_DEPTH = 16
ZEROS = bytes(1 << 20)  # what a gap is filled with, in pieces of this size


class WriteBehind:
    def __init__(self, upload: Upload, nursery: trio.Nursery, depth: int = DEFAULT_DEPTH) -> None:
        self.upload = upload
        self._send, receive = trio.open_memory_channel[bytes](depth)
        self._queued = 0  # bytes accepted but not yet stored
        self._idle = trio.Event()
        self._idle.set()
        self._error: BaseException | None = None
        self._closed = False
        nursery.start_soon(self._consume, receive)

    @property
    def size(self) -> int:
        """The end of the upload as writers see it: stored plus queued bytes."""
        return self.upload.size + self._queued

    async def write_at(self, offset: int, data: bytes) -> int:
        """Queue ``data`` at ``offset``: the end, or past it, where the gap is filled
        with zeros (the bytes a sparse file's hole reads as, so ``cp`` of one works)."""
        if self._closed:
            raise UploadClosedError(f"upload {self.upload.id} is closed")
        self._raise_pending()
        if offset < self.size:
            raise InvalidOffsetWriteError(self.upload.id, offset, self.size)
        gap = offset - self.size
        while gap > 0:
            zeros = ZEROS if gap >= len(ZEROS) else ZEROS[:gap]
            await self._queue(zeros)
            gap -= len(zeros)
        if data:
            await self._queue(data)
        return len(data)

    @property
    def queued(self) -> int:
        """Bytes accepted and not yet stored."""
        return self._queued

    async def _queue(self, data: bytes) -> None:
        if self._closed:  # closed while this write waited for room
            raise UploadClosedError(f"upload {self.upload.id} is closed")
        self._queued += len(data)
        self._idle = trio.Event() if self._idle.is_set() else self._idle
        try:
            with within_request(f"upload {self.upload.id}: queueing a write"):
                await self._send.send(data)
        except BaseException:
            self._queued -= len(data)
            if self._queued == 0:
                self._idle.set()
            raise

    async def drain(self) -> None:
        """Wait until every queued buffer is stored (or failed), within the request's
        deadline."""
        with within_request(f"upload {self.upload.id}: storing queued writes"):
            await self._idle.wait()

    async def flush(self) -> None:
        """Store what is queued, then the data and hash state; report a failure."""
        await self.drain()
        self._raise_pending()
        await self.upload.flush()

    async def aclose(self) -> None:
        self._closed = True
        await self._send.aclose()  # idempotent; the consumer stores what is queued

    def _raise_pending(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    async def _consume(self, receive: trio.MemoryReceiveChannel[bytes]) -> None:
        """Store queued buffers in batches up to the next multiple of the driver's
        ``write_batch``: one hash call and one driver write per batch costs far less
        than one per 1 MiB FUSE request, and the batch's buffers go down as they are
        (a writev on disk, a part read across them on S3), never joined."""
        batch_size = self.upload.driver.write_batch
        try:
            with no_request_deadline():  # started by an open, it outlives that request
                await self._consume_batches(receive, batch_size)
        finally:  # ended or cancelled: nothing will be stored, so nobody may wait for it
            self._closed = True
            self._queued = 0
            self._idle.set()

    async def _consume_batches(
        self, receive: trio.MemoryReceiveChannel[bytes], batch_size: int
    ) -> None:
        async with receive:
            async for first in receive:
                batch = [first]
                size = len(first)
                target = batch_size - self.upload.size % batch_size
                while size < target:
                    try:
                        batch.append(receive.receive_nowait())
                    except (trio.WouldBlock, trio.EndOfChannel):
                        break
                    size += len(batch[-1])
                await self._store(batch, size)

    async def _store(self, batch: list[bytes], size: int) -> None:
        if self._error is None:
            try:
                await self.upload.write_pieces(batch)
            except Exception as exc:
                self._error = exc  # reported by the next write or flush
        self._queued -= size
        if self._queued == 0:
            self._idle.set()


__all__ = ["DEFAULT_DEPTH", "WriteBehind"]
