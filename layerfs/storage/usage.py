"""Where a store's space goes: what ``layerfs du`` reports.

The store is read once, the way gc reads it (docs/DESIGN.md, "Whole-store passes"):
one snapshot of the listings, the revision and tag links and the manifests they name
read ahead in batches, and the blobs' sizes from the listing (S3) or one batch of
stats. Nothing is written.

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

import logging
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from ..drivers import FileInfo, PathNotFoundError, StorageDriver, UnsafeEntryError
from . import paths, walk
from .digest import Digest
from .errors import RegistryError
from .maintenance import upload_age
from .manifests import Manifest, parse_manifest
from .readahead import ReadAhead, Snapshot, layout_dirs, read_revisions, read_tags
from .registry import Registry

log = logging.getLogger(__name__)

GROUP = 64  # repositories whose links and manifests are read ahead together
BY = ("repo", "tag", "manifest")

Progress = Callable[[int, int], None]  # repositories read so far, of how many


@dataclass(frozen=True)
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
    """What a store holds, as read: enough to account for every byte."""

    blob_sizes: dict[Digest, int] = field(default_factory=dict)
    repositories: dict[str, RepositoryFacts] = field(default_factory=dict)
    manifests: dict[Digest, Manifest] = field(default_factory=dict)
    uploads: list[UploadUsage] = field(default_factory=list)
    odd: list[tuple[str, str]] = field(default_factory=list)  # (path, why)
    read_at: datetime = field(default_factory=lambda: datetime.now(UTC))


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
class UsageReader:
    def __init__(self, driver: StorageDriver, progress: Progress | None = None) -> None:
        self.driver = driver
        self.registry = Registry(driver)
        self.ahead = ReadAhead(driver)
        self.facts = StoreFacts()
        self.progress = progress or (lambda done, total: None)
        self.snapshot = Snapshot(driver, {})
        self.unparsed: set[Digest] = set()  # blobs named as manifests that are none

    async def read(self) -> StoreFacts:
        self.snapshot = await Snapshot.read(self.driver, paths.ROOT, layout_dirs)
        self.ahead.trust(self.snapshot)
        await self._read_blob_sizes()
        names = await self.registry.repositories(self._odd, self.snapshot)
        self.progress(0, len(names))
        for start in range(0, len(names), GROUP):
            group = names[start : start + GROUP]
            await self._read_group(group)
            self.progress(min(start + GROUP, len(names)), len(names))
        await self._read_children()
        for name in names:
            await self._read_uploads(name)
        return self.facts

    async def _odd(self, path: str, why: str) -> None:
        self.facts.odd.append((path, why))

    async def _read_blob_sizes(self) -> None:
        found = await walk.blob_dirs(self.snapshot, self._odd)
        data = [paths.blob_data(digest) for digest, _ in found]
        infos = await self.snapshot.stat_many(data)
        for (digest, blob_dir), info in zip(found, infos, strict=True):
            if isinstance(info, FileInfo):
                self.facts.blob_sizes[digest] = info.size
            elif isinstance(info, UnsafeEntryError):
                await self._odd(info.path, info.what)
            else:
                await self._odd(blob_dir, "blob directory without data")

    async def _read_group(self, names: list[str]) -> None:
        await self.ahead.fetch_repositories(self.snapshot, names)
        for name in names:
            facts = RepositoryFacts(name)
            facts.revisions = await self._revisions(name)
            facts.tags = await self._tags(name)
            self.facts.repositories[name] = facts
            for digest in facts.revisions + [t.target for t in facts.tags]:
                await self._read_manifest(digest)
        self.ahead.forget()

    async def _revisions(self, name: str) -> list[Digest]:
        found = []
        for digest, target in await read_revisions(self.snapshot, self.ahead, name, self._odd):
            if isinstance(target, Digest):
                found.append(target)
            elif not isinstance(target, PathNotFoundError):  # else deleted: no manifest
                await self._odd(paths.manifest_revision_link(name, digest), str(target))
        return found

    async def _tags(self, name: str) -> list[Tag]:
        found = []
        for tag, target in await read_tags(self.snapshot, self.ahead, name, self._odd):
            if isinstance(target, Digest):
                found.append(Tag(tag, target))
            elif isinstance(target, PathNotFoundError):
                await self._odd(paths.tag_dir(name, tag), "tag without a current link")
            else:
                await self._odd(paths.tag_current_link(name, tag), str(target))
        return found

    async def _read_manifest(self, digest: Digest) -> None:
        known = self.facts.manifests
        if digest in known or digest in self.unparsed or digest not in self.facts.blob_sizes:
            return
        try:
            self.facts.manifests[digest] = parse_manifest(
                await self.ahead.get(paths.blob_data(digest))
            )
        except (RegistryError, PathNotFoundError, UnsafeEntryError) as exc:
            self.unparsed.add(digest)
            await self._odd(paths.blob_data(digest), f"not a readable manifest: {exc}")

    async def _read_children(self) -> None:
        """The children of every index read so far, and theirs, a level at a time."""
        level = list(self.facts.manifests.values())
        while wanted := sorted({
            child.digest for manifest in level for child in manifest.manifests
            if child.digest not in self.facts.manifests and child.digest not in self.unparsed
            and child.digest in self.facts.blob_sizes
        }):  # fmt: skip
            await self.ahead.fetch(paths.blob_data(d) for d in wanted)
            for digest in wanted:
                await self._read_manifest(digest)
            level = [self.facts.manifests[d] for d in wanted if d in self.facts.manifests]
            self.ahead.forget()

    async def _read_uploads(self, name: str) -> None:
        ids = await walk.upload_ids(self.snapshot, name, self._odd)
        infos = await self.snapshot.stat_many([paths.upload_data(name, i) for i in ids])
        for upload_id, info in zip(ids, infos, strict=True):
            size = info.size if isinstance(info, FileInfo) else 0
            age = await upload_age(self.driver, name, upload_id, self._odd)
            started = age.started_at if age is not None else None
            self.facts.uploads.append(UploadUsage(name, upload_id, size, started))


async def read_store(driver: StorageDriver, progress: Progress | None = None) -> StoreFacts:
    return await UsageReader(driver, progress).read()


# accounting ------------------------------------------------------------------------
class Usage:
    """The accounting of one read store."""

    def __init__(self, facts: StoreFacts) -> None:
        self.facts = facts
        self._closures: dict[Digest, frozenset[Digest]] = {}
        self.missing: set[tuple[Digest, Digest]] = set()  # (manifest, blob it lacks)

    def closure(self, digest: Digest) -> frozenset[Digest]:
        """The stored blobs a manifest keeps: itself, its config and layers, and its
        children's closures. Worked out without recursion (a store may nest indexes
        as deep as its writers like) and once per manifest; an index that names
        itself, or one that names it, ends the cycle there."""
        stack = [(digest, False)]
        entered: set[Digest] = set()
        while stack:
            current, children_done = stack.pop()
            if current in self._closures:
                continue
            manifest = self.facts.manifests.get(current)
            children = [c.digest for c in manifest.manifests] if manifest else []
            if not children_done:
                if current in entered:
                    continue  # a cycle: its first visit finishes it
                entered.add(current)
                stack.append((current, True))
                stack += [(c, False) for c in children if c not in self._closures]
                continue
            blobs = self._own_blobs(current, manifest)
            for child in children:
                blobs |= self._closures.get(child, frozenset())
            self._closures[current] = frozenset(blobs)
        return self._closures[digest]

    def _own_blobs(self, digest: Digest, manifest: Manifest | None) -> set[Digest]:
        blobs = {digest} if digest in self.facts.blob_sizes else set()
        for ref in manifest.blob_references() if manifest else ():
            if ref.digest in self.facts.blob_sizes:
                blobs.add(ref.digest)
            else:
                self.missing.add((digest, ref.digest))
        return blobs

    def part(self, blobs: Iterable[Digest]) -> Part:
        sizes = self.facts.blob_sizes
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

    def odd(self) -> list[tuple[str, str]]:
        found = list(self.facts.odd)
        for name, repo in sorted(self.facts.repositories.items()):
            held = set(repo.revisions)
            for tag in repo.tags:
                if tag.target not in held:
                    why = f"names {tag.target}, which is no manifest of {name}"
                    found.append((paths.tag_current_link(name, tag.name), why))
        for name in sorted(self.facts.repositories):
            for digest in self.facts.repositories[name].revisions:
                self.closure(digest)
        for manifest, blob in sorted(self.missing):
            found.append((paths.blob_data(blob), f"referenced by {manifest}, not stored"))
        return found

    def rows(self, by: str) -> list[Row]:
        """Every row of a kind (``BY``), sorted as ``du | sort -h`` sorts: smallest first."""
        owners: list[tuple[str, str, Digest | None, frozenset[Digest]]] = []
        for name, repo in sorted(self.facts.repositories.items()):
            if by == "repo":
                blobs = frozenset().union(*(self.closure(d) for d in repo.revisions))
                owners.append((name, "", None, blobs))
            elif by == "manifest":
                owners += [(name, "", d, self.closure(d)) for d in sorted(set(repo.revisions))]
        if by == "tag":
            owners = [(n, t.name, None, self.closure(t.target)) for n, t in self.served_tags()]
        count = Counter(b for *_, blobs in owners for b in blobs)
        rows = [
            Row(n, t, m, self.part(blobs), self.part(b for b in blobs if count[b] == 1))
            for n, t, m, blobs in owners
        ]
        return sorted(
            rows, key=lambda r: (r.referenced.bytes, r.repository, r.tag, str(r.manifest))
        )

    def summary(self) -> Summary:
        tagged = frozenset().union(*(self.closure(t.target) for _, t in self.served_tags()))
        revisions = (d for repo in self.facts.repositories.values() for d in repo.revisions)
        referenced = frozenset().union(*(self.closure(d) for d in revisions))
        stored = self.facts.blob_sizes.keys()
        uploads = self.facts.uploads
        return Summary(
            tagged=self.part(tagged),
            untagged=self.part(referenced - tagged),
            unreferenced=self.part(set(stored) - referenced),
            uploads=Part(sum(u.size for u in uploads), len(uploads)),
            blobs=self.part(stored),
        )


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
