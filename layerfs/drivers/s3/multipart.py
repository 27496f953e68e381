"""Writing an object: an S3 multipart upload on its key. ``close`` leaves the upload
pending (its parts are the file's bytes, found again with ListMultipartUploads and
ListParts), ``commit`` completes it, ``cancel`` aborts it."""

from __future__ import annotations

import io
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future
from typing import TYPE_CHECKING

import trio
from botocore.exceptions import BotoCoreError, ClientError

from ..base import (
    BackendUnavailableError,
    FileChangedError,
    FileWriter,
    PathNotFoundError,
    WriterClosedError,
)
from .requests import driver_error

if TYPE_CHECKING:
    from .driver import S3Driver

MIN_PART = 5 << 20  # S3's smallest part but the last
DEFAULT_PART = 10 << 20
PARTS_IN_FLIGHT = 4


def parts_stamp(upload_id: str, parts: Sequence[dict]) -> object:
    return ("parts", upload_id, tuple((p["PartNumber"], p["ETag"], p["Size"]) for p in parts))


class MultipartWriter(FileWriter):
    def __init__(self, driver: S3Driver, key: str, upload_id: str, parts: list[dict]) -> None:
        self.driver, self.key, self.upload_id = driver, key, upload_id
        self._parts = [
            {"PartNumber": p["PartNumber"], "ETag": p["ETag"], "Size": p["Size"]} for p in parts
        ]
        # bytes not yet in a part, as written (no copy until a part is cut from them)
        self._buffer: deque[bytes | memoryview] = deque()
        self._buffered = 0
        self._state = "open"
        self._committed: object | None = None  # the object's stamp once completed
        self._lock = trio.Lock()
        # parts on their way: (number, size, future); the next fills while they upload
        self._inflight: list[tuple[int, int, Future[dict]]] = []

    @property
    def size(self) -> int:
        stored = sum(p["Size"] for p in self._parts)
        return stored + sum(n for _, n, _ in self._inflight) + self._buffered

    def _check_open(self) -> None:
        if self._state != "open":
            raise WriterClosedError(f"writer for {self.key} is {self._state}")

    async def merge_short_last_part(self) -> None:
        """Only the last part may be short; before appending after one, complete the
        upload, start a new one and bring the object back as its first bytes (as the
        registry's driver does)."""
        if not self._parts or self._parts[-1]["Size"] >= MIN_PART:
            return
        d, size = self.driver, self.size
        await self.complete()
        resp = await d.requests.call(
            d.client.create_multipart_upload, Bucket=d.bucket, Key=self.key
        )
        self.upload_id, self._parts = resp["UploadId"], []
        await self.adopt_object(size)

    async def adopt_object(self, size: int) -> None:
        """Make the object now at the key the first ``size`` bytes of this upload:
        copied on the server when it can be a part, else read into the buffer."""
        d = self.driver
        if size >= MIN_PART:
            part = await d.requests.call(
                d.client.upload_part_copy,
                Bucket=d.bucket,
                Key=self.key,
                UploadId=self.upload_id,
                PartNumber=1,
                CopySource={"Bucket": d.bucket, "Key": self.key},
            )
            self._parts = [{"PartNumber": 1, "ETag": part["CopyPartResult"]["ETag"], "Size": size}]
        elif size:
            self._hold(await d.get_content("/" + self.key[len(d.prefix) :]))

    async def write_pieces(self, pieces: Sequence[bytes]) -> int:
        self._check_open()
        async with self._lock:
            await self.merge_short_last_part()  # only once there is more to add
            for piece in pieces:
                self._hold(piece)
            while self._buffered >= self.driver.part_size:
                await self._upload_part(self._take(self.driver.part_size))
        return sum(map(len, pieces))

    def _hold(self, data: bytes | bytearray | memoryview) -> None:
        if data:  # kept by reference: only immutable bytes may be
            self._buffer.append(data if isinstance(data, bytes) else bytes(data))
            self._buffered += len(data)

    def _take(self, size: int) -> list[bytes | memoryview]:
        """The first ``size`` buffered bytes as pieces; a piece that straddles the end
        is split by views, not copied."""
        pieces: list[bytes | memoryview] = []
        while size:
            piece = self._buffer.popleft()
            if len(piece) > size:
                view = memoryview(piece)
                piece, rest = view[:size], view[size:]
                self._buffer.appendleft(rest)
            pieces.append(piece)
            size -= len(piece)
            self._buffered -= len(piece)
        return pieces

    async def _upload_part(self, pieces: list[bytes | memoryview]) -> None:
        """Start uploading a part in the driver's pool; wait only when too many are on
        their way. A failure is raised here or by close/commit."""
        d = self.driver
        if len(self._inflight) >= PARTS_IN_FLIGHT:
            await self._finish_oldest()
        number = len(self._parts) + len(self._inflight) + 1
        body = PartBody(pieces)
        future = d.pool.submit(
            d.client.upload_part,
            Bucket=d.bucket,
            Key=self.key,
            UploadId=self.upload_id,
            PartNumber=number,
            Body=body,
            ContentLength=len(body),
        )
        self._inflight.append((number, len(body), future))

    async def _finish_oldest(self) -> None:
        number, size, future = self._inflight.pop(0)
        try:
            resp = await self.driver.requests.wait(future)
        except ClientError as exc:
            await self._drain(quiet=True)
            raise await self._taken_over(driver_error(exc, self.key)) from exc
        except BotoCoreError as exc:
            await self._drain(quiet=True)
            raise BackendUnavailableError(f"s3: part {number} of {self.key}: {exc}") from exc
        self._parts.append({"PartNumber": number, "ETag": resp["ETag"], "Size": size})

    async def _drain(self, quiet: bool = False) -> None:
        """Wait for the parts on their way; ``quiet`` (after a failure): give them up,
        so a store that stopped answering costs one timeout, not one per part."""
        while self._inflight:
            if quiet:
                _, _, future = self._inflight.pop(0)
                future.cancel()  # one not yet started never starts; one running is left
            else:
                await self._finish_oldest()

    async def _flush(self) -> None:
        if self._buffered:
            await self._upload_part(self._take(self._buffered))
        await self._drain()

    async def complete(self) -> object:
        """Complete the upload into the object; returns the object's stamp."""
        d = self.driver
        if not self._parts:  # S3 cannot complete an empty upload
            await d.abort(self.key, self.upload_id)
            resp = await d.requests.call(
                d.client.put_object, Bucket=d.bucket, Key=self.key, Body=b""
            )
            return ("object", resp["ETag"], 0)
        try:
            resp = await d.requests.call(
                d.client.complete_multipart_upload,
                Bucket=d.bucket,
                Key=self.key,
                UploadId=self.upload_id,
                MultipartUpload={
                    "Parts": [
                        {"PartNumber": p["PartNumber"], "ETag": p["ETag"]} for p in self._parts
                    ]
                },
            )
        except PathNotFoundError as exc:
            raise await self._taken_over(exc) from exc
        return ("object", resp.get("ETag"), sum(p["Size"] for p in self._parts))

    async def _taken_over(self, error: Exception) -> Exception:
        """NoSuchUpload: someone else ended this upload. Where the key holds an object
        now, another writer completed it (a read on another mount completes a pending
        write): this writer's bytes can no longer follow its own, FileChangedError.
        Where it holds nothing, the file was removed: the missing path it is."""
        if not isinstance(error, PathNotFoundError) or await self.driver.head(self.key) is None:
            return error
        return FileChangedError(f"s3: {self.key}: another writer completed this write")

    async def close(self) -> None:
        if self._state == "closed":
            raise WriterClosedError(f"writer for {self.key} is already closed")
        async with self._lock:
            if self._state == "open":
                await self._flush()
                if not self._parts:  # keep an empty file findable: one empty part
                    await self._upload_part([])
                    await self._drain()
            self._state = "closed"

    @property
    def stamp(self) -> object | None:
        """Committed: the object it made (``committed_stamp``); closed: its parts."""
        if self._committed is not None:
            return self._committed
        return parts_stamp(self.upload_id, self._parts) if self._state == "closed" else None

    async def cancel(self) -> None:
        self._check_open()
        d = self.driver
        async with self._lock:
            self._state = "cancelled"
            self._buffer.clear()
            self._buffered = 0
            await self._drain(quiet=True)
            await d.abort(self.key, self.upload_id)
            await d.requests.call(d.client.delete_object, Bucket=d.bucket, Key=self.key)

    async def commit(self) -> None:
        self._check_open()
        async with self._lock:
            await self._flush()
            self._committed = await self.complete()
            self._state = "committed"


class PartBody(io.RawIOBase):
    """A part's bytes for botocore, read across the pieces that were written. Given
    bytes, botocore would wrap them in a BytesIO and copy them twice more (signing
    reads 1 MiB blocks, sending 16 KiB blocks); reads here hand out views, and the
    pieces never need joining. Seekable, so botocore can rewind it for a retry."""

    def __init__(self, pieces: Sequence[bytes | memoryview]) -> None:
        super().__init__()
        self._pieces = [memoryview(piece) for piece in pieces if len(piece)]
        self._size = sum(len(piece) for piece in self._pieces)
        self._pos = self._index = self._offset = 0

    def __len__(self) -> int:
        return self._size

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = min(max(0, base + offset), self._size)
        self._index, self._offset = 0, self._pos
        while self._index < len(self._pieces) and self._offset >= len(self._pieces[self._index]):
            self._offset -= len(self._pieces[self._index])
            self._index += 1
        return self._pos

    def read(self, size: int | None = -1) -> bytes | memoryview:  # type: ignore[override]
        """At most ``size`` bytes, never crossing a piece (a short read, as raw files
        give); ``b""`` at the end."""
        if size is None or size < 0:
            rest = b"".join(self._pieces[self._index :])[self._offset :]
            self.seek(0, io.SEEK_END)
            return rest
        if self._index >= len(self._pieces) or size == 0:
            return b""
        piece = self._pieces[self._index]
        end = min(len(piece), self._offset + size)
        out = piece[self._offset : end]
        self._pos += end - self._offset
        self._offset = end
        if end == len(piece):
            self._index, self._offset = self._index + 1, 0
        return out
