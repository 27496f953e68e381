"""Checking a store: blob contents, link files, manifests and uploads.

Every finding names the store path it is about and, when the thing is provably
broken, the path whose removal repairs it. What is only odd (an unknown manifest
type, a manifest whose blobs exist but are not linked into its repository) is
reported and never removed. Blobs are checked first, so that links and manifests
are judged against the blobs that survive a repair.

What docker-registry itself leaves behind is no finding: it is counted in
``Report.registry_states`` (``REGISTRY_STATES`` says what each count means). A
check never changes the store: on S3, a file whose newest bytes are in a multipart
upload not yet completed (an upload being written, a copy under way) is counted and
not read, since reading it would complete it.
"""

from __future__ import annotations

from typing import Any

import trio

from ...drivers import StorageDriver
from ...storage import paths
from ..blobtable import BlobStates, Numbering
from ..readahead import REPOSITORY_LINKS
from .base import BATCH_FILES, CHUNK, CheckedBlob
from .blobs import BlobChecks
from .report import REGISTRY_STATES, Finding, NotRepairable, Report
from .repositories import RepositoryChecks
from .uploads import UploadChecks


class Fsck(BlobChecks, RepositoryChecks, UploadChecks):
    """One check of one store; ``run`` returns the report."""

    async def run(self) -> Report:
        self.pending = {w.path for w in await self.driver.pending_writes(paths.ROOT)}
        await self.store.read_top()
        table = await self.store.blob_table(self._odd)
        self.verdicts = BlobStates(Numbering(table))
        sizes = await self._stat_blobs(table)
        uploads = await self._list_uploads()
        hashed = sum(u.size for u in uploads if u.states and u.readable)
        self.on_total((sum(s for s in sizes if s > 0) if self.check_data else 0) + hashed)
        if self.check_data:
            for chunk in table.chunks(CHUNK):
                stored = [(d, sizes[i]) for i, d in chunk if sizes[i] >= 0]
                await self._check_blobs([CheckedBlob(d, paths.blob_data(d), n) for d, n in stored])
        else:
            self._take_unread(sizes)
        names = await self.store.repositories(self._odd)
        async with self.store.groups(names, below=REPOSITORY_LINKS) as groups:
            async for group in groups:
                await self._read_ahead(group)
                for name in group:
                    self.report.repositories += 1
                    await self._check_repository(name)
        limiter = trio.CapacityLimiter(self.workers)
        for start in range(0, len(uploads), BATCH_FILES):
            batch = uploads[start : start + BATCH_FILES]
            await self._read_uploads_ahead(batch)
            async with trio.open_nursery() as nursery:
                for upload in batch:
                    nursery.start_soon(self._check_upload, limiter, upload)
            self.ahead.forget()
        return self.report


async def fsck(driver: StorageDriver, **options: Any) -> Report:
    """One check of ``driver``'s store with ``Fsck``'s options."""
    return await Fsck(driver, **options).run()


__all__ = ["REGISTRY_STATES", "Finding", "Fsck", "NotRepairable", "Report", "fsck"]
