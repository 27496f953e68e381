"""fsck's blob checks: every listed blob stated and (unless --no-data) hashed."""

from __future__ import annotations

from array import array

import trio

from ...drivers import UnsafeEntryError
from ...storage import paths
from ...storage.digest import Digest
from ..blobtable import BlobTable
from .base import (
    CORRUPT,
    GOOD,
    SMALL_FILE,
    UNSAFE,
    CheckedBlob,
    Checks,
    batches,
    hash_each,
)


class BlobChecks(Checks):
    def _good(self, digest: Digest) -> bool:
        return self.verdicts.get(digest) == GOOD

    async def _stat_blobs(self, table: BlobTable) -> array[int]:
        """Each listed blob's size (``StorePass.blob_sizes``); -1 for a blob directory
        without data (reported), whose data is no file (reported, UNSAFE), or whose
        copy is still under way (no blob yet)."""
        found = await self.store.blob_sizes(table)
        sizes = found.sizes
        no_blob_yet = set()
        for path in sorted(self.pending):  # S3's writes not completed
            digest = paths.digest_of_blob_data(path)
            number = table.index(digest) if digest is not None else -1
            if number < 0:
                continue  # no listed blob's data
            self._normal("write-in-progress")  # a copy under way, or cut short
            if not await self.registry.blobs.exists(digest):  # type: ignore[arg-type]
                no_blob_yet.add(number)  # one copied again since is a blob
                sizes[number] = -1
        for number, digest, info in found.others:
            if number in no_blob_yet:
                continue
            if isinstance(info, UnsafeEntryError):
                self.verdicts.set(digest, UNSAFE)
                await self._unsafe(info)
            else:
                blob_dir = paths.blob_dir(digest)
                await self._found("blob-no-data", blob_dir, "blob directory without data", blob_dir)
        return sizes

    async def _check_blobs(self, blobs: list[CheckedBlob]) -> None:
        """Hash every blob: small ones read in batches and hashed in a worker thread,
        large ones one at a time by the driver (in place on a local disk);
        ``workers`` of either at once."""
        limiter = trio.CapacityLimiter(self.workers)
        small = [b for b in blobs if b.size <= SMALL_FILE]

        async def check(blob: CheckedBlob) -> None:
            async with limiter:
                actual = await self._hash(blob.path, blob.digest.algorithm)
            await self._judge(blob, actual)

        async def check_batch(batch: list[CheckedBlob]) -> None:
            async with limiter:
                contents = await self.driver.get_contents([b.path for b in batch])
                hashes = await trio.to_thread.run_sync(hash_each, batch, contents)
            for blob, actual in zip(batch, hashes, strict=True):
                if isinstance(actual, UnsafeEntryError):
                    self.verdicts.set(blob.digest, UNSAFE)
                    await self._unsafe(actual)
                elif isinstance(actual, str):
                    self.progress(blob.size)
                    await self._judge(blob, actual)
                # else gone since it was listed (a gc beside us): neither good nor corrupt

        async with trio.open_nursery() as nursery:
            for batch in batches(small):
                nursery.start_soon(check_batch, batch)
            for blob in blobs:
                if blob.size > SMALL_FILE:
                    nursery.start_soon(check, blob)

    def _take_unread(self, sizes: array[int]) -> None:
        """Without reading data (``--no-data``): every listed blob with data is good,
        by its number (no digest or path is made for any)."""
        for number, size in enumerate(sizes):
            if size >= 0:
                self.verdicts.set_number(number, GOOD)
                self.report.blobs += 1
                self.report.blob_bytes += size

    async def _judge(self, blob: CheckedBlob, actual: str) -> None:
        self.report.blobs += 1
        self.report.blob_bytes += blob.size
        if actual == blob.digest.hex:
            self.verdicts.set(blob.digest, GOOD)
            return
        self.verdicts.set(blob.digest, CORRUPT)
        await self._found(
            "blob-corrupt",
            blob.path,
            f"content hashes to {blob.digest.algorithm}:{actual}, not {blob.digest}",
            paths.blob_dir(blob.digest),
        )

    async def _hash(self, path: str, algorithm: str) -> str:
        return await self.driver.digest_file(path, algorithm, self.progress)
