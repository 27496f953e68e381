"""Reading an object: ranged GETs fetched ahead in the driver's pool."""

from __future__ import annotations

from collections import deque
from concurrent.futures import Future
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from ..base import BackendUnavailableError, Reader
from .requests import driver_error

if TYPE_CHECKING:
    from .driver import S3Driver

READ_CHUNK = 8 << 20
READ_AHEAD = 4


class RangeReader(Reader):
    """Ranged GETs of READ_CHUNK bytes; READ_AHEAD of them fetched in the driver's pool
    while the current one is read."""

    def __init__(self, driver: S3Driver, key: str, offset: int, size: int) -> None:
        self.driver, self.key, self.offset, self.size = driver, key, offset, size
        self._chunk = b""
        self._pos = 0
        self._next = offset  # where the next fetch starts
        self._ahead: deque[Future[bytes]] = deque()

    def _get(self, start: int) -> bytes:
        last = min(start + READ_CHUNK, self.size) - 1
        d = self.driver
        resp = d.client.get_object(Bucket=d.bucket, Key=self.key, Range=f"bytes={start}-{last}")
        return resp["Body"].read()

    def _schedule(self) -> None:
        while len(self._ahead) < READ_AHEAD and self._next < self.size:
            self._ahead.append(self.driver.pool.submit(self._get, self._next))
            self._next += READ_CHUNK

    async def read(self, size: int) -> bytes:
        if self._pos >= len(self._chunk):
            if self.offset >= self.size:
                return b""
            self._schedule()
            future = self._ahead.popleft()
            try:
                self._chunk = await self.driver.requests.wait(future)
            except ClientError as exc:
                await self.aclose()
                raise driver_error(exc, self.key) from exc
            except BotoCoreError as exc:
                await self.aclose()
                raise BackendUnavailableError(f"s3: reading {self.key}: {exc}") from exc
            self._pos = 0
            self.driver.bytes_read += len(self._chunk)
            self._schedule()
            if not self._chunk:
                return b""
        data = self._chunk[self._pos : self._pos + size]
        self._pos += len(data)
        self.offset += len(data)
        return data

    async def aclose(self) -> None:
        for future in self._ahead:
            future.cancel()
        self._ahead.clear()
        self._chunk = b""
