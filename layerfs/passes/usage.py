"""Where a store's space goes: what ``layerfs du`` reports.

The store is read once, the way gc reads it (``StorePass``; docs/DESIGN.md,
"Whole-store passes"): the blobs' sizes from the listing (S3) or stats a chunk at a
time, then a group of repositories at a time their revision and tag links and the
manifest graph they reach, read ahead in batches. Nothing is written.

A manifest's *closure* is its own blob, its config, its layers and, for an index,
its children's closures (read from their blobs, as gc reads them). The blobs of the
store fall into three disjoint parts:

- *tagged*: in the closure of a manifest some tag names (a tag whose manifest is no
  revision of its repository serves nothing and counts as odd);
- *untagged*: in the closure of some revision, but of no tagged one: what
  ``gc --delete-untagged`` frees;
- *unreferenced*: in no revision's closure: what plain ``gc`` frees.

A row's *unique* bytes are those no other row of its kind references: for a
repository, no other repository; for a tag, no other tag in the store (deleting the
tag, as ``prune`` does, then ``gc --delete-untagged`` frees them); for a manifest,
no other revision in the store.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from array import array
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import trio

from ..drivers import FileInfo, PathNotFoundError, StorageDriver, UnsafeEntryError
from ..storage import paths, walk
from ..storage.digest import Digest
from ..storage.graph import ManifestGraph
from ..storage.maintenance import upload_age
from ..storage.uploads import parse_started_at
from .blobtable import BlobTable, Numbering, sizes_array
from .readahead import read_revisions, read_tags, usage_dirs
from .storepass import OverStore, StorePass

log = logging.getLogger(__name__)

BY = ("repo", "tag", "manifest")

Progress = Callable[[int, int], None]  # repositories read so far, of how many


@dataclass(frozen=True, slots=True)
class Tag:
    name: str
    target: Digest
    mod_time: datetime | None = None


@dataclass
class RepositoryFacts:
    name: str
    revisions: list[Digest] = field(default_factory=list)
    tags: list[Tag] = field(default_factory=list)


@dataclass(frozen=True)
class UploadUsage:
    repository: str
    upload_id: str
    size: int
    started_at: datetime | None


@dataclass
class StoreFacts:
    """What a store holds, as read: enough to account for every byte. Blobs are
    numbered (``graph.numbering``: their place in the store's listing); ``sizes``
    gives each listed blob's bytes, -1 for one without data (not stored)."""

    graph: ManifestGraph = field(default_factory=ManifestGraph)
    sizes: array[int] = field(default_factory=lambda: sizes_array(0))
    repositories: dict[str, RepositoryFacts] = field(default_factory=dict)
    uploads: list[UploadUsage] = field(default_factory=list)
    odd: list[tuple[str, str]] = field(default_factory=list)  # (path, why)
    read_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def stored(self, number: int) -> bool:
        return 0 <= number < len(self.sizes) and self.sizes[number] >= 0


@dataclass(frozen=True)
class Part:
    """Bytes and blobs of a set of blobs."""

    bytes: int
    blobs: int


@dataclass(frozen=True)
class Row:
    repository: str
    tag: str  # --by tag
    manifest: Digest | None  # --by manifest
    referenced: Part
    unique: Part

    @property
    def shared(self) -> Part:
        return Part(
            self.referenced.bytes - self.unique.bytes, self.referenced.blobs - self.unique.blobs
        )


@dataclass(frozen=True)
class Summary:
    tagged: Part
    untagged: Part
    unreferenced: Part
    uploads: Part  # blobs: the number of uploads
    blobs: Part  # the whole blob store

    @property
    def total_bytes(self) -> int:
        return self.blobs.bytes + self.uploads.bytes


# reading ---------------------------------------------------------------------------


class UsageReader(OverStore):
    def __init__(self, driver: StorageDriver, progress: Progress | None = None) -> None:
        self.driver = driver
        self.store = StorePass(driver, usage_dirs)
        self.facts = StoreFacts()
        self.progress = progress or (lambda done, total: None)
        self._listed = 0  # blobs the listing has (numbered below this)

    async def read(self) -> StoreFacts:
        """The blobs' sizes are stated while the repositories are read (on a local
        disk by a second process: ``StorePass.blob_sizes``); what is odd about the
        blobs comes first in ``facts.odd`` all the same."""
        await self.store.read_top()
        table = await self.store.blob_table(self._odd)
        self.facts.graph = ManifestGraph(Numbering(table))
        self._listed = table.size
        blobs_odd: list[tuple[str, str]] = []
        odd_before = len(self.facts.odd)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._read_blob_sizes, table, blobs_odd)
            await self._read_repositories()
        self.facts.odd[odd_before:odd_before] = blobs_odd
        return self.facts

    async def _read_repositories(self) -> None:
        names = await self.store.repositories(self._odd)
        self.progress(0, len(names))
        done = 0
        async with self.store.groups(names) as groups:
            async for group in groups:
                await self._read_group(group)
                await self._read_uploads(group)
                done += len(group)
                self.progress(done, len(names))

    async def _odd(self, path: str, why: str) -> None:
        self.facts.odd.append((path, why))

    async def _read_blob_sizes(self, table: BlobTable, odd: list[tuple[str, str]]) -> None:
        """Every listed blob's size into ``facts.sizes``, and what is odd about one
        into ``odd``."""
        found = await self.store.blob_sizes(table)
        for _, digest, info in found.others:
            if isinstance(info, UnsafeEntryError):
                odd.append((info.path, info.what))
            else:
                odd.append((paths.blob_dir(digest), "blob directory without data"))
        self.facts.sizes = found.sizes

    async def _read_group(self, names: list[str]) -> None:
        await self.ahead.fetch_repositories(self.snapshot, names)
        roots: list[Digest] = []
        for name in names:
            facts = RepositoryFacts(name)
            facts.revisions = await self._revisions(name)
            facts.tags = await self._tags(name, {d: d for d in facts.revisions})
            self.facts.repositories[name] = facts
            roots += facts.revisions + [t.target for t in facts.tags]
        await self.facts.graph.read(
            self.ahead.manifests, roots, self._unreadable, self._listed_blob
        )

    def _listed_blob(self, digest: Digest) -> bool:
        """Whether the blob listing has ``digest`` (its size may not be known yet)."""
        return 0 <= self.facts.graph.numbering.known(digest) < self._listed

    async def _unreadable(self, digest: Digest, exc: Exception) -> None:
        """A manifest's blob that could not be read or parsed; one whose ``data`` is
        missing or never followed is odd already, by the sizes."""
        if not isinstance(exc, PathNotFoundError | UnsafeEntryError):
            await self._odd(paths.blob_data(digest), f"not a readable manifest: {exc}")

    async def _revisions(self, name: str) -> list[Digest]:
        found = []
        for digest, target in await read_revisions(self.snapshot, self.ahead, name, self._odd):
            if isinstance(target, Digest):
                found.append(target)
            elif not isinstance(target, PathNotFoundError):  # else deleted: no manifest
                await self._odd(paths.manifest_revision_link(name, digest), str(target))
        return found

    async def _tags(self, name: str, held: dict[Digest, Digest]) -> list[Tag]:
        """The repository's tags; a target that is a revision is that revision's
        ``Digest`` (``held``), and the names the layout repeats one string: a store
        of many tags holds each once."""
        found = []
        for tag, target in await read_tags(self.snapshot, self.ahead, name, self._odd):
            if isinstance(target, Digest):
                found.append(Tag(sys.intern(tag), held.get(target, target)))
            elif isinstance(target, PathNotFoundError):
                await self._odd(paths.tag_dir(name, tag), "tag without a current link")
            else:
                await self._odd(paths.tag_current_link(name, tag), str(target))
        return found

    async def _read_uploads(self, names: list[str]) -> None:
        """Each upload's size and start, for a group of repositories: the sizes and
        the ``startedat`` files read in one batch each; an upload whose file is
        missing or unreadable is dated as purge-uploads dates it."""
        uploads = [
            (name, upload_id)
            for name in names
            for upload_id in await walk.upload_ids(self.snapshot, name, self._odd)
        ]
        if not uploads:
            return
        infos = await self.snapshot.stat_many([paths.upload_data(n, i) for n, i in uploads])
        started = await self.driver.get_contents(
            [paths.upload_started_at(n, i) for n, i in uploads]
        )
        for (name, upload_id), info, content in zip(uploads, infos, started, strict=True):
            size = info.size if isinstance(info, FileInfo) else 0
            when = _started_at(content)
            if when is None:
                age = await upload_age(self.driver, name, upload_id, self._odd)
                when = age.started_at if age is not None else None
            self.facts.uploads.append(UploadUsage(name, upload_id, size, when))


def _started_at(content: bytes | Exception) -> datetime | None:
    """The time a ``startedat`` file holds, if it was read and holds one."""
    if isinstance(content, bytes):
        with contextlib.suppress(ValueError, UnicodeDecodeError):
            return parse_started_at(content)
    return None


async def read_store(driver: StorageDriver, progress: Progress | None = None) -> StoreFacts:
    return await UsageReader(driver, progress).read()


# accounting ------------------------------------------------------------------------
class Usage:
    """The accounting of one read store. Sets of blobs are sets of their numbers."""

    def __init__(self, facts: StoreFacts) -> None:
        self.facts = facts
        self.graph = facts.graph
        self._closures: dict[int, frozenset[int]] = {}  # indexes' (graph.closure)
        # the numbers of blobs not stored: listed without data, or named and not listed
        sizes = facts.sizes
        self._not_stored = {n for n, size in enumerate(sizes) if size < 0}

    def closure(self, digest: Digest) -> frozenset[int]:
        """The stored blobs a manifest keeps: itself, its config and layers, and its
        children's closures."""
        found = self.graph.closure(self.graph.number(digest), self._closures)
        listed = len(self.facts.sizes)
        if max(found) >= listed:  # it names blobs that are not listed
            found = frozenset(n for n in found if n < listed)
        return found - self._not_stored if self._not_stored else found

    def _closure_of_all(self, digests: Iterable[Digest]) -> set[int]:
        found: set[int] = set()
        for digest in digests:
            found |= self.closure(digest)
        return found

    def part(self, blobs: Iterable[int]) -> Part:
        sizes = self.facts.sizes
        chosen = set(blobs)
        return Part(sum(sizes[b] for b in chosen), len(chosen))

    def served_tags(self) -> list[tuple[str, Tag]]:
        """Tags whose manifest is a revision of their repository (what the registry
        serves)."""
        found = []
        for name, repo in sorted(self.facts.repositories.items()):
            held = set(repo.revisions)
            found += [(name, tag) for tag in repo.tags if tag.target in held]
        return found

    def missing(self) -> list[tuple[Digest, Digest]]:
        """(manifest, blob) where a manifest some revision reaches references a blob
        that is not stored. Walked by number: a digest is made only for what is
        missing (a store's every manifest as a ``Digest`` was du's peak of memory)."""
        graph, listed = self.graph, len(self.facts.sizes)
        roots = (graph.number(d) for repo in self.facts.repositories.values()
                 for d in repo.revisions)  # fmt: skip
        found = set()
        for manifest in graph.walk(roots):
            node = graph.nodes.get(manifest)
            for blob in node.blobs if node is not None else ():
                if blob >= listed or blob in self._not_stored:
                    found.add((manifest, blob))
        return sorted((graph.digest(m), graph.digest(b)) for m, b in found)

    def odd(self) -> list[tuple[str, str]]:
        found = list(self.facts.odd)
        for name, repo in sorted(self.facts.repositories.items()):
            held = set(repo.revisions)
            for tag in repo.tags:
                if tag.target not in held:
                    why = f"names {tag.target}, which is no manifest of {name}"
                    found.append((paths.tag_current_link(name, tag.name), why))
        for manifest, blob in self.missing():
            found.append((paths.blob_data(blob), f"referenced by {manifest}, not stored"))
        return found

    def rows(self, by: str) -> list[Row]:
        """Every row of a kind (``BY``), sorted as ``du | sort -h`` sorts: smallest
        first. Each row's blobs are worked out twice (once to count the rows that
        reference each blob, once to sum), not all held at once."""
        owners: list[tuple[str, str, Digest | None, list[Digest]]] = []
        for name, repo in sorted(self.facts.repositories.items()):
            if by == "repo":
                owners.append((name, "", None, repo.revisions))
            elif by == "manifest":
                owners += [(name, "", d, [d]) for d in sorted(set(repo.revisions))]
        if by == "tag":
            owners = [(n, t.name, None, [t.target]) for n, t in self.served_tags()]
        count = array("l", [0]) * len(self.facts.sizes)
        for *_, roots in owners:
            for blob in self._closure_of_all(roots):
                count[blob] += 1
        rows = []
        for n, t, m, roots in owners:
            blobs = self._closure_of_all(roots)
            rows.append(
                Row(n, t, m, self.part(blobs), self.part(b for b in blobs if count[b] == 1))
            )
        return sorted(
            rows, key=lambda r: (r.referenced.bytes, r.repository, r.tag, str(r.manifest))
        )

    def summary(self) -> Summary:
        """The store's parts, from a byte of flags a blob (tagged, referenced), not
        sets of every blob's number."""
        sizes = self.facts.sizes
        flags = bytearray(len(sizes))
        revisions = (d for repo in self.facts.repositories.values() for d in repo.revisions)
        for digest in revisions:
            for blob in self.closure(digest):
                flags[blob] |= _REFERENCED
        for _, tag in self.served_tags():
            for blob in self.closure(tag.target):
                flags[blob] |= _TAGGED
        by_flags = [[0, 0] for _ in range((_TAGGED | _REFERENCED) + 1)]  # bytes, blobs
        for size, flag in zip(sizes, flags, strict=True):
            if size >= 0:  # else not stored
                totals = by_flags[flag]
                totals[0] += size
                totals[1] += 1

        def part(*flag_values: int) -> Part:
            return Part(*(sum(by_flags[f][i] for f in flag_values) for i in (0, 1)))

        uploads = self.facts.uploads
        return Summary(
            tagged=part(_TAGGED, _TAGGED | _REFERENCED),
            untagged=part(_REFERENCED),
            unreferenced=part(0),
            blobs=part(0, _REFERENCED, _TAGGED, _TAGGED | _REFERENCED),
            uploads=Part(sum(u.size for u in uploads), len(uploads)),
        )


_REFERENCED, _TAGGED = 1, 2  # a blob's flags in summary (a tagged one is referenced)


__all__ = [
    "BY",
    "Part",
    "Row",
    "StoreFacts",
    "Summary",
    "Tag",
    "UploadUsage",
    "Usage",
    "read_store",
]
