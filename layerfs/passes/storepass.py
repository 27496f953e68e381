"""The skeleton every whole-store pass (fsck, gc, du) shares, written once
(docs/DESIGN.md, "Whole-store passes"):

1. the top listing, read once and kept: the blobs (packed, ``TreeListing``) and the
   repositories' names;
2. the blobs numbered (``BlobTable``), for the arrays and flags a pass keeps per blob;
3. the repositories a group of GROUP at a time: the group's listings and link files
   read (``reading_groups``: on a large local store, by a child process running
   ahead of the pass), its manifests read ahead (``ReadAhead``), checked by the
   pass, then forgotten.

A pass so holds the blob listing and one group, not every listing of the store: on
disk, a store's tags alone are tens of thousands of small directories. Where the
driver's ``list_tree`` lists every key below the top at once whatever ``descend``
says (S3: its pages hold them all), the top listing is the whole store and a group
costs no request.
"""

from __future__ import annotations

import contextlib
from array import array
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from ..drivers import FileInfo, StorageDriver, UnsafeEntryError
from ..drivers.base import (
    NO_FILES,
    SIZES_BATCH,
    WIDTH,
    Absent,
    Descend,
    FilesBelow,
    GroupRead,
    chunked,
)
from ..storage import paths, walk
from ..storage.digest import Digest
from ..storage.registry import Registry
from .blobtable import BlobTable, sizes_array
from .readahead import ReadAhead, Snapshot, layout_dirs, repository_dirs

GROUP = 64  # repositories listed, read ahead and checked together
# ... where their link files are read with the listings (``below``): those are some
# three times the bytes of the listings, and a driver reading ahead holds a few groups
FILES_GROUP = 16


class StorePass:
    """One pass over a store: ``snapshot`` is the current group's listings (outside a
    group, the top listing), ``ahead`` what is read ahead for it."""

    def __init__(self, driver: StorageDriver, descend: Descend = layout_dirs) -> None:
        self.driver = driver
        self.descend = descend  # what a group (or a whole-tree top) lists
        self.ahead = ReadAhead(driver)
        self.top = Snapshot(driver, {})
        self.snapshot = self.top
        self.whole = not driver.list_tree_prunes  # the top listing holds every key

    async def read_top(self) -> Snapshot:
        """The blobs and the repositories' names (all the store, where the driver
        lists it all at once)."""
        descend = self.descend if self.whole else self._top_dirs
        self.top = self.snapshot = await Snapshot.read(self.driver, paths.ROOT, descend)
        self.ahead.trust(self.top)
        return self.top

    def _top_dirs(self, path: str) -> bool:
        """Into the blobs and the repositories' namespace, not into a repository's own
        ``_layers``, ``_manifests`` and ``_uploads``."""
        return self.descend(path) and repository_dirs(path)

    async def blob_table(self, on_odd: walk.OnOdd = walk.ignore_odd) -> BlobTable:
        """The blobs of the top listing, numbered (odd entries to ``on_odd``)."""
        return BlobTable(await walk.blob_prefixes(self.top, on_odd))

    async def blob_sizes(self, table: BlobTable) -> BlobSizes:
        """Each listed blob's size. Where the top listing gave them (S3), from it, a
        chunk at a time; else from the driver (``_state_sizes``), and why a blob has
        none from ``stat_many``, in digest order."""
        found = BlobSizes(sizes_array(table.size))
        if self.whole:
            for chunk in chunked(table, SIZES_BATCH):
                infos = await self.top.stat_many([paths.blob_data(d) for _, d in chunk])
                for (number, digest), info in zip(chunk, infos, strict=True):
                    found.take(number, digest, info)
            return found
        unknown = await self._state_sizes(table, found.sizes)
        unknown.sort(key=table.digest_at)
        for chunk in chunked(unknown, SIZES_BATCH):
            digests = [table.digest_at(n) for n in chunk]
            infos = await self.top.stat_many([paths.blob_data(d) for d in digests])
            for number, digest, info in zip(chunk, digests, infos, strict=True):
                found.take(number, digest, info)
        return found

    async def _state_sizes(self, table: BlobTable, sizes: array[int]) -> list[int]:
        """``sizes`` of the listed blobs from the driver: the packed ones handed over
        packed, a prefix directory at a time (``file_sizes_in``: on a local disk the
        child process makes their paths), any other by its path. Returns the numbers
        of those it found no regular file for."""
        runs = list(table.packed_runs())
        stated = await self.driver.file_sizes_in(
            [directory for directory, _, _ in runs],
            [values for _, values, _ in runs],
            paths.BLOB_DATA_BELOW,
        )
        unknown, at = [], 0
        for _, values, first in runs:
            run = stated[at : at + len(values) // WIDTH]
            sizes[first : first + len(run)] = run
            unknown += [first + i for i, size in enumerate(run) if size < 0]
            at += len(run)
        others = table.other_items()
        data_paths = [paths.blob_data(digest) for _, digest in others]
        for (number, _), size in zip(
            others, await self.driver.file_sizes(data_paths, len(others)), strict=True
        ):
            sizes[number] = size
            if size < 0:
                unknown.append(number)
        return unknown

    async def repositories(self, on_odd: walk.OnOdd) -> list[str]:
        return await Registry(self.driver).repositories(on_odd, self.top)

    @contextlib.asynccontextmanager
    async def groups(
        self, names: list[str], descend: Descend | None = None, below: FilesBelow = NO_FILES
    ) -> AsyncIterator[AsyncIterator[list[str]]]:
        """Each group of ``names`` in turn, with ``snapshot`` holding its listings
        (``descend``: what of them, else the pass's) and ``ahead`` the files
        ``below`` names in them; what was read ahead is dropped after it. The driver
        may read the next groups while the pass works on this one
        (``reading_groups``)."""
        size = GROUP if below is NO_FILES else FILES_GROUP
        chunks = [names[start : start + size] for start in range(0, len(names), size)]
        if self.whole:  # the top listing holds every group's
            yield self._each(chunks, None)
            return
        tops = [[paths.repository(name) for name in chunk] for chunk in chunks]
        async with self.driver.reading_groups(tops, descend or self.descend, below) as reads:
            yield self._each(chunks, reads)

    async def _each(
        self, chunks: list[list[str]], reads: AsyncIterator[GroupRead] | None
    ) -> AsyncIterator[list[str]]:
        for chunk in chunks:
            if reads is not None:
                read = await anext(reads)
                self.snapshot = self.top.beside(read.tree)
                self.ahead.trust(self.snapshot)
                self.ahead.take(read.files)
                del read  # the group's files are held by ``ahead`` alone, until forgotten
            try:
                yield chunk
            finally:
                self.ahead.forget()
                self.snapshot = self.top
                self.ahead.trust(self.top)


@dataclass
class BlobSizes:
    """What ``StorePass.blob_sizes`` found: a size for each listed blob by its number
    (-1: none), and for each blob whose ``data`` is no regular file why: absent, or
    an entry never opened (a directory where the file belongs is one too: reading
    it as the blob would fail)."""

    sizes: array[int]
    others: list[tuple[int, Digest, Absent]] = field(default_factory=list)

    def take(self, number: int, digest: Digest, info: FileInfo | Absent) -> None:
        if isinstance(info, FileInfo) and not info.is_dir:
            self.sizes[number] = info.size
        elif isinstance(info, FileInfo):
            self.others.append((number, digest, UnsafeEntryError(info.path, NOT_A_FILE)))
        else:
            self.others.append((number, digest, info))


NOT_A_FILE = "a directory, not a file"


class OverStore:
    """A pass reading through a :class:`StorePass` (``store``): its current listings
    and what is read ahead for them."""

    store: StorePass

    @property
    def snapshot(self) -> Snapshot:
        return self.store.snapshot

    @property
    def ahead(self) -> ReadAhead:
        return self.store.ahead
