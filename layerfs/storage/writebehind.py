"""Write-behind for uploads: a write returns once its buffer is queued, so the next
one can arrive while earlier ones are hashed and stored.

FUSE waits for each WRITE's answer before it sends the next, so storing inline would
add the hashing and disk time to every request. Here at most ``depth`` buffers wait
(bounded memory, no spool); a failure is kept and reported by the next write or
flush, where a program sees it, and the upload is then as storage says it is.
"""

from __future__ import annotations

import trio

from .errors import InvalidOffsetWriteError
from .uploads import Upload

DEFAULT_DEPTH = 16


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
        self._raise_pending()
        if offset != self.size:
            raise InvalidOffsetWriteError(self.upload.id, offset, self.size)
        self._queued += len(data)
        self._idle = trio.Event() if self._idle.is_set() else self._idle
        await self._send.send(data)
        return len(data)

    async def drain(self) -> None:
        """Wait until every queued buffer is stored (or failed)."""
        await self._idle.wait()

    async def flush(self) -> None:
        """Store what is queued, then the data and hash state; report a failure."""
        await self.drain()
        self._raise_pending()
        await self.upload.flush()

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            await self._send.aclose()

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
        self._queued = 0
        self._idle.set()

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
