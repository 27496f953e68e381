"""What a pass over the whole store (fsck, gc, du; ``storepass.py``) reads ahead, so
that it costs a few batched requests instead of one per directory and one per link
file.

- :class:`Snapshot`: the listings the walks need, from ``driver.list_tree`` (one
  worker thread on a local disk, prefixes listed in parallel on S3), each kept
  packed (``TreeListing``). It answers
  ``list_if_present`` as the driver would at the moment it was read; a directory it
  did not descend into (a blob or link directory, which holds one file) is asked of
  the driver.
- :class:`ReadAhead`: small files (link files, manifests) fetched in batches by
  ``driver.get_contents`` before the checks that read them one by one; each is
  handed out once, and anything not read ahead is read from the driver then.

Both only read. A pass that deletes looks at what it deletes again first (gc's grace
check), so a snapshot a little old never makes it delete what is in use.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime

from ..drivers import FileInfo, PathNotFoundError, StorageDriver, UnsafeEntryError
from ..drivers.base import Absent, Descend, FilesBelow, Refusing, TreeEntry
from ..drivers.treelisting import TreeListing, listings
from ..storage import paths, walk
from ..storage.digest import CANONICAL, Digest
from ..storage.errors import InvalidLinkError
from ..storage.links import decode_link

# A tag's history entries tried against its ``current`` link's ETag: the newest
# manifests a tag named are usually few; a longer history is read as a file.
HISTORY_CANDIDATES = 64
# ``list_tree``'s ``descend`` for the layout: every directory a walk lists, not the
# blob and link directories (a digest's hex: they hold only ``data`` or ``link``) nor
# a tag's ``current``. A pattern, so that a walk can run in another process.
layout_dirs = Refusing(r"/(?:current|[0-9a-f]{32,})$")
# what a pass reads below the directories a walk of a repository does not enter:
# every link file (layers, revisions, a tag's current link and its index)
REPOSITORY_LINKS = FilesBelow(paths.LINK)


def marked_dirs(path: str) -> bool:
    """``descend`` for a mark that reads no tags: ``layout_dirs`` but for the tags'
    own directories and the uploads."""
    return layout_dirs(path) and not paths.is_uploads_or_tags_dir(path)


def tagged_dirs(path: str) -> bool:
    """``descend`` for a pass that reads what tags name, not their history (du, gc
    deleting untagged manifests): ``layout_dirs`` but for each tag's ``index``."""
    return layout_dirs(path) and not paths.is_tag_index_dir(path)


def usage_dirs(path: str) -> bool:
    """``descend`` for du: ``tagged_dirs`` but for the layer links, which account
    for no byte (a blob's bytes are counted once, in ``blobs/``)."""
    return tagged_dirs(path) and not paths.is_layers_dir(path)


def repository_dirs(path: str) -> bool:
    """``descend`` for finding repositories: not into ``_layers`` and the like."""
    return not path.rsplit("/", 1)[1].startswith("_")


class Snapshot:
    """The listings below ``top`` as one ``list_tree`` found them, each kept packed
    (``TreeListing``: a hex-named directory costs its raw bytes, not a path)."""

    def __init__(self, driver: StorageDriver, tree: dict[str, Sequence[TreeEntry]]) -> None:
        self.driver = driver
        self.tree = listings(tree)
        self.odd_tops: dict[str, str] = {}  # a top that could not be entered
        # whether any file came with an ETag: else no link is proven (a local disk's)
        self.etags = any(listing.has_etags() for listing in self.tree.values())

    def beside(self, tree: dict[str, Sequence[TreeEntry]]) -> Snapshot:
        """This snapshot's listings with ``tree``'s (a group's) added: made in the
        time of ``tree`` alone."""
        found = listings(tree)
        snapshot = Snapshot(self.driver, {})
        snapshot.tree = self.tree | found
        snapshot.odd_tops = self.odd_tops
        snapshot.etags = self.etags or any(listing.has_etags() for listing in found.values())
        return snapshot

    @classmethod
    async def read(
        cls, driver: StorageDriver, top: str = paths.ROOT, descend: Descend = layout_dirs
    ) -> Snapshot:
        try:
            return cls(driver, await driver.list_tree(top, descend))
        except PathNotFoundError:
            return cls(driver, {})
        except UnsafeEntryError as exc:  # the top itself cannot be entered
            snapshot = cls(driver, {})
            snapshot.odd_tops[top] = exc.what
            return snapshot

    def entry(self, path: str) -> TreeEntry | None:
        """``path``'s entry in its directory's listing, if that was listed and has it."""
        directory, _, name = path.rpartition("/")
        listing = self.tree.get(directory or "/")
        return listing.find(name) if listing is not None else None

    def packed_listing(self, path: str) -> TreeListing | None:
        """The packed listing of directory ``path``, if it was listed."""
        return self.tree.get(path)

    def proven(self, path: str) -> bytes | None:
        """The content of a link file that the listing proves, so that it need not be
        read: its ETag is the MD5 of what it can only hold, as the registry writes
        it: ``sha256:<hex>`` of its own path, or, for a tag's ``current`` link, of
        one of the tag's index entries (the registry writes one for each manifest
        the tag named). Any other ETag (a multipart or encrypted object's, another
        content's) proves nothing: the file is read."""
        entry = self.entry(path) if paths.is_link_file(path) else None
        etag = entry.etag if entry is not None else ""
        if not etag:
            return None
        for candidate in self._link_candidates(path):
            if hashlib.md5(candidate, usedforsecurity=False).hexdigest() == etag:
                return candidate
        return None

    def _link_candidates(self, link: str) -> Iterator[bytes]:
        digest = paths.digest_of_link(link)
        if digest is not None:
            yield str(digest).encode()
            return
        history = paths.tag_history_of_current_link(link)
        listing = self.tree.get(history) if history is not None else None
        if listing is not None:
            for raw in itertools.islice(listing.raw_hexes(), HISTORY_CANDIDATES):
                yield f"{CANONICAL}:{raw.hex()}".encode()

    async def list_if_present(self, path: str) -> list[str]:
        """As ``driver.list_if_present``: the child paths, nothing for a path that is
        absent or a file, UnsafeEntryError for one that cannot be entered."""
        entries = self.tree.get(path)
        if entries is not None:
            return entries.paths()
        entry = self.entry(path)
        odd = entry.odd if entry is not None else self.odd_tops.get(path)
        if odd:
            raise UnsafeEntryError(path, odd, self.driver.name)
        if entry is not None and not entry.is_dir:
            return []  # a file
        if entry is None and paths.parent(path) in self.tree:
            return []  # its directory was listed: absent here
        return await self.driver.list_if_present(path)  # not descended into, or outside

    async def stat_many(self, wanted: list[str]) -> list[FileInfo | Absent]:
        """As ``driver.stat_many``, but a file whose size the listing gave (S3's) is
        not asked again; its time is unknown (the epoch): ages are asked of the
        driver."""
        listed = [self.entry(p) for p in wanted]
        sizes = {p: e.size for p, e in zip(wanted, listed, strict=True) if e and e.size >= 0}
        unknown = [p for p in wanted if p not in sizes]
        stated = dict(zip(unknown, await self.driver.stat_many(unknown), strict=True))
        epoch = datetime.fromtimestamp(0, UTC)
        return [stated[p] if p in stated else FileInfo(p, sizes[p], epoch, False) for p in wanted]


class ReadAhead:
    """Small files read in batches, each handed out once by ``get``."""

    def __init__(self, driver: StorageDriver) -> None:
        self.driver = driver
        self.read: dict[str, bytes | Absent] = {}
        self.snapshot: Snapshot | None = None  # proves link contents (``trust``)
        self.proven = 0  # files a listing proved, not read

    def trust(self, snapshot: Snapshot) -> None:
        """Take from ``snapshot`` the link contents its listing proves."""
        self.snapshot = snapshot

    def take(self, files: dict[str, bytes | Absent]) -> None:
        """Files read already (with a group's listings), to be handed out by ``get``
        (``files`` is kept, not copied)."""
        if self.read:
            self.read.update(files)
        else:
            self.read = files

    async def fetch(self, wanted: Iterable[str]) -> None:
        """Read these files now (those not held already, nor proven by the snapshot)."""
        batch = sorted({p for p in wanted if p not in self.read})
        if self.snapshot is not None and self.snapshot.etags:
            for path in batch:
                content = self.snapshot.proven(path)
                if content is not None:
                    self.read[path] = content
                    self.proven += 1
            batch = [p for p in batch if p not in self.read]
        if batch:
            self.read.update(zip(batch, await self.driver.get_contents(batch), strict=True))

    async def fetch_named(self, links: Iterable[str]) -> None:
        """Read the blobs (manifests) that these link files, read ahead, name; a link
        not read ahead or holding no digest is skipped (its reader reports it)."""
        named = set()
        for link in links:
            content = self.peek(link)
            with contextlib.suppress(InvalidLinkError):
                if content is not None:
                    named.add(paths.blob_data(decode_link(link, content)))
        await self.fetch(named)

    def peek(self, path: str) -> bytes | None:
        """What was read ahead of ``path`` (None: nothing, or it was absent)."""
        found = self.read.get(path)
        return found if isinstance(found, bytes) else None

    async def get(self, path: str) -> bytes:
        """As ``driver.get_content``, from what was read ahead where it was."""
        found = self.read.pop(path, None)
        if found is None:
            return await self.driver.get_content(path)
        if isinstance(found, Exception):
            raise found
        return found

    async def fetch_repositories(
        self, lister: walk.Lister, names: Iterable[str], tags: bool = True
    ) -> None:
        """The revision links (and the tags' ``current`` links) of these repositories,
        then the manifests they name: what a whole-store pass reads for a group."""
        links = []
        for name in names:
            revisions = await walk.digest_dirs(lister, paths.manifest_revisions(name))
            links += [paths.link_in(entry) for _, entry in revisions]
            if tags:
                links += [
                    paths.tag_current_link(name, t)
                    for t in await walk.names(lister, paths.tags_dir(name))
                ]
        await self.fetch(links)
        await self.fetch_named(links)

    def forget(self) -> None:
        """Drop what was read ahead and not asked for (bounds the memory of a pass
        that reads ahead group by group)."""
        self.read.clear()

    async def manifests(self, level: list[Digest]) -> list[bytes | Exception]:
        """A level of the manifest graph (``storage.graph.ReadLevel``) read from the
        blobs in one batch, then forgotten: each blob's bytes, or why it has none."""
        await self.fetch(paths.blob_data(d) for d in level)
        found: list[bytes | Exception] = []
        for digest in level:
            try:
                found.append(await self.get(paths.blob_data(digest)))
            except (PathNotFoundError, UnsafeEntryError) as exc:
                found.append(exc)
        self.forget()
        return found


Linked = Digest | Exception  # what a link names, or why it names nothing


async def read_revisions(
    lister: walk.Lister, ahead: ReadAhead, name: str, on_odd: walk.OnOdd
) -> list[tuple[Digest, Linked]]:
    """Each revision directory of repository ``name`` with the manifest its link names,
    or why it names none: PathNotFoundError where an API DELETE removed the link,
    InvalidLinkError or UnsafeEntryError where it cannot be read. Read in one batch."""
    entries = await walk.digest_dirs(lister, paths.manifest_revisions(name), on_odd)
    return list(
        zip(
            (d for d, _ in entries),
            await _targets(ahead, [paths.link_in(e) for _, e in entries]),
            strict=True,
        )
    )


async def read_tags(
    lister: walk.Lister, ahead: ReadAhead, name: str, on_odd: walk.OnOdd
) -> list[tuple[str, Linked]]:
    """Each tag of repository ``name`` with the manifest its ``current`` link names,
    or why it names none (PathNotFoundError: a tag without one)."""
    tags = await walk.names(lister, paths.tags_dir(name), on_odd)
    links = [paths.tag_current_link(name, tag) for tag in tags]
    return list(zip(tags, await _targets(ahead, links), strict=True))


async def tagged(
    lister: walk.Lister,
    ahead: ReadAhead,
    name: str,
    on_odd: walk.OnOdd,
    on_unreadable: Callable[[str, Exception], Awaitable[None]],
) -> list[tuple[str, Digest]]:
    """The tags of repository ``name`` that name a manifest, as the registry's
    collector reads them: a tag without its ``current`` link names nothing; one whose
    link is no digest or cannot be read goes to ``on_unreadable`` with the tag (the
    collector fails its mark there; docker-registry rewrites the link in place,
    truncating it first, so a tag being pushed can read empty)."""
    found = []
    for tag, target in await read_tags(lister, ahead, name, on_odd):
        if isinstance(target, Digest):
            found.append((tag, target))
        elif not isinstance(target, PathNotFoundError):
            await on_unreadable(tag, target)
    return found


async def _targets(ahead: ReadAhead, links: list[str]) -> list[Linked]:
    await ahead.fetch(links)
    found: list[Linked] = []
    for link in links:
        try:
            found.append(decode_link(link, await ahead.get(link)))
        except (PathNotFoundError, InvalidLinkError, UnsafeEntryError) as exc:
            found.append(exc)
    return found
