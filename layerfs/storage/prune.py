"""Retention: delete tags by policy, then the manifests no remaining tag or index
needs, as the registry's own API deletes write the layout.

A tag's age is the modification time of its ``current`` link (what a push of the
tag last wrote). The registry deletes a tag by removing its directory (history
included), and a manifest by removing its revision's ``link`` (the directory stays,
empty); prune does the same, so the registry serving the store sees the result at
its next read. Blobs are left to ``gc``, which frees what nothing references then.

Nothing is deleted from a repository whose tags or manifests prune could not all
read and parse: an index it cannot read might need a manifest it would delete.
"""

from __future__ import annotations

import fnmatch
import logging
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from ..drivers import FileInfo, PathNotFoundError, StorageDriver, UnsafeEntryError
from . import paths, walk
from .digest import Digest
from .errors import InvalidLinkError, RegistryError
from .links import decode_link
from .manifests import parse_manifest
from .registry import Registry
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


class _RepositoryPlanner:
    def __init__(self, driver: StorageDriver, name: str, unreadable: list[str]) -> None:
        self.driver = driver
        self.name = name
        self.unreadable = unreadable
        self.children: dict[Digest, list[Digest]] = {}

    async def _odd(self, path: str, why: str) -> None:
        self.unreadable.append(f"{path}: {why}")

    async def plan(self, policy: Policy, now: datetime) -> RepositoryPlan:
        before = len(self.unreadable)
        tags = await self._tags()
        revisions = await self._revisions()
        for digest in revisions:
            await self._read_children(digest)
        if len(self.unreadable) > before:
            return RepositoryPlan(self.name)
        doomed = policy.doomed(tags, now)
        kept = [t for t in tags if t not in doomed]
        candidates = self._reachable({t.target for t in doomed}) & revisions
        roots = {t.target for t in kept} | (revisions - candidates)
        needed = self._reachable(roots)
        return RepositoryPlan(self.name, doomed, sorted(candidates - needed, key=str))

    async def _tags(self) -> list[Tag]:
        names = await walk.names(self.driver, paths.tags_dir(self.name), self._odd)
        links = [paths.tag_current_link(self.name, tag) for tag in names]
        contents = await self.driver.get_contents(links)
        infos = await self.driver.stat_many(links)
        found = []
        for tag, link, content, info in zip(names, links, contents, infos, strict=True):
            if isinstance(content, PathNotFoundError):
                continue  # a tag directory without current: the registry lists nothing
            try:
                if isinstance(content, Exception):
                    raise content
                target = decode_link(link, content)
            except (InvalidLinkError, UnsafeEntryError) as exc:
                await self._odd(link, str(exc))
                continue
            when = info.mod_time.astimezone(UTC) if isinstance(info, FileInfo) else None
            found.append(Tag(tag, target, when))
        return found

    async def _revisions(self) -> set[Digest]:
        found = set()
        directory = paths.manifest_revisions(self.name)
        entries = await walk.digest_dirs(self.driver, directory, self._odd)
        links = [f"{entry}/link" for _, entry in entries]
        for link, content in zip(links, await self.driver.get_contents(links), strict=True):
            if isinstance(content, PathNotFoundError):
                continue  # deleted through the API
            try:
                if isinstance(content, Exception):
                    raise content
                found.add(decode_link(link, content))
            except (InvalidLinkError, UnsafeEntryError) as exc:
                await self._odd(link, str(exc))
        return found

    async def _read_children(self, digest: Digest) -> None:
        """The manifests an index names, and theirs."""
        if digest in self.children:
            return
        self.children[digest] = []
        try:
            manifest = parse_manifest(await self.driver.get_content(paths.blob_data(digest)))
        except (RegistryError, PathNotFoundError, UnsafeEntryError) as exc:
            await self._odd(f"{self.name}@{digest}", f"manifest not readable: {exc}")
            return
        self.children[digest] = [child.digest for child in manifest.manifests]
        for child in self.children[digest]:
            await self._read_children(child)

    def _reachable(self, roots: set[Digest]) -> set[Digest]:
        seen: set[Digest] = set()
        stack = list(roots)
        while stack:
            digest = stack.pop()
            if digest not in seen:
                seen.add(digest)
                stack += self.children.get(digest, [])
        return seen


async def apply_prune(driver: StorageDriver, plan: PrunePlan) -> list[str]:
    """Delete what ``plan`` names; returns what was kept after all (a manifest a tag
    pushed since names)."""
    if plan.unreadable:
        raise RegistryError("prune deletes nothing from a store it could not read whole")
    registry = Registry(driver)
    kept = []
    for repo in plan.repositories:
        repository = registry.repository(repo.name)
        for tag in repo.tags:
            if await driver.delete_if_present(paths.tag_dir(repo.name, tag.name)):
                log.info("deleted tag %s:%s", repo.name, tag.name)
        for digest in repo.manifests:
            naming = await repository.tags.tags_of(digest)
            if naming:  # tagged since the plan: it stays
                kept.append(f"{repo.name}@{digest} (tagged {', '.join(naming)} since)")
                continue
            # the link alone, as the registry's DELETE leaves it: no manifest then
            if await driver.delete_if_present(paths.manifest_revision_link(repo.name, digest)):
                log.info("deleted manifest %s@%s", repo.name, digest)
    return kept


__all__ = ["NoMatchError", "Policy", "PrunePlan", "apply_prune", "plan_prune"]
