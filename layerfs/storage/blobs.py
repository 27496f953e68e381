"""The global, content-addressed blob store: ``blobs/<alg>/<hh>/<hex>/data``."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from ..drivers import PathNotFoundError, Reader, StorageDriver
from . import paths
from .digest import CANONICAL, Digest
from .errors import BlobUnknownError


@dataclass(frozen=True)
class BlobInfo:
    digest: Digest
    size: int


class BlobReader:
    """A seekable reader over one blob; re-opens the driver stream only on a jump."""

    def __init__(
        self, driver: StorageDriver, path: str, size: int, committed: bool = False
    ) -> None:
        self._driver = driver
        self._path = path
        self.size = size
        self._open = driver.committed_reader if committed else driver.reader
        self._offset = 0
        self._stream: Reader | None = None
        self._stream_offset = 0

    def tell(self) -> int:
        return self._offset

    def seek(self, offset: int) -> int:
        if offset < 0:
            raise ValueError(f"negative seek offset {offset}")
        self._offset = offset
        return offset

    async def read(self, size: int = -1) -> bytes:
        if size < 0:
            size = max(self.size - self._offset, 0)
        if size == 0 or self._offset >= self.size:
            return b""
        if self._stream is None or self._stream_offset != self._offset:
            await self.aclose()
            self._stream = await self._open(self._path, self._offset)
            self._stream_offset = self._offset
        parts = []
        want = min(size, self.size - self._offset)
        while want > 0:
            chunk = await self._stream.read(want)
            if not chunk:
                break
            parts.append(chunk)
            want -= len(chunk)
            self._stream_offset += len(chunk)
        data = b"".join(parts)
        self._offset += len(data)
        return data

    async def aclose(self) -> None:
        if self._stream is not None:
            stream, self._stream = self._stream, None
            await stream.aclose()

    async def __aenter__(self) -> BlobReader:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class BlobStore:
    def __init__(self, driver: StorageDriver) -> None:
        self.driver = driver

    async def stat(self, digest: Digest) -> BlobInfo:
        try:
            info = await self.driver.stat_committed(paths.blob_data(digest))
        except PathNotFoundError:
            raise BlobUnknownError(digest) from None
        if info.is_dir:
            raise BlobUnknownError(digest)
        return BlobInfo(digest, info.size)

    async def exists(self, digest: Digest) -> bool:
        try:
            await self.stat(digest)
        except BlobUnknownError:
            return False
        return True

    async def get(self, digest: Digest) -> bytes:
        try:
            return await self.driver.get_content(paths.blob_data(digest))
        except PathNotFoundError:
            raise BlobUnknownError(digest) from None

    async def open(self, digest: Digest) -> BlobReader:
        info = await self.stat(digest)
        return BlobReader(self.driver, paths.blob_data(digest), info.size)

    async def put(self, content: bytes) -> Digest:
        """Store small content (a manifest, a config) under its sha256 digest."""
        digest = Digest(CANONICAL, hashlib.sha256(content).hexdigest())
        if not await self.exists(digest):
            await self.driver.put_content(paths.blob_data(digest), content)
        return digest

    async def digests(self) -> list[Digest]:
        """Every blob in the store (walks ``blobs/``)."""
        from .walk import blob_dirs  # walk knows uploads, which know blobs

        return [digest for digest, _ in await blob_dirs(self.driver)]
