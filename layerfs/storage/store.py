"""The store as the mounted view reaches it: the registry's model over one driver,
and the few plain file operations the view makes below that model (the attributes of
a path, listings read ahead, a small file's bytes, a directory's removal, positional
reads). The view goes through here and nothing else, so it needs nothing of the
driver's: which calls a backend answers how (S3 reads no open write; a directory may
exist only implicitly) is decided here (docs/DESIGN.md, "Layers").
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import trio

from ..drivers import FileInfo, StorageDriver
from .blobs import BlobReader
from .registry import Registry


class Store:
    """One store: its registry model, and the file operations of the view."""

    def __init__(self, driver: StorageDriver) -> None:
        self._driver = driver
        self.registry = Registry(driver)

    # the store itself ------------------------------------------------------------
    @property
    def location(self) -> str:
        """Where the store lives, for messages and ``user.layerfs.store``."""
        return self._driver.location

    @property
    def timeout(self) -> float:
        """The most one request to the mount may wait on the store (deadline.py)."""
        return self._driver.timeout

    def counters(self) -> dict[str, int]:
        return self._driver.counters()

    async def statvfs(self) -> os.statvfs_result | None:
        return await self._driver.statvfs()

    async def aclose(self) -> None:
        await self._driver.aclose()

    # paths -------------------------------------------------------------------------
    async def stat(self, path: str, is_dir: bool = False) -> FileInfo:
        """A path's attributes (PathNotFoundError when absent); ``is_dir``: asked as
        a directory, which an object store may hold only implicitly."""
        if is_dir:
            return await self._driver.stat_dir(path)
        return await self._driver.stat(path)

    @property
    def lists_cheaply(self) -> bool:
        """Whether listing a directory with what is below it costs about a stat."""
        return self._driver.lists_cheaply

    async def list_ahead(self, path: str, limit: int) -> dict[str, list[FileInfo]]:
        """``path``'s entries, and those of directories below it, up to ``limit``."""
        return await self._driver.list_tree_infos(path, limit)

    async def read_file(self, path: str) -> bytes:
        """A small file's bytes (a link)."""
        return await self._driver.get_content(path)

    async def remove_dir(self, path: str) -> None:
        """Remove an empty directory, or nothing where it exists only implicitly."""
        await self._driver.delete_if_present(path)

    # reading -----------------------------------------------------------------------
    def reader(self, path: str, committed: bool = False) -> StoredFileReader:
        return StoredFileReader(self._driver, path, committed)

    def reads_only_committed(self, filling: bool) -> bool:
        """Whether a read of a file a writer is still filling sees only what was
        stored before the writer began: where the store cannot read an open write
        (S3, whose parts are readable once completed), completing it for a read
        would cost a server-side copy of the whole object on every read."""
        return filling and not self._driver.reads_open_writes

    async def committed_size(self, path: str) -> int:
        """The size of what is stored at ``path`` without any open write."""
        return await self._driver.committed_size(path)


@dataclass
class StoredFileReader:
    """Positional reads of one stored file through one seekable stream, so the 128 KiB
    reads of a ``cat`` continue a single driver stream instead of opening one each
    (on S3 a request and a ranged GET per read). The kernel sends read-ahead
    concurrently: one seek and read at a time. ``committed`` reads only what the
    store holds without completing an open write (an upload a writer still fills)."""

    driver: StorageDriver
    path: str
    committed: bool = False
    reader: BlobReader | None = None
    lock: trio.Lock = field(default_factory=trio.Lock)

    async def read_at(self, offset: int, size: int, file_size: int) -> bytes:
        async with self.lock:
            if self.reader is None or self.reader.size != file_size:  # an upload grew
                await self.aclose()
                self.reader = BlobReader(self.driver, self.path, file_size, self.committed)
            self.reader.seek(offset)
            return await self.reader.read(size)

    async def aclose(self) -> None:
        if self.reader is not None:
            reader, self.reader = self.reader, None
            await reader.aclose()
