"""A driver that fails some calls, drawn with the example so a failure replays."""

from __future__ import annotations

import random

import trio

from layerfs.drivers import (
    BackendUnavailableError,
    FileInfo,
    FileWriter,
    Reader,
    StorageDriver,
)

from ..wrappers import HookedWriter, Passthrough


class FaultyDriver(Passthrough):
    """Fails (BackendUnavailableError) or delays any driver call at random while
    ``enabled``; a seeded generator keeps a run repeatable."""

    def __init__(self, inner: StorageDriver, seed: int, rate: float = 0.08) -> None:
        super().__init__(inner)
        self.random = random.Random(seed)
        self.rate = rate
        self.enabled = True
        self.failed = 0

    async def _maybe(self, what: str) -> None:
        if not self.enabled:
            return
        roll = self.random.random()
        if roll < self.rate:
            self.failed += 1
            raise BackendUnavailableError(f"injected failure of {what}")
        if roll < 2 * self.rate:
            await trio.sleep(0.001)

    async def _before_write_call(self, what: str) -> None:
        if what != "cancel":  # a cancel always goes through: it cleans up
            await self._maybe(what)

    async def get_content(self, path: str) -> bytes:
        await self._maybe("get_content")
        return await self.inner.get_content(path)

    async def put_content(self, path: str, content: bytes) -> None:
        await self._maybe("put_content")
        await self.inner.put_content(path, content)

    async def reader(self, path: str, offset: int = 0) -> Reader:
        await self._maybe("reader")
        return await self.inner.reader(path, offset)

    async def writer(self, path: str, append: bool = False) -> FileWriter:
        await self._maybe("writer")
        return HookedWriter(await self.inner.writer(path, append), self._before_write_call)

    async def stat(self, path: str) -> FileInfo:
        await self._maybe("stat")
        return await self.inner.stat(path)

    async def list(self, path: str) -> list[str]:
        await self._maybe("list")
        return await self.inner.list(path)

    async def move(self, source: str, dest: str, expect: object | None = None) -> None:
        await self._maybe("move")
        await self.inner.move(source, dest, expect)

    async def delete(self, path: str) -> None:
        await self._maybe("delete")
        await self.inner.delete(path)
