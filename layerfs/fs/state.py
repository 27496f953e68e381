"""Everything the mount keeps that the store does not, in one place.

The store is the truth; the mount remembers only what no store can say
(docs/DESIGN.md, "State kept by the mount"):

``inodes``
    path ↔ inode number, until the kernel forgets the inode.
``handles``
    open files and directories by file handle number (:class:`Handle`).
``uploads``
    sessions of open uploads (shared by every handle on one upload) and the last
    error of each, for ``user.layerfs.error``.
``created_dirs``
    directories made by ``mkdir`` (or kept after an upload's ``rm``) with nothing
    stored below them yet: an object store has no empty directories. They live
    until ``rmdir``, until something is stored below them, or until unmount.
``repository_marks``
    repositories made by ``mkdir``: they show ``_layers``, ``_manifests`` and
    ``_uploads`` at once.
``pending_links``
    link files created and not yet holding a whole digest, by path.
``link_errors``
    the last refusal of a link write, by path, for ``user.layerfs.error``.
``dir_errors``
    the same refusal on the deepest directory of the refused link that still shows
    (the ones ``mkdir -p`` made for it alone go with the refusal).
"""

from __future__ import annotations

import bisect
import errno
import functools
import logging
import os
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass

import pyfuse3
import trio

from ..deadline import no_request_deadline, within_request
from ..storage import paths
from ..storage.errors import PathNotFoundError, StorageDriverError
from ..storage.store import FileInfo, Store, StoredFileReader
from .errors import Refusal
from .inodes import InodeTable
from .sessions import UploadSession, UploadTable
from .view import Kind, Parts, Place

log = logging.getLogger("layerfs.fs")

BLOCK_SIZE = 1 << 20  # st_blksize: makes cp write 1 MiB at a time
# A directory's st_blksize: glibc's opendir sizes its getdents buffer by it (at least
# 32 KiB), and every READDIRPLUS the kernel sends for it is that size, which pyfuse3
# allocates and zeroes for each reply: 1 MiB there made a find a third slower.
DIR_BLOCK_SIZE = 4096
BLOB_TIMEOUT = 300.0  # blobs never change
DIR_TIMEOUT = 1.0  # a registry may change the store beside us
# A content-addressed directory (paths.is_content_addressed_dir) changes only by
# entries appearing and going: its listing is kept this long (a name it lacks is asked
# of the store at once), and read again behind the browser once it is INDEX_REFRESH old.
INDEX_TIMEOUT = 30.0
INDEX_REFRESH = 10.0
SIBLINGS_AHEAD = 2  # directories beside a listed one read ahead of a walker
UPLOAD_TIMEOUT = 0.0
# Entries read ahead with a listing: the child directories' too, up to this many, so
# that a browser entering them next (find, ls -R) is answered without the store.
LISTING_AHEAD = 8192
LISTINGS_KEPT = 4096  # directory listings held before the untrusted ones are dropped
# A name looked up in a directory no trusted listing holds: on a store that lists
# cheaply, the directory is listed with this many entries below it, as a walk reads it,
# so that the lookups beside and below it that follow (``cat`` of many tags' links)
# cost the store nothing for DIR_TIMEOUT.
LOOKUP_AHEAD = 1024


@dataclass
class StoreFileHandle:
    """A read-only stored file: a blob's data (``immutable``) or any other file."""

    stream: StoredFileReader
    size: int


@dataclass
class UploadHandle:
    session: UploadSession
    writable: bool
    stream: StoredFileReader | None = None


@dataclass
class LinkHandle:
    place: Place
    content: bytearray
    writable: bool
    dirty: bool = False
    removed: bool = False  # rm'ed while being written: nothing more is stored


@dataclass
class DirHandle:
    """An open directory. Its names are read at the first readdir, not at the open:
    walkers open ``..`` to climb back (fts) and never read it."""

    parts: Parts
    names: list[str] | None = None


Handle = StoreFileHandle | UploadHandle | LinkHandle | DirHandle


class HandleTable:
    def __init__(self) -> None:
        self._open: dict[int, Handle] = {}
        self._next = 1

    def add(self, handle: Handle) -> int:
        fh, self._next = self._next, self._next + 1
        self._open[fh] = handle
        return fh

    def get(self, fh: int) -> Handle:
        try:
            return self._open[fh]
        except KeyError:
            raise Refusal(errno.EBADF, f"file handle {fh} is not open") from None

    def pop(self, fh: int) -> Handle | None:
        return self._open.pop(fh, None)

    def __len__(self) -> int:
        return len(self._open)


@dataclass
class Listing:
    """One directory of the store as the mount last listed it."""

    entries: dict[str, FileInfo]  # by store path
    read_at: float
    source: str  # the directory whose read brought it (read again to refresh it)
    lasting: bool  # content-addressed: kept INDEX_TIMEOUT, not DIR_TIMEOUT

    @property
    def trusted_for(self) -> float:
        return INDEX_TIMEOUT if self.lasting else DIR_TIMEOUT

    @functools.cached_property
    def dirs(self) -> list[str]:
        """Its directories in name order (made once: a walker asks for each entry)."""
        return sorted(path for path, info in self.entries.items() if info.is_dir)


class MountState:
    """The collaborators every path kind's module shares (see the module docstring)."""

    def __init__(
        self,
        store: Store,
        nursery: trio.Nursery,
        read_only: bool,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.registry = store.registry
        self.read_only = read_only
        self.inodes = InodeTable()
        self.handles = HandleTable()
        # what the mount remembers of the store it trusts as long as the kernel does
        self.clock = clock
        self.uploads = UploadTable(self.registry, nursery, DIR_TIMEOUT, clock)
        self.listings: dict[str, Listing] = {}  # by the store path of the directory
        self._sweep_at = LISTINGS_KEPT
        self._generation = 0  # counts this mount's changes, for listings read meanwhile
        self._reading: dict[str, trio.Event] = {}  # listings read behind the browser
        self._nursery = nursery
        self.created_dirs: set[Parts] = set()
        self.repository_marks: set[Parts] = set()
        self.pending_links: dict[Parts, LinkHandle] = {}
        self.link_errors: dict[Parts, str] = {}
        self.dir_errors: dict[Parts, str] = {}
        # tells the kernel a name is gone before its entry times out (set by the mount)
        self.forget_entry: Callable[[Parts], None] = lambda parts: None
        self.uid, self.gid = os.getuid(), os.getgid()
        self.started = time.time_ns()

    def check_writable(self, what: str) -> None:
        if self.read_only:
            raise Refusal(errno.EROFS, f"{what}: the mount is read-only")

    def attrs(
        self, parts: Parts, mode: int, size: int, mtime_ns: int, timeout: float
    ) -> pyfuse3.EntryAttributes:
        attrs = pyfuse3.EntryAttributes()
        attrs.st_ino = self.inodes.ino(parts)
        attrs.st_mode = mode
        attrs.st_nlink = 2 if stat.S_ISDIR(mode) else 1
        attrs.st_uid, attrs.st_gid = self.uid, self.gid
        attrs.st_size = size
        attrs.st_blksize = DIR_BLOCK_SIZE if stat.S_ISDIR(mode) else BLOCK_SIZE
        attrs.st_blocks = (size + 511) // 512
        attrs.st_atime_ns = attrs.st_mtime_ns = attrs.st_ctime_ns = mtime_ns
        attrs.entry_timeout = attrs.attr_timeout = timeout
        return attrs

    @staticmethod
    def kept_for(place: Place) -> float:
        """How long the kernel may keep a place's entry and attributes: a blob and its
        directories for long (they only come and go whole), what only digests name
        (the link directories and links of ``_layers`` and ``revisions``) as long as
        their listings, the rest as long as a directory's."""
        if place.kind in (Kind.BLOB_DATA, Kind.BLOB_DIR):
            return BLOB_TIMEOUT
        if place.kind in (Kind.LAYER_LINK, Kind.REVISION_LINK):
            return INDEX_TIMEOUT
        if paths.is_content_addressed_dir(place.parts):
            return INDEX_TIMEOUT
        return DIR_TIMEOUT

    def dir_attrs(
        self, parts: Parts, mtime_ns: int, writable: bool = True, timeout: float = DIR_TIMEOUT
    ) -> pyfuse3.EntryAttributes:
        mode = 0o755 if writable and not self.read_only else 0o555
        return self.attrs(parts, stat.S_IFDIR | mode, 0, mtime_ns, timeout)

    def unreadable_attrs(self, parts: Parts) -> pyfuse3.EntryAttributes:
        """A listing's entry for what the store holds but the mount will not open (a
        symbolic link): mode 0, trusted for no time, so that every look at it comes
        back here and is refused (EACCES)."""
        return self.attrs(parts, stat.S_IFREG, 0, self.started, 0)

    async def stat(self, place: Place) -> tuple[int, int, bool] | None:
        """(size, mtime_ns, is_dir) of a place in the store, None when absent: from its
        directory's listing while that is trusted, else from the store. A name that a
        content-addressed listing lacks may have appeared since: the store is asked."""
        parent = paths.parent(place.store_path)
        listing = self._trusted_listing(parent)
        if listing is None and self._lists_on_lookup(place):
            listing = await self._list_for_lookup(parent)
        info = None
        if listing is not None:
            info = listing.entries.get(place.store_path)
            if info is None and not listing.lasting:
                return None
        if info is None and self._listed_with_entries(place.store_path):
            return 0, time.time_ns(), True  # a directory listed lately, not its parent
        if info is None or not info.readable:  # not listed, or to be refused by the store
            try:
                info = await self.store.stat(place.store_path, place.is_dir)
            except PathNotFoundError:
                return None
        return info.size, int(info.mod_time.timestamp() * 1e9), info.is_dir

    def _lists_on_lookup(self, place: Place) -> bool:
        """Whether a look at ``place`` without a trusted listing lists its directory:
        on a store that lists cheaply, in a directory a registry changes in place
        (repositories, tags), not in ``_uploads``, which this mount writes itself."""
        return (
            self.store.lists_cheaply
            and "_uploads" not in place.parts
            and not paths.is_content_addressed_dir(place.parts[:-1])
        )

    async def _list_for_lookup(self, store_path: str) -> Listing | None:
        """``store_path``'s listing with LOOKUP_AHEAD entries below it; None when it
        cannot be read (the caller asks the store for the one name instead)."""
        try:
            return await self._read_once(store_path, LOOKUP_AHEAD)
        except StorageDriverError as exc:
            log.debug("listing %s for a lookup failed: %s", store_path, exc)
            return None

    async def _read_once(self, store_path: str, ahead: int = LISTING_AHEAD) -> Listing:
        """``store_path``'s listing read now (with ``ahead`` entries below it), or by
        the read of it under way (behind the browser, or for another request): one
        read of a directory at a time."""
        while (reading := self._reading.get(store_path)) is not None:
            with within_request(f"listing {store_path}"):
                await reading.wait()
            if (listing := self._trusted_listing(store_path)) is not None:
                return listing
        self._reading[store_path] = done = trio.Event()
        try:
            return (await self._read_listings(store_path, ahead))[store_path]
        finally:
            del self._reading[store_path]
            done.set()

    async def list_dir(self, store_path: str) -> list[str]:
        """The names in a store directory. Its entries' attributes, and those of the
        directories below it (read with it, up to LISTING_AHEAD entries), are kept for
        the lookups, getattrs and listings that follow (``ls -l``, ``find``): for
        DIR_TIMEOUT, or INDEX_TIMEOUT where only digests name the entries; those are
        read again behind the browser once INDEX_REFRESH old, so that a walk longer
        than that goes on from memory."""
        listing = self._trusted_listing(store_path)
        if listing is None:
            self._forget_old_listings()
            listing = await self._read_once(store_path)
            self._read_siblings_ahead(store_path)
        elif self._children_unread(store_path, listing):
            self._forget_old_listings()
            listing = await self._read_once(store_path)
        elif listing.lasting and self.clock() - listing.read_at >= INDEX_REFRESH:
            self._refresh_behind(listing.source)
        return [paths.base_name(path) for path in listing.entries]

    def _children_unread(self, store_path: str, listing: Listing) -> bool:
        """Whether ``listing`` came with its parent's read, without the directories
        below it: a walker listing it enters those next, so it is read again with
        them (one read for a directory and all its children, where each child would
        be read alone)."""
        return (
            listing.source != store_path
            and bool(listing.dirs)
            and self._trusted_listing(listing.dirs[0]) is None
        )

    def _read_siblings_ahead(self, store_path: str) -> None:
        """Start reading the next SIBLINGS_AHEAD directories beside ``store_path`` (in
        name order, as a walker goes), so that it finds them read when it gets there:
        a walk of many small repositories waits for no listing of its own."""
        parent = self.listings.get(paths.parent(store_path))
        if parent is None:
            return
        after = bisect.bisect_right(parent.dirs, store_path)
        for sibling in parent.dirs[after : after + SIBLINGS_AHEAD]:
            if self._trusted_listing(sibling) is None:
                self._refresh_behind(sibling)

    async def _read_listings(
        self, store_path: str, ahead: int = LISTING_AHEAD
    ) -> dict[str, Listing]:
        """List ``store_path`` and what the driver reads ahead below it (up to
        ``ahead`` entries); keep them unless this mount changed the store meanwhile
        (then they serve this once)."""
        read_at, generation = self.clock(), self._generation
        tree = await self.store.list_ahead(store_path, ahead)
        listings = {
            d: Listing(
                {i.path: i for i in infos},
                read_at,
                store_path,
                paths.is_content_addressed_dir(paths.components(d)),
            )
            for d, infos in tree.items()
        }
        if generation == self._generation:
            self.listings.update(listings)
        return listings

    def _listed_with_entries(self, store_path: str) -> bool:
        """Whether ``store_path`` is a directory whose own trusted listing holds
        entries (a walker climbing back opens it after its parent's listing expired)."""
        listing = self._trusted_listing(store_path)
        return listing is not None and bool(listing.entries)

    def _refresh_behind(self, source: str) -> None:
        """Read ``source`` in the background, once at a time; a listing that needs it
        meanwhile waits for that read instead of making its own."""
        if source in self._reading:
            return
        self._reading[source] = trio.Event()
        self._nursery.start_soon(self._refresh, source)

    async def _refresh(self, source: str) -> None:
        try:
            with no_request_deadline():  # started by a request, it outlives it
                await self._read_listings(source)
        except Exception as exc:  # whoever needs it next reads it and says
            log.debug("reading the listing of %s ahead failed: %s", source, exc)
        finally:
            self._reading.pop(source).set()

    def _forget_old_listings(self) -> None:
        """Drop listings no longer trusted once their number has doubled since the last
        time (memory stays bounded by what a few seconds of browsing read, and the
        sweeps cost a constant per listing)."""
        if len(self.listings) > self._sweep_at:
            now = self.clock()
            for path in [
                p for p, one in self.listings.items() if now - one.read_at >= one.trusted_for
            ]:
                del self.listings[path]
            self._sweep_at = max(LISTINGS_KEPT, 2 * len(self.listings))

    def _trusted_listing(self, store_path: str) -> Listing | None:
        listing = self.listings.get(store_path)
        if listing is not None and self.clock() - listing.read_at < listing.trusted_for:
            return listing
        return None

    def changed(self) -> None:
        """This mount changed the store: what it listed may be out of date, and so may
        what a listing under way reads (it is then used once, not kept)."""
        self.listings.clear()
        self._generation += 1

    def keep_visible(self, removed: Parts, repository: Parts) -> None:
        """Show the directories above a ``removed`` entry, up to and including its
        ``repository``, until rmdir or unmount, though the store may hold nothing
        there now (an object store has no empty directories): the rest of an ``rm -r``
        finds them, and the repository does not vanish with its last upload. Asking
        the store first would cost a request per level, and its failure would turn a
        done ``rm`` into an error."""
        self.created_dirs.update(removed[:depth] for depth in range(2, len(removed)))
        self.repository_marks.add(repository)

    def stored_below(self, parts: Parts) -> None:
        """Something is stored below ``parts`` now: its directories need no memory."""
        for made in list(self.created_dirs):
            if parts[: len(made)] == made:
                self.created_dirs.discard(made)
