"""Retention: delete tags by policy, then the manifests no remaining tag or index
needs, as the registry's own API deletes write the layout.

A tag's age is the modification time of its ``current`` link (what a push of the
tag last wrote). The registry deletes a tag by removing its directory (history
included), and a manifest by removing its revision's ``link`` (the directory stays,
empty); prune does the same, so the registry serving the store sees the result at
its next read. Blobs are left to ``gc``, which frees what nothing references then.
Just before deleting, prune looks again: a tag pushed again since the plan stays, and
a manifest that a tag or index written since needs stays too.

Nothing is deleted from a repository whose tags or manifests prune could not all
read and parse: an index it cannot read might need a manifest it would delete.
"""

from __future__ import annotations

import fnmatch
import logging
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from ..drivers import FileInfo, PathNotFoundError, StorageDriver
from ..storage import paths
from ..storage.digest import Digest
from ..storage.errors import RegistryError
from ..storage.graph import ManifestGraph
from ..storage.links import decode_link
from ..storage.registry import Registry
from .readahead import ReadAhead, read_revisions, tagged
from .usage import Tag

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Policy:
    """Which tags go. Each rule given narrows the tags deleted: beyond the newest
    ``keep_last``, older than ``older_than``, and never one ``keep_tags`` matches."""

    keep_last: int | None = None
    older_than: timedelta | None = None
    keep_tags: re.Pattern[str] | None = None

    def __post_init__(self) -> None:
        if self.keep_last is None and self.older_than is None and self.keep_tags is None:
            raise ValueError("give a policy: --keep-last, --older-than or --keep-tags")
        if self.keep_last is not None and self.keep_last < 0:
            raise ValueError(f"--keep-last must be 0 or more, not {self.keep_last}")

    def doomed(self, tags: list[Tag], now: datetime) -> list[Tag]:
        newest_first = sorted(tags, key=lambda t: (t.mod_time or now, t.name), reverse=True)
        chosen = newest_first
        if self.keep_last is not None:
            chosen = chosen[self.keep_last :]
        if self.older_than is not None:
            cutoff = now - self.older_than
            chosen = [t for t in chosen if (t.mod_time or now) < cutoff]
        if self.keep_tags is not None:
            chosen = [t for t in chosen if not self.keep_tags.fullmatch(t.name)]
        return sorted(chosen, key=lambda t: t.name)


@dataclass
class RepositoryPlan:
    name: str
    tags: list[Tag] = field(default_factory=list)
    manifests: list[Digest] = field(default_factory=list)


@dataclass
class PrunePlan:
    repositories: list[RepositoryPlan] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)  # non-empty: nothing is deleted

    @property
    def tags(self) -> int:
        return sum(len(r.tags) for r in self.repositories)

    @property
    def manifests(self) -> int:
        return sum(len(r.manifests) for r in self.repositories)


class NoMatchError(ValueError):
    """No repository matches the pattern."""


async def plan_prune(
    driver: StorageDriver, pattern: str, policy: Policy, now: datetime | None = None
) -> PrunePlan:
    """What prune would delete in the repositories ``pattern`` (a shell glob over
    the whole name) matches; reads only."""
    registry = Registry(driver)
    names = [n for n in await registry.repositories() if fnmatch.fnmatchcase(n, pattern)]
    if not names:
        raise NoMatchError(f"no repository matches {pattern!r}")
    plan = PrunePlan()
    for name in names:
        planner = _RepositoryPlanner(driver, name, plan.unreadable)
        found = await planner.plan(policy, now or datetime.now(UTC))
        if found.tags or found.manifests:
            plan.repositories.append(found)
    return plan


@dataclass
class _Repository:
    """A repository's tags, revisions and the manifests each index names, as read."""

    tags: list[Tag]
    revisions: set[Digest]
    graph: ManifestGraph

    def unneeded(self, gone: set[Digest]) -> set[Digest]:
        """The revisions that only the tags naming ``gone`` reached: what no remaining
        tag, and no revision outside their reach, needs."""
        candidates = self.graph.reachable(gone) & self.revisions
        roots = {t.target for t in self.tags} | (self.revisions - candidates)
        return candidates - self.graph.reachable(roots)


class _RepositoryPlanner:
    def __init__(self, driver: StorageDriver, name: str, unreadable: list[str]) -> None:
        self.driver = driver
        self.name = name
        self.unreadable = unreadable
        self.ahead = ReadAhead(driver)

    async def _odd(self, path: str, why: str) -> None:
        self.unreadable.append(f"{path}: {why}")

    async def plan(self, policy: Policy, now: datetime) -> RepositoryPlan:
        repository = await self.read()
        if repository is None:
            return RepositoryPlan(self.name)
        doomed = policy.doomed(repository.tags, now)
        repository.tags = [t for t in repository.tags if t not in doomed]
        unneeded = repository.unneeded({t.target for t in doomed})
        return RepositoryPlan(self.name, doomed, sorted(unneeded, key=str))

    async def read(self) -> _Repository | None:
        """The repository as it is now; None (and what it could not read, in
        ``unreadable``) when any tag or manifest it depends on cannot be read."""
        before = len(self.unreadable)
        tags = await self._tags()
        revisions = set()
        for digest, target in await read_revisions(self.driver, self.ahead, self.name, self._odd):
            if isinstance(target, Digest):
                revisions.add(target)
            elif not isinstance(target, PathNotFoundError):  # else deleted: no manifest
                await self._odd(paths.manifest_revision_link(self.name, digest), str(target))
        graph = ManifestGraph()
        await graph.read(self.ahead.manifests, revisions, self._unreadable_manifest)
        if len(self.unreadable) > before:
            return None
        return _Repository(tags, revisions, graph)

    async def _unreadable_tag(self, tag: str, exc: Exception) -> None:
        await self._odd(paths.tag_current_link(self.name, tag), str(exc))

    async def _unreadable_manifest(self, digest: Digest, exc: Exception) -> None:
        await self._odd(f"{self.name}@{digest}", f"manifest not readable: {exc}")

    async def _tags(self) -> list[Tag]:
        found = await tagged(self.driver, self.ahead, self.name, self._odd, self._unreadable_tag)
        links = [paths.tag_current_link(self.name, tag) for tag, _ in found]
        infos = await self.driver.stat_many(links)
        return [
            Tag(tag, target, info.mod_time.astimezone(UTC) if isinstance(info, FileInfo) else None)
            for (tag, target), info in zip(found, infos, strict=True)
        ]


async def apply_prune(driver: StorageDriver, plan: PrunePlan) -> list[str]:
    """Delete what ``plan`` names, looking again first: a tag pushed again since the
    plan stays, and so does a manifest that a tag or index written since needs.
    Returns what was kept so."""
    if plan.unreadable:
        raise RegistryError("prune deletes nothing from a store it could not read whole")
    kept = []
    for repo in plan.repositories:
        unreadable: list[str] = []
        gone = set()
        for tag in repo.tags:
            link = paths.tag_current_link(repo.name, tag.name)
            try:
                now = decode_link(link, await driver.get_content(link))
            except PathNotFoundError:
                continue  # deleted meanwhile
            if now != tag.target:
                kept.append(f"tag {repo.name}:{tag.name} (names {now} since)")
                continue
            if await driver.delete_if_present(paths.tag_dir(repo.name, tag.name)):
                log.info("deleted tag %s:%s", repo.name, tag.name)
            gone.add(tag.target)
        repository = await _RepositoryPlanner(driver, repo.name, unreadable).read()
        if repository is None:
            raise RegistryError(f"{repo.name} could not be read again: {'; '.join(unreadable)}")
        unneeded = repository.unneeded(gone)
        for digest in repo.manifests:
            if digest not in unneeded:  # a tag or index written since needs it
                why = "still needed, or its tag moved, since the plan"
                kept.append(f"manifest {repo.name}@{digest} ({why})")
                continue
            # the link alone, as the registry's DELETE leaves it: no manifest then
            if await driver.delete_if_present(paths.manifest_revision_link(repo.name, digest)):
                log.info("deleted manifest %s@%s", repo.name, digest)
    return kept


__all__ = ["NoMatchError", "Policy", "PrunePlan", "apply_prune", "plan_prune"]
