"""Driver wrappers for tests: count what is read, or misbehave on purpose."""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import trio

from layerfs.drivers import FileInfo, FileWriter, PendingWrite, Reader, StorageDriver


class Passthrough(StorageDriver):
    """Delegates every call to ``inner``; subclasses override what they watch."""

    def __init__(self, inner: StorageDriver) -> None:
        self.inner = inner
        self.name = inner.name
        self.reads_open_writes = inner.reads_open_writes
        self.lists_cheaply = inner.lists_cheaply
        self.write_batch = inner.write_batch

    @property
    def location(self) -> str:
        return self.inner.location

    async def committed_size(self, path: str) -> int:
        return await self.inner.committed_size(path)

    async def committed_reader(self, path: str, offset: int = 0) -> Reader:
        return await self.inner.committed_reader(path, offset)

    async def stat_committed(self, path: str) -> FileInfo:
        return await self.inner.stat_committed(path)

    async def stamp(self, path: str) -> object:
        return await self.inner.stamp(path)

    async def pending_writes(self, path: str) -> list[PendingWrite]:
        return await self.inner.pending_writes(path)

    async def get_content(self, path: str) -> bytes:
        return await self.inner.get_content(path)

    async def put_content(self, path: str, content: bytes) -> None:
        await self.inner.put_content(path, content)

    async def reader(self, path: str, offset: int = 0) -> Reader:
        return await self.inner.reader(path, offset)

    async def writer(self, path: str, append: bool = False) -> FileWriter:
        return await self.inner.writer(path, append)

    async def stat(self, path: str) -> FileInfo:
        return await self.inner.stat(path)

    async def list(self, path: str) -> list[str]:
        return await self.inner.list(path)

    async def move(self, source: str, dest: str, expect: object | None = None) -> None:
        await self.inner.move(source, dest, expect)

    async def committed_stamp(self, path: str) -> object:
        return await self.inner.committed_stamp(path)

    async def delete(self, path: str) -> None:
        await self.inner.delete(path)

    async def aclose(self) -> None:
        await self.inner.aclose()


class _CountingReader(Reader):
    def __init__(self, inner: Reader, counter: Counter[str], path: str) -> None:
        self.inner, self.counter, self.path = inner, counter, path

    async def read(self, size: int) -> bytes:
        data = await self.inner.read(size)
        self.counter[self.path] += len(data)
        return data

    async def aclose(self) -> None:
        await self.inner.aclose()


class CountingDriver(Passthrough):
    """Counts the bytes read from each path, through readers and get_content, and
    the puts of each path."""

    def __init__(self, inner: StorageDriver) -> None:
        super().__init__(inner)
        self.bytes_read: Counter[str] = Counter()
        self.puts: Counter[str] = Counter()
        self.calls: Counter[str] = Counter()
        self.gets: Counter[str] = Counter()  # get_content calls by path
        self.stats: Counter[str] = Counter()

    async def put_content(self, path: str, content: bytes) -> None:
        self.puts[path] += 1
        await self.inner.put_content(path, content)

    async def get_content(self, path: str) -> bytes:
        data = await self.inner.get_content(path)
        self.bytes_read[path] += len(data)
        self.gets[path] += 1
        return data

    async def stat(self, path: str) -> FileInfo:
        self.stats[path] += 1
        return await self.inner.stat(path)

    async def list_tree_infos(self, path: str, limit: int) -> dict[str, list[FileInfo]]:
        """The inner driver's listing, as deep as it reads ahead; one call counted."""
        self.calls["listing"] += 1
        return await self.inner.list_tree_infos(path, limit)

    async def reader(self, path: str, offset: int = 0) -> Reader:
        self.calls["reader"] += 1
        return _CountingReader(await self.inner.reader(path, offset), self.bytes_read, path)

    async def committed_reader(self, path: str, offset: int = 0) -> Reader:
        self.calls["reader"] += 1
        inner = await self.inner.committed_reader(path, offset)
        return _CountingReader(inner, self.bytes_read, path)

    async def move(self, source: str, dest: str, expect: object | None = None) -> None:
        self.calls["move"] += 1
        await self.inner.move(source, dest, expect)

    def read_below(self, fragment: str) -> int:
        return sum(n for path, n in self.bytes_read.items() if fragment in path)


class LaggingStatDriver(Passthrough):
    """Reports a short size for the first ``lag`` stats of paths ending in ``suffix``,
    the way an eventually consistent store can right after a write."""

    def __init__(self, inner: StorageDriver, suffix: str, lag: int) -> None:
        super().__init__(inner)
        self.suffix, self.lag = suffix, lag

    async def stat(self, path: str) -> FileInfo:
        return self._lagging(path, await self.inner.stat(path))

    async def stat_committed(self, path: str) -> FileInfo:
        return self._lagging(path, await self.inner.stat_committed(path))

    def _lagging(self, path: str, info: FileInfo) -> FileInfo:
        if path.endswith(self.suffix) and self.lag > 0 and info.size > 0:
            self.lag -= 1
            return FileInfo(info.path, info.size - 1, info.mod_time, info.is_dir)
        return info


class YieldingDriver(Passthrough):
    """Yields to the scheduler ``pauses()`` times before every call, and inside every
    reader's and writer's calls: each ``await`` of storage becomes a point where
    another request runs. With Hypothesis drawing the pauses (and trio's scheduler
    seeded by Hypothesis), an interleaving that breaks something is found, replayed
    and shrunk."""

    def __init__(self, inner: StorageDriver, pauses: Callable[[], int]) -> None:
        super().__init__(inner)
        self.pauses = pauses

    async def pause(self) -> None:
        for _ in range(self.pauses()):
            await trio.lowlevel.checkpoint()

    async def _pause_before(self, what: str) -> None:
        await self.pause()

    async def committed_size(self, path: str) -> int:
        await self.pause()
        return await self.inner.committed_size(path)

    async def committed_reader(self, path: str, offset: int = 0) -> Reader:
        await self.pause()
        return _YieldingReader(await self.inner.committed_reader(path, offset), self)

    async def get_content(self, path: str) -> bytes:
        await self.pause()
        return await self.inner.get_content(path)

    async def put_content(self, path: str, content: bytes) -> None:
        await self.pause()
        await self.inner.put_content(path, content)

    async def reader(self, path: str, offset: int = 0) -> Reader:
        await self.pause()
        return _YieldingReader(await self.inner.reader(path, offset), self)

    async def writer(self, path: str, append: bool = False) -> FileWriter:
        await self.pause()
        return HookedWriter(await self.inner.writer(path, append), self._pause_before)

    async def stat(self, path: str) -> FileInfo:
        await self.pause()
        return await self.inner.stat(path)

    async def stamp(self, path: str) -> object:
        await self.pause()
        return await self.inner.stamp(path)

    async def stat_committed(self, path: str) -> FileInfo:
        await self.pause()
        return await self.inner.stat_committed(path)

    async def list(self, path: str) -> list[str]:
        await self.pause()
        return await self.inner.list(path)

    async def move(self, source: str, dest: str, expect: object | None = None) -> None:
        await self.pause()
        await self.inner.move(source, dest, expect)

    async def delete(self, path: str) -> None:
        await self.pause()
        await self.inner.delete(path)


class _YieldingReader(Reader):
    def __init__(self, inner: Reader, driver: YieldingDriver) -> None:
        self.inner, self.driver = inner, driver

    async def read(self, size: int) -> bytes:
        await self.driver.pause()
        return await self.inner.read(size)

    async def aclose(self) -> None:
        await self.inner.aclose()


class HookedWriter(FileWriter):
    """A writer that awaits ``before(what)`` ("write", "close", "cancel", "commit")
    before each call: a place for a test's driver to yield, fail or count."""

    def __init__(self, inner: FileWriter, before: Callable[[str], Awaitable[None]]) -> None:
        self.inner, self.before = inner, before

    @property
    def size(self) -> int:
        return self.inner.size

    @property
    def stamp(self) -> object | None:
        return self.inner.stamp

    async def write_pieces(self, pieces: Sequence[bytes]) -> int:
        await self.before("write")
        return await self.inner.write_pieces(pieces)

    async def close(self) -> None:
        await self.before("close")
        await self.inner.close()

    async def cancel(self) -> None:
        await self.before("cancel")
        await self.inner.cancel()

    async def commit(self) -> None:
        await self.before("commit")
        await self.inner.commit()


class Pausing(Passthrough):
    """Holds the first call of ``method`` whose first argument ``when`` accepts until
    ``go`` is set (``reached`` is set as it arrives): another request, or the mount's
    upkeep, is then let in at exactly that await."""

    def __init__(
        self, inner: StorageDriver, method: str, when: Callable[[Any], bool] = lambda _: True
    ) -> None:
        super().__init__(inner)
        self.reached, self.go = trio.Event(), trio.Event()
        passed = getattr(inner, method)

        async def held(first: Any, *args: Any, **kwargs: Any) -> Any:
            if not self.reached.is_set() and when(first):
                self.reached.set()
                await self.go.wait()
            return await passed(first, *args, **kwargs)

        setattr(self, method, held)
