"""An in-memory driver for unit tests: files in a dict, directories implied by paths."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import trio

from .base import (
    FileChangedError,
    FileInfo,
    FileWriter,
    InvalidOffsetError,
    PathNotFoundError,
    Reader,
    StorageDriver,
    StorageDriverError,
    WriterClosedError,
    is_under,
)

_last = datetime.fromtimestamp(0, UTC)


def _now() -> datetime:
    """The time, strictly later than any time given before: a file changed twice in
    one microsecond still shows two modification times, as a stamp needs."""
    global _last
    _last = max(datetime.now(UTC), _last + timedelta(microseconds=1))
    return _last


class MemoryDriver(StorageDriver):
    name = "inmemory"

    def __init__(self) -> None:
        self._files: dict[str, bytearray] = {}
        self._mtimes: dict[str, datetime] = {}

    # helpers -------------------------------------------------------------
    def _is_dir(self, path: str) -> bool:
        return any(is_under(p, path) and p != path for p in self._files)

    def _ensure_file_slot(self, path: str) -> None:
        """Refuse a file where a directory is, or under a path that is a file."""
        if self._is_dir(path):
            raise StorageDriverError(f"{self.name}: {path} is a directory")
        parent = path.rsplit("/", 1)[0]
        while parent:
            if parent in self._files:
                raise StorageDriverError(f"{self.name}: {parent} is a file")
            parent = parent.rsplit("/", 1)[0]

    def _file(self, path: str) -> bytearray:
        try:
            return self._files[path]
        except KeyError:
            raise PathNotFoundError(path, self.name) from None

    # API -------------------------------------------------------------------
    async def get_content(self, path: str) -> bytes:
        await trio.lowlevel.checkpoint()
        return bytes(self._file(path))

    async def put_content(self, path: str, content: bytes) -> None:
        await trio.lowlevel.checkpoint()
        self._ensure_file_slot(path)
        self._files[path] = bytearray(content)
        self._mtimes[path] = _now()

    async def reader(self, path: str, offset: int = 0) -> Reader:
        await trio.lowlevel.checkpoint()
        self._file(path)
        if offset < 0:
            raise InvalidOffsetError(path, offset, self.name)
        return _MemoryReader(self, path, offset)

    async def writer(self, path: str, append: bool = False) -> FileWriter:
        await trio.lowlevel.checkpoint()
        self._ensure_file_slot(path)
        if append:
            data = self._file(path)
        else:  # O_TRUNC: the same file emptied, so other writers' "descriptors" see it
            data = self._files.setdefault(path, bytearray())
            data.clear()
            self._mtimes[path] = _now()
        return _MemoryWriter(self, path, data)

    async def stat(self, path: str) -> FileInfo:
        await trio.lowlevel.checkpoint()
        if path in self._files:
            return FileInfo(path, len(self._files[path]), self._mtimes[path], False)
        if self._is_dir(path):
            newest = max((t for p, t in self._mtimes.items() if is_under(p, path)), default=_now())
            return FileInfo(path, 0, newest, True)
        raise PathNotFoundError(path, self.name)

    async def stamp(self, path: str) -> object:
        await trio.lowlevel.checkpoint()
        data = self._file(path)
        return (id(data), len(data), self._mtimes[path].isoformat())

    async def list(self, path: str) -> list[str]:
        await trio.lowlevel.checkpoint()
        prefix = "" if path == "/" else path
        children = {
            prefix + "/" + p[len(prefix) + 1 :].split("/", 1)[0]
            for p in self._files
            if p.startswith(prefix + "/")
        }
        if not children and path != "/":
            raise PathNotFoundError(path, self.name)
        return sorted(children)

    async def move(self, source: str, dest: str, expect: object | None = None) -> None:
        await trio.lowlevel.checkpoint()
        data = self._file(source)
        if expect is not None and (id(data), len(data), self._mtimes[source].isoformat()) != expect:
            raise FileChangedError(f"{source}: changed since it was validated")
        if source == dest:
            return
        self._ensure_file_slot(dest)
        self._files[dest] = data
        self._mtimes[dest] = _now()
        del self._files[source]
        del self._mtimes[source]

    async def delete(self, path: str) -> None:
        await trio.lowlevel.checkpoint()
        doomed = [p for p in self._files if is_under(p, path)]
        if not doomed:
            raise PathNotFoundError(path, self.name)
        for p in doomed:
            del self._files[p]
            del self._mtimes[p]


class _MemoryReader(Reader):
    def __init__(self, driver: MemoryDriver, path: str, offset: int) -> None:
        self._driver = driver
        self._path = path
        self._offset = offset

    async def read(self, size: int) -> bytes:
        await trio.lowlevel.checkpoint()
        data = self._driver._file(self._path)
        chunk = bytes(data[self._offset : self._offset + size])
        self._offset += len(chunk)
        return chunk

    async def aclose(self) -> None:
        await trio.lowlevel.checkpoint()


class _MemoryWriter(FileWriter):
    """Appends to the file it opened, wherever that file is now: like a descriptor,
    it follows a move, and a file replaced at its path is no longer its file."""

    def __init__(self, driver: MemoryDriver, path: str, data: bytearray) -> None:
        self._driver = driver
        self._path = path
        self._data = data
        self._end = len(data)  # where this writer's last byte went
        self._stamp: object | None = None
        self._closed = False
        self._committed = False
        self._cancelled = False

    @property
    def size(self) -> int:
        return len(self._data)

    def _check_open(self) -> None:
        if self._closed:
            raise WriterClosedError(f"writer for {self._path} is closed")
        if self._committed:
            raise WriterClosedError(f"writer for {self._path} is committed")
        if self._cancelled:
            raise WriterClosedError(f"writer for {self._path} is cancelled")

    async def write_pieces(self, pieces: Sequence[bytes]) -> int:
        self._check_open()
        await trio.lowlevel.checkpoint()
        if self._driver._files.get(self._path) is not self._data:  # as the filesystem's check
            raise PathNotFoundError(self._path, self._driver.name)
        if len(self._data) != self._end:
            raise FileChangedError(f"{self._path}: written by another writer since")
        for piece in pieces:
            self._data.extend(piece)
        self._end = len(self._data)
        self._driver._mtimes[self._path] = _now()
        return sum(map(len, pieces))

    @property
    def stamp(self) -> object | None:
        return self._stamp

    def _take_stamp(self) -> None:
        if self._driver._files.get(self._path) is self._data:
            mtime = self._driver._mtimes[self._path].isoformat()
            self._stamp = (id(self._data), len(self._data), mtime)

    async def close(self) -> None:
        if self._closed:
            raise WriterClosedError(f"writer for {self._path} is already closed")
        self._closed = True
        await trio.lowlevel.checkpoint()
        self._take_stamp()

    async def cancel(self) -> None:
        self._check_open()
        self._cancelled = True
        await trio.lowlevel.checkpoint()
        if self._driver._files.get(self._path) is self._data:
            del self._driver._files[self._path]
            self._driver._mtimes.pop(self._path, None)

    async def commit(self) -> None:
        self._check_open()
        self._committed = True
        await trio.lowlevel.checkpoint()
        self._take_stamp()
