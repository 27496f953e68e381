"""Mark and sweep: delete blobs no manifest references, as ``docker-registry
garbage-collect`` does, with three differences on purpose:

- a grace period: blobs and untagged manifests younger than it are kept (and what
  such a manifest references is marked), so a push in flight — blobs first, the
  manifest last — never loses its blobs between the two;
- with ``delete_untagged``, a manifest an index still references is kept and its
  own references are marked (registry 2.8 deletes an untagged multi-arch image's
  children and then their layers);
- a repository's layer links to swept or missing blobs are removed with them, so
  no link is left pointing at nothing (registry 2.8 leaves them).

Uploads are never touched here; ``purge-uploads`` clears them by age.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from ..drivers import PathNotFoundError, StorageDriver
from . import paths
from .digest import Digest
from .errors import InvalidLinkError, RegistryError
from .links import read_link
from .registry import Registry

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Deletion:
    kind: str  # "manifest", "blob" or "layer-link"
    digest: Digest
    repository: str = ""

    def __str__(self) -> str:
        where = f"{self.repository}@" if self.repository else ""
        return f"{self.kind} {where}{self.digest}"


@dataclass
class GcResult:
    marked: set[Digest] = field(default_factory=set)
    deleted: list[Deletion] = field(default_factory=list)
    kept_young: list[Deletion] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # revisions that could not be read


class GarbageCollector:
    def __init__(
        self,
        driver: StorageDriver,
        delete_untagged: bool = False,
        grace: timedelta = timedelta(hours=1),
        dry_run: bool = False,
        now: datetime | None = None,
    ) -> None:
        self.driver = driver
        self.registry = Registry(driver)
        self.blobs = self.registry.blobs
        self.delete_untagged = delete_untagged
        self.dry_run = dry_run
        self.cutoff = (now or datetime.now(UTC)) - grace
        self.result = GcResult()
        # (repository, manifest) pairs marked so far, kept indexes' children among them
        self.visited: set[tuple[str, Digest]] = set()

    async def run(self) -> GcResult:
        doomed_manifests: list[tuple[str, Digest]] = []
        repositories = await self.registry.repositories()
        for name in repositories:
            doomed_manifests += await self._mark_repository(name)
        for name, digest in doomed_manifests:
            if (name, digest) not in self.visited:  # else a kept index of its own needs it
                await self._delete_manifest(name, digest)
        swept = await self._sweep_blobs()
        for name in repositories:
            await self._sweep_layer_links(name, swept)
        return self.result

    # mark ------------------------------------------------------------------------
    async def _mark_repository(self, name: str) -> list[tuple[str, Digest]]:
        """Mark what the repository's kept manifests reference; return the untagged
        manifests to delete (when asked to)."""
        repo = self.registry.repository(name)
        tagged = await self._tagged(name) if self.delete_untagged else set()
        doomed = []
        for digest in await repo.manifests.digests():
            link = paths.manifest_revision_link(name, digest)
            if self.delete_untagged and digest not in tagged:
                if await self._younger_than_grace(link):
                    self.result.kept_young.append(Deletion("manifest", digest, name))
                else:
                    doomed.append((name, digest))
                    continue
            await self._mark_manifest(name, digest)
        return doomed

    async def _tagged(self, name: str) -> set[Digest]:
        tags = self.registry.repository(name).tags
        tagged = set()
        for tag in await tags.list():
            try:
                tagged.add(await tags.resolve(tag))
            except RegistryError:
                continue  # an odd or broken tag names nothing
        return tagged

    async def _mark_manifest(self, name: str, digest: Digest) -> None:
        """Mark a manifest and, through an index, its children: per repository, so
        that an index in two repositories keeps its children in both."""
        if (name, digest) in self.visited:
            return
        self.visited.add((name, digest))
        self.result.marked.add(digest)
        try:
            manifest = await self.registry.repository(name).manifests.get_parsed(digest)
        except RegistryError as exc:
            self.result.skipped.append(f"{name}@{digest}: {exc}")
            log.warning("%s@%s unreadable, its references stay unmarked: %s", name, digest, exc)
            return
        for ref in manifest.blob_references():
            self.result.marked.add(ref.digest)
        for child in manifest.manifests:
            await self._mark_manifest(name, child.digest)

    # sweep -----------------------------------------------------------------------
    async def _delete_manifest(self, name: str, digest: Digest) -> None:
        self.result.deleted.append(Deletion("manifest", digest, name))
        if self.dry_run:
            return
        for tag in await self.registry.repository(name).tags.list():
            entry = paths.tag_index_link(name, tag, digest).rsplit("/", 1)[0]
            await self.driver.delete_if_present(entry)
        revision = paths.manifest_revision_link(name, digest).rsplit("/", 1)[0]
        await self.driver.delete_if_present(revision)
        log.info("deleted manifest %s@%s", name, digest)

    async def _sweep_blobs(self) -> set[Digest]:
        swept = set()
        for digest in await self.blobs.digests():
            if digest in self.result.marked:
                continue
            if await self._younger_than_grace(paths.blob_data(digest)):
                self.result.kept_young.append(Deletion("blob", digest))
                continue
            swept.add(digest)
            self.result.deleted.append(Deletion("blob", digest))
            if not self.dry_run:
                await self.driver.delete_if_present(paths.blob_dir(digest))
                log.info("deleted blob %s", digest)
        return swept

    async def _sweep_layer_links(self, name: str, swept: set[Digest]) -> None:
        for digest in await self.registry.repository(name).layers.digests():
            link = paths.layer_link(name, digest)
            try:
                target = await read_link(self.driver, link)
            except (PathNotFoundError, InvalidLinkError):
                continue  # unreadable: fsck's business, not a collector's
            if target in swept or not await self.blobs.exists(target):
                self.result.deleted.append(Deletion("layer-link", digest, name))
                if not self.dry_run:
                    await self.driver.delete_if_present(link.rsplit("/", 1)[0])
                    log.info("deleted layer link %s@%s", name, digest)

    async def _younger_than_grace(self, path: str) -> bool:
        try:
            info = await self.driver.stat(path)
        except PathNotFoundError:
            return False
        return info.mod_time.astimezone(UTC) > self.cutoff
