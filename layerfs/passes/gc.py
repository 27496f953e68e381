"""Mark and sweep: delete blobs no manifest references, as ``docker-registry
garbage-collect`` does, with these differences on purpose:

- an incomplete mark deletes nothing: if any manifest it finds (a revision, or an
  index's child) cannot be read or understood, the collector lists what it could
  not read and stops before the sweep (registry 2.8 stops too, for most of these);
- a grace period: a blob is kept while its ``data`` or any link naming it (a layer
  link or a manifest revision, in any repository) is younger than the grace, and an
  untagged manifest while its revision link is. A push that reuses a stored blob
  writes only a link, so the link's age is what tells a push in flight. Each blob is
  looked at again just before it is deleted, so a push between mark and sweep keeps
  what it linked;
- with ``delete_untagged``, a manifest an index still references is kept and its
  own references are marked (registry 2.8 deletes an untagged multi-arch image's
  children and then their layers);
- a repository's layer links to swept or missing blobs are removed with them, so
  no link is left pointing at nothing (registry 2.8 leaves them) — except a link to a
  missing blob whose bytes an upload of the repository still holds, or whose copy
  into ``blobs/`` is pending: a finish cut short, which ``fsck --repair`` completes.

As in the registry, a revision directory whose ``link`` was deleted (an API
DELETE) is no manifest, and a revision is the manifest its link names. An index's
children are read from their blobs, so an index whose children's revisions were
deleted (registry 2.8's ``-m``) still keeps what they reference.

Uploads are never touched here; ``purge-uploads`` clears them by age.
"""

from __future__ import annotations

import logging
from array import array
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import trio

from ..drivers import FileInfo, PathNotFoundError, StorageDriver, UnsafeEntryError
from ..storage import paths, walk
from ..storage.digest import Digest
from ..storage.errors import BlobUnknownError, InvalidLinkError
from ..storage.graph import ManifestGraph
from ..storage.holders import uploads_holding
from ..storage.links import decode_link
from ..storage.registry import Registry
from .blobtable import BlobMarks, Numbering
from .readahead import (
    Snapshot,
    marked_dirs,
    read_revisions,
    repository_dirs,
    tagged,
    tagged_dirs,
)
from .storepass import GROUP, OverStore, StorePass

log = logging.getLogger(__name__)

STAT_CONCURRENCY = 16  # link stats in flight while a blob is checked again


@dataclass(frozen=True)
class Deletion:
    kind: str  # "manifest", "blob" or "layer-link"
    digest: Digest
    repository: str = ""
    size: int = 0  # a blob's bytes

    def __str__(self) -> str:
        where = f"{self.repository}@" if self.repository else ""
        return f"{self.kind} {where}{self.digest}"


@dataclass
class GcResult:
    # what the mark reached, over the blobs listed before it (a byte a blob)
    marked: BlobMarks = field(default_factory=BlobMarks)
    deleted: list[Deletion] = field(default_factory=list)
    kept_young: list[Deletion] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)  # a non-empty list: nothing deleted
    skipped: list[str] = field(default_factory=list)  # symlinks the sweep left alone
    # the repositories that linked or held each blob (a layer link, a manifest, a
    # revision whose link was deleted): where by_repository counts what is freed
    holders: dict[Digest, set[str]] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        return not self.unreadable

    def by_repository(self) -> dict[str, RepositoryFreed]:
        """What the collection frees per repository. A blob counts under every
        repository that linked it (or whose deleted manifest it was), and under ""
        when none did; the ``total`` counts each blob once."""
        freed: dict[str, RepositoryFreed] = {}
        for deletion in self.deleted:
            if deletion.kind == "blob":
                for name in self.holders.get(deletion.digest) or {""}:
                    freed.setdefault(name, RepositoryFreed()).add_blob(deletion.size)
            else:
                freed.setdefault(deletion.repository, RepositoryFreed()).add(deletion.kind)
        return dict(sorted(freed.items()))

    def total(self) -> RepositoryFreed:
        total = RepositoryFreed()
        for deletion in self.deleted:
            if deletion.kind == "blob":
                total.add_blob(deletion.size)
            else:
                total.add(deletion.kind)
        return total


@dataclass
class RepositoryFreed:
    bytes: int = 0
    blobs: int = 0
    manifests: int = 0
    layer_links: int = 0

    def add_blob(self, size: int) -> None:
        self.bytes += size
        self.blobs += 1

    def add(self, kind: str) -> None:
        if kind == "manifest":
            self.manifests += 1
        else:
            self.layer_links += 1


# Called with each blob just before the sweep looks at it again (tests widen the
# window between mark and sweep with it).
BeforeBlobCheck = Callable[[Digest], Awaitable[None]]


async def _nothing(_: Digest) -> None:
    return None


class GarbageCollector(OverStore):
    def __init__(
        self,
        driver: StorageDriver,
        delete_untagged: bool = False,
        grace: timedelta = timedelta(hours=1),
        dry_run: bool = False,
        now: datetime | None = None,
        before_blob_check: BeforeBlobCheck = _nothing,
    ) -> None:
        self.driver = driver
        self.registry = Registry(driver)
        self.blobs = self.registry.blobs
        self._pending_blobs: set[str] | None = None  # writes pending below blobs/
        self.delete_untagged = delete_untagged
        self.dry_run = dry_run
        self.cutoff = (now or datetime.now(UTC)) - grace
        self.before_blob_check = before_blob_check
        self.result = GcResult()
        # each repository's manifests marked so far, by number, kept indexes'
        # children among them
        self.visited: defaultdict[str, set[int]] = defaultdict(set)
        self.numbering = Numbering()  # the blobs listed, numbered, and any other digest
        # each repository's layer links as the mark's listing found them, by number:
        # the sweep lists no repository again
        self.layer_links: dict[str, array[int]] = {}
        descend = tagged_dirs if delete_untagged else marked_dirs
        self.store = StorePass(driver, descend)  # the store's listings, a group at a time

    async def run(self) -> GcResult:
        await self.store.read_top()
        self.numbering = Numbering(await self.store.blob_table())
        self.result.marked = BlobMarks(self.numbering)
        doomed_manifests: list[tuple[str, Digest]] = []
        names = await self.store.repositories(self._odd)
        async with self.store.groups(names) as groups:
            async for group in groups:
                doomed_manifests += await self._mark_group(group)
        if not self.result.complete:
            log.error(
                "%d manifests or repositories could not be read; nothing deleted",
                len(self.result.unreadable),
            )
            return self.result
        for name, digest in doomed_manifests:
            if self.numbering.known(digest) not in self.visited[name]:  # else a kept index
                try:  # of its own needs it
                    await self._delete_manifest(name, digest)
                except UnsafeEntryError as exc:  # a symlink on the way: the manifest stays,
                    self.result.skipped.append(str(exc))  # so what it references does too
                    await self._mark_manifests([(name, digest)])
        repositories = names if self.dry_run else await self._repositories_now()
        swept = await self._sweep_blobs(repositories)
        for start in range(0, len(repositories), GROUP):
            group = repositories[start : start + GROUP]
            candidates = {name: await self._dangling(name, swept) for name in group}
            await self.ahead.fetch(
                paths.layer_link(name, d) for name, found in candidates.items() for d in found
            )
            for name in group:
                await self._sweep_layer_links(name, candidates[name], swept)
            self.ahead.forget()
        return self.result

    async def _repositories_now(self) -> list[str]:
        """The repositories as they are now: pushes during the mark may have made more
        (and the sweep adds those made since). A dry run deletes nothing, so it
        sweeps the repositories its mark read, as the registry's collector does."""
        now = await Snapshot.read(self.driver, paths.REPOSITORIES, repository_dirs)
        return await self.registry.repositories(walk.log_odd, now)

    # mark ------------------------------------------------------------------------
    async def _mark_group(self, group: list[str]) -> list[tuple[str, Digest]]:
        """Mark what a group of repositories holds; returns the manifests that go."""
        await self._read_ahead(group)
        doomed: list[tuple[str, Digest]] = []
        kept: list[tuple[str, Digest]] = []
        for name in group:
            try:
                doomed += await self._sort_revisions(name, kept)
            except UnsafeEntryError as exc:
                self._unreadable(f"{name}: {exc}", "repository")
            raws, others = await walk.digest_dir_values(self.snapshot, paths.layers_dir(name))
            numbers = array("l", map(self.numbering.number_raw, raws))
            numbers.extend(map(self.numbering.number, others))
            self.layer_links[name] = numbers
        await self._mark_manifests(kept)
        return doomed

    async def _read_ahead(self, names: list[str]) -> None:
        """The revision links (and, to delete untagged ones, the tags) of these
        repositories, then the manifests they name: a few batched reads."""
        await self.ahead.fetch_repositories(self.snapshot, names, tags=self.delete_untagged)

    async def _sort_revisions(
        self, name: str, kept: list[tuple[str, Digest]]
    ) -> list[tuple[str, Digest]]:
        """Add to ``kept`` the repository's manifests to mark; return the untagged
        manifests to delete (when asked to)."""
        tagged = await self._tagged(name) if self.delete_untagged else set()
        doomed = []
        for digest in await self._revisions(name):
            link = paths.manifest_revision_link(name, digest)
            if self.delete_untagged and digest not in tagged:
                if await self._younger_than_grace(link):
                    self.result.kept_young.append(Deletion("manifest", digest, name))
                else:
                    doomed.append((name, digest))
                    continue
            kept.append((name, digest))
        return doomed

    async def _revisions(self, name: str) -> list[Digest]:
        """The manifests a repository holds: the targets of its revision links. A
        directory whose link was deleted is no manifest; a link that cannot be read
        is an unreadable manifest."""
        found = []
        for digest, target in await read_revisions(self.snapshot, self.ahead, name, self._odd):
            if isinstance(target, PathNotFoundError):  # deleted through the API: the
                # registry's collector skips it too; it was name's, for the account
                self.result.holders.setdefault(digest, set()).add(name)
            elif isinstance(target, Exception):
                self._unreadable(f"{name}@{digest}: {target}")
            else:
                found.append(target)
        return found

    async def _tagged(self, name: str) -> set[Digest]:
        """What the tags name (``readahead.tagged``); a tag whose link cannot be read
        leaves the mark incomplete, as it fails the registry's collector."""

        async def unreadable(tag: str, exc: Exception) -> None:
            self._unreadable(f"{name}:{tag}: {exc}", "tag")

        tags = await tagged(self.snapshot, self.ahead, name, self._odd, unreadable)
        return {target for _, target in tags}

    async def _mark_manifests(self, kept: list[tuple[str, Digest]]) -> None:
        """Mark these manifests and, through indexes, their children (read a level at
        a time, ``ManifestGraph``): per repository, so that an index in two
        repositories keeps its children in both."""
        graph = ManifestGraph(self.numbering)  # a group's: its memory is bounded
        await graph.read(self.ahead.manifests, {digest for _, digest in kept})
        for name, digest in kept:
            self._mark(graph, name, digest)

    def _mark(self, graph: ManifestGraph, name: str, digest: Digest) -> None:
        """Mark a manifest of ``graph`` and what it reaches in repository ``name``."""
        for current in graph.walk([graph.number(digest)], self.visited[name]):
            self.result.marked.add_number(current)
            node = graph.nodes.get(current)
            if node is None:
                why = graph.unreadable.get(current)
                if isinstance(why, PathNotFoundError):
                    why = BlobUnknownError(graph.digest(current))
                self._unreadable(f"{name}@{graph.digest(current)}: {why}")
                continue
            for blob in node.blobs:
                self.result.marked.add_number(blob)

    def _unreadable(self, what: str, kind: str = "manifest") -> None:
        self.result.unreadable.append(what)
        log.error("unreadable %s %s", kind, what)

    async def _odd(self, path: str, why: str) -> None:
        """An entry the mark cannot read or understand where it looks for manifests
        (a repository, a revision or a tag directory that is a symbolic link, a name
        that is no digest): what it holds is unknown, so nothing may be deleted."""
        self._unreadable(f"{path}: {why}", "entry")

    # sweep -----------------------------------------------------------------------
    async def _delete_manifest(self, name: str, digest: Digest) -> None:
        if not self.dry_run:
            for tag in await self.registry.repository(name).tags.list():
                entry = paths.parent(paths.tag_index_link(name, tag, digest))
                await self.driver.delete_if_present(entry)
            revision = paths.parent(paths.manifest_revision_link(name, digest))
            await self.driver.delete_if_present(revision)
            log.info("deleted manifest %s@%s", name, digest)
        self.result.deleted.append(Deletion("manifest", digest, name))
        self.result.holders.setdefault(digest, set()).add(name)

    async def _sweep_blobs(self, repositories: list[str]) -> set[Digest]:
        """Blobs listed before the mark and not marked (one pushed since is not
        listed, so not swept)."""
        swept = set()
        for digest in self.result.marked.unmarked():  # in (algorithm, hex) order
            await self.before_blob_check(digest)
            try:
                if await self._sweep_blob(digest, repositories):
                    swept.add(digest)
            except UnsafeEntryError as exc:
                self.result.skipped.append(str(exc))
                log.warning("blob %s kept: %s", digest, exc)
        return swept

    async def _sweep_blob(self, digest: Digest, repositories: list[str]) -> bool:
        """Delete one unmarked blob unless something young names it; True if gone."""
        if await self._blob_is_young(digest, repositories) or (
            not self.dry_run and await self._linked_young_in_new(digest, repositories)
        ):
            self.result.kept_young.append(Deletion("blob", digest))
            return False
        size = await self._size(digest)
        if not self.dry_run:
            await self.driver.delete_if_present(paths.blob_dir(digest))
            log.info("deleted blob %s", digest)
        self.result.deleted.append(Deletion("blob", digest, size=size))
        return True

    async def _size(self, digest: Digest) -> int:
        """A blob's bytes: from the listing where it gave them (S3), else a stat."""
        (info,) = await self.snapshot.stat_many([paths.blob_data(digest)])
        return info.size if isinstance(info, FileInfo) else 0

    async def _blob_is_young(
        self, digest: Digest, repositories: list[str], data: bool = True
    ) -> bool:
        """The blob's data or any layer link or revision naming it in ``repositories``
        is younger than the grace (looked at now, just before a delete)."""
        places = [paths.blob_data(digest)] if data else []
        for name in repositories:
            places += [paths.layer_link(name, digest), paths.manifest_revision_link(name, digest)]
        young = False
        limiter = trio.CapacityLimiter(STAT_CONCURRENCY)

        async def check(path: str) -> None:
            nonlocal young
            async with limiter:
                if not young and await self._younger_than_grace(path):
                    young = True

        async with trio.open_nursery() as nursery:
            for path in places:
                nursery.start_soon(check, path)
        return young

    async def _linked_young_in_new(self, digest: Digest, repositories: list[str]) -> bool:
        """Just before a delete: a repository made since ``repositories`` was listed
        (a push into a new one) that links the blob young. One listing of the
        repositories per deleted blob; ``repositories`` grows by what it finds."""
        new = sorted(set(await self.registry.repositories()) - set(repositories))
        repositories += new
        return bool(new) and await self._blob_is_young(digest, new, data=False)

    async def _dangling(self, name: str, swept: set[Digest]) -> list[Digest]:
        """The layer links of ``name`` that may name a blob that is gone (``_may_dangle``):
        from the mark's listing, or for a repository made since, listed now."""
        numbers = self.layer_links.get(name)
        if numbers is None:
            layers = await walk.digest_dirs(self.driver, paths.layers_dir(name))
            return [d for d, _ in layers if self._may_dangle(d, swept)]
        listed = self.numbering.table.size
        gone = {self.numbering.known(d) for d in swept}
        return [self.numbering.digest(n) for n in numbers if n >= listed or n in gone]

    async def _sweep_layer_links(self, name: str, links: list[Digest], swept: set[Digest]) -> None:
        """Delete those of ``links`` (layer links of ``name`` that may dangle) whose
        blob is gone, but for a blob whose bytes are still somewhere."""
        doomed: list[tuple[Digest, str, Digest]] = []
        for digest in links:
            link = paths.layer_link(name, digest)
            try:
                target = decode_link(link, await self.ahead.get(link))
            except (PathNotFoundError, InvalidLinkError):
                continue  # deleted through the API, or unreadable: fsck's business
            except UnsafeEntryError as exc:  # a symlink: left for the operator (fsck names it)
                self.result.skipped.append(str(exc))
                continue
            listed = self.result.marked.listed(target) and target not in swept
            if not listed and (target in swept or not await self.blobs.exists(target)):
                doomed.append((digest, link, target))
        unstored = {t for _, _, t in doomed if t not in swept}
        last_copies = await self._last_copies(name, unstored)
        for digest, link, target in doomed:
            if target in last_copies:
                self.result.skipped.append(
                    f"{name}: layer link to {target} kept: {last_copies[target]}"
                    " (fsck --repair completes its finish)"
                )
                continue
            self.result.deleted.append(Deletion("layer-link", digest, name))
            self.result.holders.setdefault(target, set()).add(name)
            if not self.dry_run:
                await self.driver.delete_if_present(paths.parent(link))
                log.info("deleted layer link %s@%s", name, digest)

    def _may_dangle(self, digest: Digest, swept: set[Digest]) -> bool:
        """Whether the layer link at ``digest``'s path may name a blob that is gone:
        not when the blob its path names is listed and kept. Such a link is not read
        (a store of 200,000 layer links costs as many reads); one whose bytes name
        another blob than its path is fsck's to report (``link-mismatch``)."""
        return not self.result.marked.listed(digest) or digest in swept

    async def _last_copies(self, name: str, unstored: set[Digest]) -> dict[Digest, str]:
        """Of the blobs ``name`` links that are not stored, those whose bytes still
        are somewhere, with where: a copy into ``blobs/`` pending, or an upload."""
        found: dict[Digest, str] = {}
        if not unstored:
            return found
        if self._pending_blobs is None:  # listed once per run, and only when needed
            self._pending_blobs = {w.path for w in await self.driver.pending_writes(paths.BLOBS)}
        pending = self._pending_blobs
        for target in unstored:
            if paths.blob_data(target) in pending:
                found[target] = "its copy into blobs/ is pending"
        holders = await uploads_holding(self.registry, name, unstored)
        for target, upload_id in holders.items():
            found[target] = f"upload {upload_id} holds its bytes"
        if holders.unread:  # an upload that could not be read might hold any of them
            for target in unstored - found.keys():
                found[target] = f"uploads {', '.join(sorted(holders.unread))} were not read"
        return found

    async def _younger_than_grace(self, path: str) -> bool:
        """Whether ``path`` is younger than the grace; a symlink there has no age that
        can be trusted, so what it names is kept as if it were young."""
        try:
            info = await self.driver.stat(path)
        except PathNotFoundError:
            return False
        except UnsafeEntryError as exc:
            self.result.skipped.append(str(exc))
            log.warning("kept what %s names: %s", path, exc.what)
            return True
        return info.mod_time.astimezone(UTC) > self.cutoff
