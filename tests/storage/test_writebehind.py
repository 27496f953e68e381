"""Write-behind: writes return before they are stored; order, offsets and failures."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import pytest
import trio

from layerfs.drivers import FileWriter, StorageDriver, StorageDriverError
from layerfs.storage import Digest, InvalidOffsetWriteError, Registry
from layerfs.storage.writebehind import WriteBehind

from ..wrappers import Passthrough


async def test_queued_writes_are_stored_in_order(driver: StorageDriver) -> None:
    repo = Registry(driver).repository("wb/order")
    upload = await repo.uploads.create()
    pieces = [bytes([i]) * (100_000 + i) for i in range(40)]
    async with trio.open_nursery() as nursery:
        pipe = WriteBehind(upload, nursery, depth=4)
        for piece in pieces:
            assert await pipe.write_at(pipe.size, piece) == len(piece)
        with pytest.raises(InvalidOffsetWriteError):
            await pipe.write_at(0, b"not at the end")
        await pipe.flush()
        await pipe.aclose()
    data = b"".join(pieces)
    assert upload.size == len(data)
    assert (await upload.finish(Digest.of(data))).size == len(data)


class FailingWriter(FileWriter):
    def __init__(self, inner: FileWriter, budget: list[int]) -> None:
        self.inner, self.budget = inner, budget

    @property
    def size(self) -> int:
        return self.inner.size

    async def write_pieces(self, pieces: Sequence[bytes]) -> int:
        size = sum(map(len, pieces))
        if self.budget[0] < size:
            raise StorageDriverError("backend refused the write")
        self.budget[0] -= size
        return await self.inner.write_pieces(pieces)

    async def close(self) -> None:
        await self.inner.close()

    async def cancel(self) -> None:
        await self.inner.cancel()

    async def commit(self) -> None:
        await self.inner.commit()


class FailingDriver(Passthrough):
    """Writers accept ``budget`` bytes in all, then fail."""

    def __init__(self, inner: StorageDriver, budget: int) -> None:
        super().__init__(inner)
        self.budget = [budget]

    async def writer(self, path: str, append: bool = False) -> FileWriter:
        return FailingWriter(await self.inner.writer(path, append), self.budget)


async def test_failure_is_reported_by_the_next_call(driver: StorageDriver) -> None:
    failing = FailingDriver(driver, budget=3 << 20)
    repo = Registry(failing).repository("wb/fail")
    upload = await repo.uploads.create()
    chunk = b"x" * (1 << 20)
    async with trio.open_nursery() as nursery:
        pipe = WriteBehind(upload, nursery, depth=2)
        with pytest.raises(StorageDriverError, match="refused"):
            for _ in range(16):
                await pipe.write_at(pipe.size, chunk)
            await pipe.flush()
        await pipe.aclose()
    # the upload is as storage says: a prefix that can be resumed and finished
    resumed = await repo.uploads.resume(upload.id)
    assert resumed.size % (1 << 20) == 0 and resumed.size <= 3 << 20
    failing.budget[0] = 1 << 30
    rest = 16 * len(chunk) - resumed.size
    await resumed.write(b"x" * rest)
    expected = hashlib.sha256(chunk * 16).hexdigest()
    assert (await resumed.finish(Digest("sha256", expected))).size == 16 << 20
