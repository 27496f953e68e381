"""The storage driver contract: bytes at paths, nothing about registries.

It mirrors distribution's ``storagedriver.StorageDriver`` so that a store written
through any driver here has the layout a registry expects. Every method is async
(trio); an implementation must never block the event loop on disk or network.
"""

from __future__ import annotations

import abc
import contextlib
import hashlib
import os
import re
from array import array
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import NamedTuple, TypeVar

import trio

from .contract import PATHS, STREAM_METHODS, wrap_class

# the errors and the path rule, defined in errors.py, are named here too
from .errors import PATH_RE as PATH_RE
from .errors import BackendRequestError as BackendRequestError
from .errors import BackendUnavailableError as BackendUnavailableError
from .errors import FileChangedError as FileChangedError
from .errors import InvalidOffsetError as InvalidOffsetError
from .errors import InvalidPathError as InvalidPathError
from .errors import PathNotFoundError as PathNotFoundError
from .errors import StorageDriverError as StorageDriverError
from .errors import StoreFullError as StoreFullError
from .errors import StoreReadOnlyError as StoreReadOnlyError
from .errors import UnsafeEntryError as UnsafeEntryError
from .errors import WriterClosedError as WriterClosedError
from .errors import check_path as check_path

HASH_CHUNK = 4 << 20
LISTINGS_AT_ONCE = 16  # child directories listed at once by list_tree_infos
REQUESTS_AT_ONCE = 16  # reads and stats in flight at once in a batch (get_contents etc.)
SIZES_BATCH = 4096  # paths of file_sizes held at once
WIDTH = 32  # bytes of a packed hex name (a sha256 hex): ``TreeListing``, ``file_sizes_in``


def packed_count(packed: Sequence[bytes]) -> int:
    """The values ``packed`` holds, WIDTH bytes each."""
    if any(len(values) % WIDTH for values in packed):
        raise ValueError(f"packed values are {WIDTH} bytes each")
    return sum(len(values) for values in packed) // WIDTH


def hex_paths(directories: Sequence[str], packed: Sequence[bytes], below: str) -> Iterator[str]:
    """``<directory>/<hex><below>`` of each packed value, made as they are read."""
    for directory, values in zip(directories, packed, strict=True):
        for start in range(0, len(values), WIDTH):
            yield f"{directory}/{values[start : start + WIDTH].hex()}{below}"


@dataclass(frozen=True)
class FileInfo:
    path: str
    size: int
    mod_time: datetime
    is_dir: bool
    # False only in ``list_infos`` for an entry the driver will not open (a symlink):
    # listed so that it shows, with no attributes worth anything
    readable: bool = True


class TreeEntry(NamedTuple):
    """One entry of ``list_tree``: a file, a directory, or ``odd`` (in words: "a
    symbolic link", "a FIFO"), which is never entered or opened. (A tuple: a big
    store has hundreds of thousands.)"""

    path: str
    is_dir: bool
    odd: str = ""
    size: int = -1  # a file's size where the listing gave it (S3); -1: ask ``stat``
    etag: str = ""  # a small file's ETag where the listing gave it (S3): its MD5 when
    # it was put whole, so a caller that knows what it should hold can check that


# list_tree asks it of each directory below the top: list this one too?
Descend = Callable[[str], bool]


class Refusing:
    """A ``descend`` that takes every directory but those whose path ``refused`` (a
    regular expression) finds. Said as a pattern, a walk can run in another process
    (``FilesystemDriver.reading_groups``)."""

    def __init__(self, refused: str) -> None:
        self.refused = refused
        self._search = re.compile(refused).search

    def __call__(self, path: str) -> bool:
        return self._search(path) is None


@dataclass(frozen=True)
class FilesBelow:
    """Which files ``reading_groups`` reads: the file ``name`` in each directory the
    walk lists and ``descend`` refuses, where that file's path matches ``wanted``."""

    name: str  # "": none
    wanted: str = ""

    def paths(self, left: Iterable[str]) -> list[str]:
        """The files to read below these directories (not entered)."""
        if not self.name:
            return []
        search = re.compile(self.wanted).search
        return [path for path in (f"{d}/{self.name}" for d in left) if search(path)]


NO_FILES = FilesBelow("")  # no file: the groups' listings alone


@dataclass
class GroupRead:
    """One group of ``reading_groups``: the listings of its tops (``list_trees``) and
    each file read below them, or why it was not (``get_contents``)."""

    tree: dict[str, Sequence[TreeEntry]]
    files: dict[str, bytes | Absent]


T = TypeVar("T")


def chunked(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """``items`` in lists of at most ``size``, made one at a time."""
    chunk: list[T] = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


# What a batch gives for a path that is not there, or not to be opened: the error as
# a value, so that one missing link does not end the batch. Other errors raise.
Absent = PathNotFoundError | UnsafeEntryError


@dataclass(frozen=True)
class PendingWrite:
    """A write a backend keeps (and may bill) until it is finished or aborted: on S3,
    a multipart upload, such as a server-side copy cut short by a crash."""

    path: str
    started: datetime
    handle: str  # the backend's own name for it (an S3 upload id)


def is_under(path: str, directory: str) -> bool:
    """True when ``path`` is ``directory`` or lies below it (``/a`` does not contain ``/ab``)."""
    if directory == "/":
        return True
    return path == directory or path.startswith(directory + "/")


class Reader(abc.ABC):
    """A forward-only byte stream opened at an offset."""

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        wrap_class(cls, dict.fromkeys(STREAM_METHODS))

    @abc.abstractmethod
    async def read(self, size: int) -> bytes:
        """Up to ``size`` bytes; ``b""`` only at the end."""

    @abc.abstractmethod
    async def aclose(self) -> None: ...

    async def __aenter__(self) -> Reader:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class FileWriter(abc.ABC):
    """Appends to one path; ``close`` keeps what was written so a later
    ``writer(path, append=True)`` resumes it, ``commit`` makes it final,
    ``cancel`` removes it."""

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        wrap_class(cls, dict.fromkeys(STREAM_METHODS))

    @property
    @abc.abstractmethod
    def size(self) -> int:
        """Bytes in the file so far, including those of earlier sessions."""

    async def write(self, data: bytes | bytearray | memoryview) -> int:
        """Append ``data``: a batch of one piece."""
        return await self.write_pieces([data if isinstance(data, bytes) else bytes(data)])

    @abc.abstractmethod
    async def write_pieces(self, pieces: Sequence[bytes]) -> int:
        """Append several buffers in order, without joining them into one (a writev,
        a part body read across them). Writers may keep the pieces by reference."""

    @abc.abstractmethod
    async def close(self) -> None: ...

    @property
    def stamp(self) -> object | None:
        """Once closed, the file as this writer left it, in the terms of
        ``StorageDriver.stamp``; None when the writer cannot tell."""
        return None

    @abc.abstractmethod
    async def cancel(self) -> None: ...

    @abc.abstractmethod
    async def commit(self) -> None: ...


class StorageDriver(abc.ABC):
    """Bytes and paths. Paths are absolute and match :data:`PATH_RE`: every method of
    the contract checks them before a driver's own code runs, and raises only the
    errors above (``contract.py``, applied to each subclass as it is defined)."""

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        wrap_class(cls, dict(PATHS))

    name: str = "base"
    # Writers take data best in pieces of this size, each starting at a multiple of
    # it: S3 sends such a piece as one part with no copy.
    write_batch: int = 8 << 20
    # Whether bytes given to a writer that is still open can be read back. On S3 they
    # are parts of a multipart upload, readable only once it is completed.
    reads_open_writes: bool = True
    # Whether a file is one sequence of bytes that writers append to in place. On S3
    # each writer's bytes are a multipart upload of its own until completed, so two
    # writers leave two candidates at one key, and a hash state's age tells nothing.
    writes_in_place: bool = True
    # Whether listing a directory with what lies below it costs about as much as one
    # stat: on a local disk one worker-thread call either way; on S3 a listing of a
    # large tree is many paged requests where a stat is one.
    lists_cheaply: bool = True
    # Whether a directory has a time of its own, changed when an entry is made or
    # removed in it (a local disk). An S3 prefix has none: only its keys have times.
    directory_times: bool = False
    # The most one call may take, and one request to the mount (layerfs/deadline.py);
    # None where the backend cannot stop answering (a local disk).
    timeout: float | None = None

    # capabilities: what a caller may ask of any driver ------------------------------
    @property
    def location(self) -> str:
        """Where the store is, as a user names it (a directory, ``s3://…``)."""
        return f"{self.name}://"

    async def statvfs(self) -> os.statvfs_result | None:
        """The space of the file system under the store, where there is one."""
        return None

    def counters(self) -> dict[str, int]:
        """Running totals worth showing (``layerfs status``, the bench)."""
        return {}

    async def committed_size(self, path: str) -> int:
        """The size of the bytes a reader sees without finishing any open write."""
        return (await self.stat(path)).size

    async def stamp(self, path: str) -> object:
        """What tells whether a file changed: two equal stamps mean the same bytes, as
        far as the backend can tell (a file system: device, inode, size and
        modification time in nanoseconds; S3: the parts of a pending write, or the
        object's ETag). An upload's hash state is trusted only while its data keeps
        the stamp it had when the state was stored."""
        info = await self.stat(path)
        return ("stat", info.size, info.mod_time)

    async def committed_stamp(self, path: str) -> object:
        """``stamp`` of what ``stat_committed`` sees: the version a move takes."""
        return await self.stamp(path)

    async def stat_committed(self, path: str) -> FileInfo:
        """``stat`` of what is stored at ``path`` without any write left open: on S3 a
        key holding only a pending multipart upload (a copy cut short) is not found.
        A blob exists only when this finds it."""
        return await self.stat(path)

    async def committed_reader(self, path: str, offset: int = 0) -> Reader:
        """A reader of those bytes: unlike ``reader``, it completes nothing."""
        return await self.reader(path, offset)

    @abc.abstractmethod
    async def get_content(self, path: str) -> bytes: ...

    @abc.abstractmethod
    async def put_content(self, path: str, content: bytes) -> None:
        """Store ``content`` at ``path`` atomically (readers see old or new, never half)."""

    @abc.abstractmethod
    async def reader(self, path: str, offset: int = 0) -> Reader: ...

    @abc.abstractmethod
    async def writer(self, path: str, append: bool = False) -> FileWriter: ...

    @abc.abstractmethod
    async def stat(self, path: str) -> FileInfo: ...

    async def stat_dir(self, path: str) -> FileInfo:
        """``stat`` of a path the caller expects to be a directory: a backend may
        answer that case in fewer requests (S3: one listing, not three calls)."""
        return await self.stat(path)

    @abc.abstractmethod
    async def list(self, path: str) -> list[str]:
        """Full paths of the direct children of directory ``path``."""

    @abc.abstractmethod
    async def move(self, source: str, dest: str, expect: object | None = None) -> None:
        """Move a file, replacing ``dest`` if it exists; with ``expect``, only while
        ``source`` still has that ``committed_stamp`` (else FileChangedError): what
        was validated is what moves."""

    @abc.abstractmethod
    async def delete(self, path: str) -> None:
        """Delete a file or a whole directory tree."""

    async def delete_if_present(self, path: str) -> bool:
        """Delete ``path`` if it exists; True when something was deleted."""
        try:
            await self.delete(path)
        except PathNotFoundError:
            return False
        return True

    async def list_infos(self, path: str) -> list[FileInfo]:
        """``stat`` of every child of ``path``, in one go where the backend can (a
        directory read with its entries' attributes, an S3 listing with sizes). An
        entry gone meanwhile is left out; one the driver will not open is there with
        ``readable`` False."""
        infos = []
        for child in await self.list(path):
            try:
                infos.append(await self.stat(child))
            except PathNotFoundError:
                continue
            except UnsafeEntryError:
                infos.append(FileInfo(child, 0, datetime.fromtimestamp(0, UTC), False, False))
        return infos

    async def list_tree_infos(self, path: str, limit: int) -> dict[str, list[FileInfo]]:
        """``list_infos`` of ``path`` and, while fewer than ``limit`` entries have been
        read, of directories below it (here its children; a driver may go deeper,
        nearest first): a browser's next requests answered by one."""
        tree = {path: await self.list_infos(path)}
        children = [i.path for i in tree[path] if i.is_dir and i.readable]
        limiter = trio.CapacityLimiter(LISTINGS_AT_ONCE)
        seen = len(tree[path])

        async def read(child: str) -> None:
            nonlocal seen
            async with limiter:
                if seen >= limit:
                    return
                try:
                    tree[child] = await self.list_infos(child)
                except (PathNotFoundError, UnsafeEntryError):
                    return
                seen += len(tree[child])

        async with trio.open_nursery() as nursery:  # an object store answers in parallel
            for child in children:
                nursery.start_soon(read, child)
        return tree

    # Whether list_tree lists only what ``descend`` admits (False: a backend that
    # gets every key below the path in the same pages, and so lists it all).
    list_tree_prunes = True

    async def list_tree(self, path: str, descend: Descend) -> dict[str, list[TreeEntry]]:
        """The entries of ``path`` and of every directory below it that ``descend``
        admits (a driver may list more), by directory, each list in name order: a
        whole walk in as few requests as the backend allows. A directory that cannot
        be entered (a symbolic link) is an ``odd`` entry and is not listed."""
        tree: dict[str, list[TreeEntry]] = {}
        limiter = trio.CapacityLimiter(LISTINGS_AT_ONCE)

        async def visit(directory: str, nursery: trio.Nursery) -> None:
            async with limiter:
                try:
                    infos = await self.list_infos(directory)
                except (PathNotFoundError, UnsafeEntryError):
                    return
            entries = [_tree_entry(info) for info in infos]
            tree[directory] = entries
            for entry in entries:
                if entry.is_dir and descend(entry.path):
                    nursery.start_soon(visit, entry.path, nursery)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(visit, path, nursery)
        if path not in tree and path != "/":
            await self.list(path)  # raises what keeps it from being listed
        return tree

    @contextlib.asynccontextmanager
    async def reading_groups(
        self, groups: Sequence[Sequence[str]], descend: Descend, below: FilesBelow
    ) -> AsyncIterator[AsyncIterator[GroupRead]]:
        """The groups of tops in turn, each listed (``list_trees``) with ``below``'s
        files read (``get_contents``). A driver may read ahead of its caller (a local
        disk: in a second process, while the caller works on the group before), so
        the answers are those of the moment each group was read; here a group is
        read when it is asked for."""
        yield self._read_groups(groups, descend, below)

    async def _read_groups(
        self, groups: Sequence[Sequence[str]], descend: Descend, below: FilesBelow
    ) -> AsyncIterator[GroupRead]:
        for tops in groups:
            tree = await self.list_trees(tops, descend)
            left = (entry.path for listing in tree.values() for entry in listing
                    if entry.is_dir and not entry.odd and not descend(entry.path))  # fmt: skip
            wanted = below.paths(left)
            files = await self.get_contents(wanted) if wanted else []
            yield GroupRead(tree, dict(zip(wanted, files, strict=True)))

    async def list_trees(self, tops: Sequence[str], descend: Descend) -> dict[str, list[TreeEntry]]:
        """``list_tree`` of each of ``tops`` into one answer (LISTINGS_AT_ONCE at once);
        a top that is gone or cannot be entered is left out."""
        tree: dict[str, list[TreeEntry]] = {}
        limiter = trio.CapacityLimiter(LISTINGS_AT_ONCE)

        async def read(top: str) -> None:
            async with limiter:
                try:
                    tree.update(await self.list_tree(top, descend))
                except (PathNotFoundError, UnsafeEntryError):
                    return

        async with trio.open_nursery() as nursery:
            for top in tops:
                nursery.start_soon(read, top)
        return tree

    async def get_contents(self, paths: Sequence[str]) -> list[bytes | Absent]:
        """``get_content`` of each path, in order: many small files (links,
        manifests) at once, an absent one as its error."""
        return await self._each(paths, self.get_content)

    async def stat_many(self, paths: Sequence[str]) -> list[FileInfo | Absent]:
        """``stat`` of each path, in order, an absent one as its error."""
        return await self._each(paths, self.stat)

    async def file_sizes(self, paths: Iterable[str], count: int) -> array[int]:
        """The size of each of the ``count`` paths' regular file, in order; -1 where
        there is none (absent, a directory, an entry never followed): ``stat_many``
        of those tells why. Made for a pass over every blob: ``paths`` may be made as
        it is read, a batch at a time."""
        sizes = array("q")
        for batch in chunked(paths, SIZES_BATCH):
            for info in await self.stat_many(batch):
                regular = isinstance(info, FileInfo) and not info.is_dir
                sizes.append(info.size if regular else -1)  # type: ignore[union-attr]
        return sizes

    async def file_sizes_in(
        self, directories: Sequence[str], packed: Sequence[bytes], below: str
    ) -> array[int]:
        """``file_sizes`` of ``<directory>/<hex><below>`` for the hex of each
        WIDTH-byte value in each directory's ``packed`` (a listing's hex-named
        directories as ``TreeListing`` keeps them), in order: a pass's ``data`` of
        every blob, handed over packed rather than as a path each."""
        count = packed_count(packed)
        return await self.file_sizes(hex_paths(directories, packed, below), count)

    async def stat_committed_many(self, paths: Sequence[str]) -> list[FileInfo | Absent]:
        """``stat_committed`` of each path, in order, an absent one as its error."""
        return await self._each(paths, self.stat_committed)

    async def _each(
        self, paths: Sequence[str], one: Callable[[str], Awaitable[T]]
    ) -> list[T | Absent]:
        """``one`` of every path, REQUESTS_AT_ONCE at a time (an object store answers
        in parallel)."""
        results: list[T | Absent] = [PathNotFoundError(p, self.name) for p in paths]
        limiter = trio.CapacityLimiter(REQUESTS_AT_ONCE)

        async def run(i: int) -> None:
            async with limiter:
                try:
                    results[i] = await one(paths[i])
                except (PathNotFoundError, UnsafeEntryError) as exc:
                    results[i] = exc

        async with trio.open_nursery() as nursery:
            for i in range(len(paths)):
                nursery.start_soon(run, i)
        return results

    async def list_if_present(self, path: str) -> list[str]:
        """``list``, or nothing when ``path`` does not exist."""
        try:
            return await self.list(path)
        except PathNotFoundError:
            return []

    async def pending_writes(self, path: str) -> list[PendingWrite]:
        """Writes begun at or below ``path`` and never finished. A file system keeps
        none: its writes are renames or are in files it lists."""
        return []

    async def abort_write(self, pending: PendingWrite) -> None:
        """Give up ``pending`` and whatever the backend holds for it."""
        raise NotImplementedError(f"{self.name} keeps no pending writes")

    async def exists(self, path: str) -> bool:
        try:
            await self.stat(path)
        except PathNotFoundError:
            return False
        return True

    async def walk(self, path: str) -> AsyncIterator[FileInfo]:
        """Every entry below ``path``, depth first, a directory before its
        contents, siblings in lexical order (as distribution's WalkFallback)."""
        for child in sorted(await self.list(path)):
            try:
                info = await self.stat(child)
            except PathNotFoundError:
                continue  # removed while walking
            yield info
            if info.is_dir:
                async for sub in self.walk(child):
                    yield sub

    async def read_all(
        self, path: str, offset: int = 0, chunk: int = 1 << 20
    ) -> AsyncIterator[bytes]:
        """Stream a file in chunks of at most ``chunk`` bytes."""
        reader = await self.reader(path, offset)
        async with reader:
            while True:
                data = await reader.read(chunk)
                if not data:
                    return
                yield data

    async def hash_file(
        self, path: str, algorithms: list[str], progress: Callable[[int], None] | None = None
    ) -> dict[str, str]:
        """The hex digest of a stored file for each algorithm, reading it once and
        hashing off the trio thread; each chunk's length goes to ``progress``."""
        hashers = {algorithm: hashlib.new(algorithm) for algorithm in algorithms}

        def update(chunk: bytes) -> None:
            for hasher in hashers.values():
                hasher.update(chunk)

        async for chunk in self.read_all(path, chunk=HASH_CHUNK):
            await trio.to_thread.run_sync(update, chunk)
            if progress is not None:
                progress(len(chunk))
        return {algorithm: hasher.hexdigest() for algorithm, hasher in hashers.items()}

    async def digest_file(
        self, path: str, algorithm: str, progress: Callable[[int], None] | None = None
    ) -> str:
        """``hash_file`` for a file nobody rewrites (a blob): drivers that hold the
        bytes locally may hash it in place."""
        return (await self.hash_file(path, [algorithm], progress))[algorithm]

    async def aclose(self) -> None:  # noqa: B027 - optional hook, most drivers hold nothing
        """Release connections or threads the driver holds."""


def _tree_entry(info: FileInfo) -> TreeEntry:
    odd = "" if info.readable else "an entry the driver will not open"
    size = info.size if info.readable and not info.is_dir else -1
    return TreeEntry(info.path, info.is_dir and info.readable, odd, size)


def _wrap_the_contract() -> None:
    """The base classes' own methods get the contract too (a subclass's get it as it
    is defined)."""
    wrap_class(StorageDriver, dict(PATHS))
    wrap_class(Reader, dict.fromkeys(STREAM_METHODS))
    wrap_class(FileWriter, dict.fromkeys(STREAM_METHODS))


_wrap_the_contract()
