"""Listing an S3 store: a directory is a key prefix, found with delimiter listings
and, for whole trees, with listings without one run in parallel by prefix."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import trio

from ..base import LISTINGS_AT_ONCE, FileInfo, PathNotFoundError, TreeEntry

if TYPE_CHECKING:
    from .driver import S3Driver

FLAT_PAGES = 1  # tree_infos: pages of keys tried before listing level by level
FLAT_CHECK_FROM = 8  # children of a listing checked for keys by one listing of them all
FLAT_CHECK_KEYS = 8  # keys a child is given in that listing before it is checked alone
SPLIT_LEVELS = 3  # tree: levels listed with a delimiter to find prefixes to list at once
SMALL_ETAG = 1024  # objects up to this size keep their listing's ETag in a tree


class Listing:
    """The listings of one driver's store."""

    def __init__(self, driver: S3Driver) -> None:
        self.driver = driver

    async def level(self, path: str) -> tuple[dict[str, dict], set[str]]:
        """The files (with their listing entries) and directories directly below
        ``path``, every page of them."""
        files, children, _ = await self.page_through(path, "/")
        base = "" if path == "/" else path
        key = self.driver.key(path, allow_root=True)
        prefix = key.rstrip("/") + "/" if key else ""
        dirs = await self.drop_empty_dirs(set(children) - set(files), base, prefix)
        if not dirs and not files and path != "/":
            raise PathNotFoundError(path, self.driver.name)
        return files, dirs

    async def tree(self, path: str) -> dict[str, list[TreeEntry]]:
        """In parallel by prefix: the first levels are listed with a delimiter until
        there are LISTINGS_AT_ONCE prefixes (or SPLIT_LEVELS levels), then each
        prefix's keys in one paginated listing without one, LISTINGS_AT_ONCE at a time.
        Directories are made from the keys found, so an emptied prefix (which SeaweedFS
        keeps listing) shows nowhere; ``descend`` prunes nothing, since every key
        below a prefix comes in the same pages."""
        files: dict[str, tuple[int, str]] = {}  # every file found: size, small ETag
        frontier = [path]
        limiter = trio.CapacityLimiter(LISTINGS_AT_ONCE)
        for _ in range(SPLIT_LEVELS):
            if len(frontier) >= LISTINGS_AT_ONCE:
                break
            deeper: list[str] = []

            async def split(directory: str, deeper: list[str] = deeper) -> None:
                async with limiter:
                    found, prefixes, _ = await self.page_through(directory, "/")
                files.update((p, size_and_etag(item)) for p, item in found.items())
                deeper += prefixes

            async with trio.open_nursery() as nursery:
                for directory in frontier:
                    nursery.start_soon(split, directory)
            frontier = deeper

        async def flat(directory: str) -> None:
            async with limiter:
                found = (await self.page_through(directory, ""))[0]
            files.update((p, size_and_etag(item)) for p, item in found.items())

        async with trio.open_nursery() as nursery:
            for directory in frontier:
                nursery.start_soon(flat, directory)
        tree = tree_of(path, files)
        if path not in tree and path != "/":
            raise PathNotFoundError(path, self.driver.name)
        return tree

    async def tree_infos(self, path: str, limit: int) -> dict[str, list[FileInfo]]:
        """The directories below ``path`` made from their keys, as few requests as
        that takes: when the keys below ``path`` fit in FLAT_PAGES pages (and
        ``limit``), one listing without a delimiter. Otherwise ``path``'s own level,
        then each child directory's keys in one listing without a delimiter, in
        parallel, while they fit in ``limit``: a browser entering the children and
        their children next (``find``, ``ls -R``) finds them read. A child whose keys
        outrun its share is left to be listed when entered. Directories made from
        keys hide an emptied prefix (which SeaweedFS keeps listing) with no request to
        check it."""
        if limit > 0:
            flat = await self.flat_tree(path, min(limit, FLAT_PAGES * 1000))
            if flat is not None:
                if path not in flat and path != "/":
                    raise PathNotFoundError(path, self.driver.name)
                return flat or {path: []}
        files, prefixes, _ = await self.page_through(path, "/")
        children = set(prefixes) - set(files)
        tree: dict[str, list[FileInfo]] = {}
        empty: set[str] = set()
        unread: set[str] = set()
        share = max(1000, limit // max(1, len(children)))
        limiter = trio.CapacityLimiter(LISTINGS_AT_ONCE)
        seen = len(files) + len(children)

        async def read(child: str) -> None:
            nonlocal seen
            async with limiter:
                if seen >= limit:
                    unread.add(child)
                    return
                below = await self.flat_tree(child, share)
            if below is None:
                return  # more keys than its share: listed when entered
            if child not in below:
                empty.add(child)
                return
            tree.update(below)
            seen += sum(len(entries) for entries in below.values())

        async with trio.open_nursery() as nursery:
            for child in children:
                nursery.start_soon(read, child)
        key = self.driver.key(path, allow_root=True)
        prefix = key.rstrip("/") + "/" if key else ""
        base = "" if path == "/" else path
        dirs = children - empty - unread | await self.drop_empty_dirs(unread, base, prefix)
        if not dirs and not files and path != "/":
            raise PathNotFoundError(path, self.driver.name)
        tree[path] = level_infos(files, dirs)
        return tree

    async def flat_tree(self, path: str, most: int) -> dict[str, list[FileInfo]] | None:
        """Every directory below ``path`` with its entries, from one listing without a
        delimiter of at most ``most`` keys; None when there are more."""
        files, _, complete = await self.page_through(path, "", stop_after=most)
        if not complete:
            return None
        now = datetime.now(UTC)
        return {
            directory: [
                FileInfo(p, 0, now, True)
                if is_dir
                else FileInfo(p, files[p]["Size"], files[p]["LastModified"], False)
                for p, is_dir in entries
            ]
            for directory, entries in dirs_of(path, list(files)).items()
        }

    async def page_through(
        self, path: str, delimiter: str, stop_after: int = 0
    ) -> tuple[dict[str, dict], list[str], bool]:
        """The files below ``path`` (with their listing entries) and, with a
        delimiter, the prefixes, every page of them, or (with ``stop_after``) the
        pages up to that many keys; whether every page was read."""
        key = self.driver.key(path, allow_root=True)
        prefix = key.rstrip("/") + "/" if key else ""
        base = "" if path == "/" else path
        files: dict[str, dict] = {}
        prefixes: list[str] = []
        token = None
        while True:
            kwargs: dict[str, Any] = {"Bucket": self.driver.bucket, "Prefix": prefix}
            if delimiter:
                kwargs["Delimiter"] = delimiter
            if stop_after:
                kwargs["MaxKeys"] = min(1000, stop_after)
            if token:
                kwargs["ContinuationToken"] = token
            resp = await self.driver.requests.call(self.driver.client.list_objects_v2, **kwargs)
            for item in resp.get("Contents", []):
                name = item["Key"][len(prefix) :]
                if name and not name.endswith("/"):  # not a folder entry (SeaweedFS)
                    files[f"{base}/{name}"] = item
            for common in resp.get("CommonPrefixes", []):
                prefixes.append(f"{base}/{common['Prefix'][len(prefix):].rstrip('/')}")
            if not resp.get("IsTruncated"):
                return files, prefixes, True
            if stop_after and len(files) + len(prefixes) >= stop_after:
                return files, prefixes, False
            token = resp["NextContinuationToken"]

    async def holds_keys(self, prefix: str) -> bool:
        """Whether an object lives below ``prefix``; folder entries (keys ending in
        ``/``, which SeaweedFS lists for emptied directories) do not count."""
        token = None
        while True:
            kwargs: dict[str, Any] = {"Bucket": self.driver.bucket, "Prefix": prefix, "MaxKeys": 10}
            if token:
                kwargs["ContinuationToken"] = token
            resp = await self.driver.requests.call(self.driver.client.list_objects_v2, **kwargs)
            if any(not o["Key"].endswith("/") for o in resp.get("Contents", [])):
                return True
            if not resp.get("IsTruncated"):
                return False
            token = resp["NextContinuationToken"]

    async def drop_empty_dirs(self, children: set[str], base: str, prefix: str) -> set[str]:
        """Some S3-compatible servers (SeaweedFS) keep listing a prefix whose keys are
        all gone; a directory here is a prefix that still holds a key. Many children
        are checked with one listing of their parent's keys (a directory of uploads:
        one request, not one per upload), as far as it goes; the rest one by one."""
        holding: set[str] = set()
        if len(children) > FLAT_CHECK_FROM:
            holding, complete = await self.children_holding_keys(base, len(children))
            holding &= children
            if complete:
                return holding
            children = children - holding
        empty: set[str] = set()

        async def check(child: str) -> None:
            if not await self.holds_keys(prefix + child[len(base) + 1 :] + "/"):
                empty.add(child)

        async with trio.open_nursery() as nursery:
            for child in children:
                nursery.start_soon(check, child)
        return holding | (children - empty)

    async def children_holding_keys(self, base: str, count: int) -> tuple[set[str], bool]:
        """The child directories of ``base`` that hold a key, from one listing without
        a delimiter of up to ``FLAT_CHECK_KEYS`` keys a child; whether it saw them all."""
        files, _, complete = await self.page_through(
            base or "/", "", stop_after=min(count * FLAT_CHECK_KEYS, 10_000)
        )
        holding = {f"{base}/{p[len(base) + 1 :].split('/', 1)[0]}" for p in files}
        return holding, complete


def level_infos(files: dict[str, dict], dirs: set[str]) -> list[FileInfo]:
    """One directory's entries from its listing, in path order: each file's size and
    time from its entry; a directory has no time of its own on S3, so it gets now."""
    now = datetime.now(UTC)
    infos = [FileInfo(p, item["Size"], item["LastModified"], False) for p, item in files.items()]
    return sorted(infos + [FileInfo(p, 0, now, True) for p in dirs], key=lambda i: i.path)


def size_and_etag(item: dict) -> tuple[int, str]:
    """A listed object's size, and its ETag (no quotes) when it is small."""
    size = item["Size"]
    return size, item.get("ETag", "").strip('"') if size <= SMALL_ETAG else ""


def tree_of(top: str, files: dict[str, tuple[int, str]]) -> dict[str, list[TreeEntry]]:
    """The directories (with their entries) that the files below ``top`` (with their
    sizes and small ETags) make."""
    return {
        directory: [TreeEntry(p, True) if is_dir else TreeEntry(p, False, "", *files[p])
                    for p, is_dir in entries]
        for directory, entries in dirs_of(top, list(files)).items()
    }  # fmt: skip


def dirs_of(top: str, files: list[str]) -> dict[str, list[tuple[str, bool]]]:
    """Each directory the file paths below ``top`` make, with its entries (path, is a
    directory) in name order."""
    below: dict[str, dict[str, bool]] = {}  # "" is the root
    base = "" if top == "/" else top
    for path in files:
        parent = path.rpartition("/")[0]
        known = parent in below  # then so is the chain above it
        below.setdefault(parent, {})[path] = False
        while not known and len(parent) > len(base):
            up = parent.rpartition("/")[0]
            known = up in below
            below.setdefault(up, {})[parent] = True
            parent = up
    return {directory or "/": sorted(entries.items()) for directory, entries in below.items()}
