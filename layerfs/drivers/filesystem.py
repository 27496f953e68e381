"""The default driver: a local directory laid out like docker-registry's ``rootdirectory``.

Driver path ``/docker/registry/v2/x`` is the file ``ROOT/docker/registry/v2/x``.
Every system call runs in a worker thread so the trio loop never waits on the disk.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import functools
import hashlib
import mmap
import os
import shutil
import stat as statmode
import uuid
from array import array
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from typing import TypeVar

import trio

from .base import (
    Absent,
    Descend,
    FileChangedError,
    FileInfo,
    FilesBelow,
    FileWriter,
    GroupRead,
    InvalidOffsetError,
    PathNotFoundError,
    Reader,
    StorageDriver,
    StorageDriverError,
    StoreFullError,
    StoreReadOnlyError,
    UnsafeEntryError,
    WriterClosedError,
    check_path,
    packed_count,
)
from .beneath import Beneath, Listed, NotRegularError, SymlinkError, kind_of, walk_tree
from .groupprocess import rebuilt_error, tops_in_process
from .sizeprocess import sizes_in_process, sizes_in_process_in
from .treelisting import TreeListing

T = TypeVar("T")
Tree = TypeVar("Tree", dict[str, list[FileInfo]], dict[str, TreeListing])

# digest_file reports progress after each step of this many bytes.
MMAP_HASH_STEP = 16 << 20
# Paths a batch (get_contents, stat_many) hands to one worker thread at a time.
BATCH = 1024
# Writes smaller than this are gathered before they go to a worker thread.
WRITE_BUFFER = 1 << 20
_IOV_MAX = os.sysconf("SC_IOV_MAX")
# The most one writev hands the kernel. A longer write fills the page cache with 2 MiB
# folios; on a virtual machine that gives free memory back to its host (virtio-balloon
# free page reporting, as on the development machine), each costs the host's handing
# it over again: 1 GiB in 4 MiB writes took 17 s there, in 1 MiB writes 0.35 s.
WRITE_CALL = 1 << 20


async def _run(fn, *args):  # type: ignore[no-untyped-def]
    return await trio.to_thread.run_sync(fn, *args)


_libc = ctypes.CDLL(None, use_errno=True)
_sync_file_range = getattr(_libc, "sync_file_range", None)
if _sync_file_range is not None:
    _sync_file_range.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
SYNC_FILE_RANGE_WRITE = 2


def _first_bytes(views: list[memoryview], limit: int) -> list[memoryview]:
    """The views that hold the first ``limit`` bytes of ``views`` (the last one cut),
    at most IOV_MAX of them: one writev's worth."""
    batch, total = [], 0
    for view in views[:_IOV_MAX]:
        if total + len(view) >= limit:
            batch.append(view[: limit - total])
            break
        batch.append(view)
        total += len(view)
    return batch


def start_writeback(fd: int, offset: int, length: int) -> None:
    """Ask the kernel to start writing these bytes to disk now, without waiting, so
    the fsync at commit finds little left to do (and a finish stays quick)."""
    if _sync_file_range is not None:
        _sync_file_range(fd, offset, length, SYNC_FILE_RANGE_WRITE)


class FilesystemDriver(StorageDriver):
    """Paths are resolved below ``root`` by :mod:`.beneath`: no symbolic link in the
    store is ever followed, and a symlink, FIFO or device is an
    :class:`UnsafeEntryError`, never opened for what it points at."""

    name = "filesystem"
    directory_times = True
    # file_sizes of this many paths or more is stated in a child process
    sizes_in_process_from = 16384
    # reading_groups of this many tops or more is walked and read in a child process
    groups_in_process_from = 128

    def __init__(self, root: str | os.PathLike[str], create: bool = True) -> None:
        self.root = os.path.abspath(os.fspath(root))
        if create:
            os.makedirs(self.root, exist_ok=True)
        self._beneath = Beneath(self.root)

    @property
    def location(self) -> str:
        return self.root

    async def statvfs(self) -> os.statvfs_result:
        return await _run(os.statvfs, self.root)

    def _error(self, path: str, exc: OSError) -> StorageDriverError:
        if isinstance(exc, NotRegularError):
            return UnsafeEntryError(path, f"{exc.kind}, not opened", self.name)
        if isinstance(exc, SymlinkError) or exc.errno == errno.ELOOP:
            return UnsafeEntryError(path, "a symbolic link, not followed", self.name)
        if exc.errno == errno.EISDIR:
            return StorageDriverError(f"{self.name}: {path} is a directory")
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            return PathNotFoundError(path, self.name)
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return StoreFullError(f"{self.name}: {path}: {exc.strerror} on the store's disk")
        if exc.errno == errno.EROFS:
            return StoreReadOnlyError(f"{self.name}: {path}: the store is read-only")
        return StorageDriverError(f"{self.name}: {path}: {exc.strerror}")

    def _absent(self, path: str, exc: OSError) -> Absent:
        """``exc`` at ``path`` as a batch gives it, a value where the path is absent
        or not to be opened; any other error raised."""
        error = self._error(path, exc)
        if not isinstance(error, Absent):
            raise error from None
        return error

    async def _call(self, path: str, fn: Callable[[], T]) -> T:
        """Run ``fn`` in a worker thread with its OSError named for ``path``."""
        try:
            return await _run(fn)
        except OSError as exc:
            raise self._error(path, exc) from None

    # descriptors (worker threads only) -------------------------------------------
    def _open_file(self, path: str, root: int | None = None) -> int:
        """A read descriptor of the regular file at ``path``; a directory there is no
        file (PathNotFoundError), as on every driver."""
        try:
            return self._beneath.open_file(path, root)
        except IsADirectoryError:
            raise PathNotFoundError(path, self.name) from None

    def _read_whole(self, path: str, root: int | None = None) -> bytes:
        try:
            return self._beneath.read_file(path, root)
        except IsADirectoryError:
            raise PathNotFoundError(path, self.name) from None

    def _lstat(self, path: str, root: int | None = None) -> os.stat_result:
        return self._beneath.lstat(path, root)

    # content -------------------------------------------------------------
    async def get_content(self, path: str) -> bytes:
        return await self._call(path, functools.partial(self._read_whole, path))

    async def get_contents(self, paths: Sequence[str]) -> list[bytes | Absent]:
        """BATCH files per worker thread, each opened with one ``openat2`` from a
        descriptor of the root held for the batch."""
        return await self._batch(paths, self._read_whole)

    async def stat_many(self, paths: Sequence[str]) -> list[FileInfo | Absent]:
        return await self._batch(paths, self._info)

    async def file_sizes(self, paths: Iterable[str], count: int) -> array[int]:
        """Stated by a child process (``sizeprocess.py``) where there are
        SIZES_IN_PROCESS paths or more: the caller's interpreter stays free for what
        it does meanwhile. Fewer are stated in worker threads (the child costs some
        0.1 s to start)."""
        if count < self.sizes_in_process_from:
            return await super().file_sizes(paths, count)
        return await sizes_in_process(self._beneath, paths)

    async def file_sizes_in(
        self, directories: Sequence[str], packed: Sequence[bytes], below: str
    ) -> array[int]:
        """In the child process from SIZES_IN_PROCESS paths on, as ``file_sizes``;
        the child makes the paths."""
        if packed_count(packed) < self.sizes_in_process_from:
            return await super().file_sizes_in(directories, packed, below)
        return await sizes_in_process_in(self._beneath, directories, packed, below)

    async def _batch(self, paths: Sequence[str], one: Callable[[str, int], T]) -> list[T | Absent]:
        """BATCH paths per worker thread, one thread after another (two threads at
        once were slower: they contend for the interpreter more than they overlap)."""
        results: list[T | Absent] = []
        for start in range(0, len(paths), BATCH):
            results += await _run(self._run_batch, paths[start : start + BATCH], one)
        return results

    def _run_batch(self, chunk: Sequence[str], one: Callable[[str, int], T]) -> list[T | Absent]:
        root = self._beneath.open_root()
        try:
            done: list[T | Absent] = []
            for path in chunk:
                try:
                    done.append(one(path, root))
                except OSError as exc:
                    done.append(self._absent(path, exc))
                except (PathNotFoundError, UnsafeEntryError) as exc:
                    done.append(exc)
            return done
        finally:
            os.close(root)

    async def put_content(self, path: str, content: bytes) -> None:
        await self._call(path, functools.partial(self._put_atomic, path, bytes(content)))

    def _put_atomic(self, path: str, content: bytes) -> None:
        """A temporary file beside ``path``, fsynced, renamed over it, the directory
        fsynced: readers see the old bytes or the new. A symlink at ``path`` is
        replaced, never written through."""
        with self._beneath.parent(path, create=True) as (parent, name):
            tmp = f"{name}.tmp-{uuid.uuid4().hex}"
            try:
                fd = os.open(tmp, _CREATE | os.O_EXCL, 0o666, dir_fd=parent)
                with open(fd, "wb") as f:
                    f.write(content)
                    f.flush()
                    os.fsync(fd)
                os.replace(tmp, name, src_dir_fd=parent, dst_dir_fd=parent)
                os.fsync(parent)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp, dir_fd=parent)
                raise

    async def digest_file(
        self, path: str, algorithm: str, progress: Callable[[int], None] | None = None
    ) -> str:
        """Hash the page cache in place (mmap) in one worker thread: no copy and no hop
        to trio per chunk, so this runs at the speed of the hash itself. Meant for
        blobs, which nobody truncates: a file cut short under the mapping would
        raise SIGBUS, so the mount never calls this (fsck does)."""

        def run() -> str:
            hasher = hashlib.new(algorithm)
            with open(self._open_file(path), "rb", closefd=True) as f:
                size = os.fstat(f.fileno()).st_size
                if size == 0:
                    return hasher.hexdigest()
                with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
                    mapped.madvise(mmap.MADV_SEQUENTIAL)
                    with memoryview(mapped) as view:
                        for start in range(0, size, MMAP_HASH_STEP):
                            part = view[start : start + MMAP_HASH_STEP]
                            hasher.update(part)
                            part.release()
                            if progress is not None:
                                trio.from_thread.run_sync(
                                    progress, min(MMAP_HASH_STEP, size - start)
                                )
            return hasher.hexdigest()

        return await self._call(path, run)

    # streams ---------------------------------------------------------------
    async def reader(self, path: str, offset: int = 0) -> Reader:
        if offset < 0:
            raise InvalidOffsetError(path, offset, self.name)
        fd = await self._call(path, functools.partial(self._open_file, path))
        return _FileReader(fd, offset)

    async def writer(self, path: str, append: bool = False) -> FileWriter:
        def open_for_writing() -> tuple[int, int]:
            # appending never makes a directory or a file: the upload must be there
            with self._beneath.parent(path, create=not append) as (parent, name):
                flags = (_WRITE if append else _CREATE | os.O_TRUNC) | os.O_NONBLOCK
                fd = os.open(name, flags, 0o644, dir_fd=parent)
            mode = os.fstat(fd).st_mode
            if not statmode.S_ISREG(mode):
                os.close(fd)
                raise NotRegularError(mode, path)
            os.set_blocking(fd, True)
            return fd, os.lseek(fd, 0, os.SEEK_END)

        fd, size = await self._call(path, open_for_writing)
        return _FileWriter(
            fd,
            path,
            size,
            functools.partial(self._call, path),
            self._remove_quietly,
            functools.partial(self._names, path),
        )

    async def stamp(self, path: str) -> object:
        return await self._call(path, functools.partial(self._stamp, path))

    def _stamp(self, path: str) -> object:
        st = self._beneath.lstat(path)
        if not statmode.S_ISREG(st.st_mode):
            raise PathNotFoundError(path, self.name)
        return _stamp_of(st)

    def _names(self, path: str, fd: int) -> bool:
        """Whether ``path`` still names the file open on ``fd`` (not moved or removed)."""
        try:
            now = self._beneath.lstat(path)
        except OSError as exc:
            if exc.errno in (errno.ENOENT, errno.ENOTDIR):
                return False
            raise
        opened = os.fstat(fd)
        return (now.st_dev, now.st_ino) == (opened.st_dev, opened.st_ino)

    def _remove_quietly(self, path: str) -> None:
        with contextlib.suppress(OSError), self._beneath.parent(path) as (parent, name):
            os.unlink(name, dir_fd=parent)

    # metadata --------------------------------------------------------------
    async def stat(self, path: str) -> FileInfo:
        return await self._call(path, functools.partial(self._info, path))

    def _info(self, path: str, root: int | None = None) -> FileInfo:
        st = self._lstat(path, root)
        if statmode.S_ISLNK(st.st_mode):
            raise UnsafeEntryError(path, "a symbolic link, not followed", self.name)
        is_dir = statmode.S_ISDIR(st.st_mode)
        if not is_dir and not statmode.S_ISREG(st.st_mode):
            raise UnsafeEntryError(path, f"{kind_of(st.st_mode)}, not a file", self.name)
        return FileInfo(
            path,
            0 if is_dir else st.st_size,
            datetime.fromtimestamp(st.st_mtime, UTC),
            is_dir,
        )

    async def list(self, path: str) -> list[str]:
        parts = [] if path == "/" else path.strip("/").split("/")

        def names() -> list[str]:
            with self._beneath.directory(parts) as fd:
                return os.listdir(fd)

        try:
            found = await self._call(path, names)
        except PathNotFoundError:
            if path == "/":
                return []
            raise
        prefix = "" if path == "/" else path
        return sorted(f"{prefix}/{n}" for n in found if ".tmp-" not in n)

    async def list_infos(self, path: str) -> list[FileInfo]:
        return (await self.list_tree_infos(path, 0))[path]

    async def list_tree_infos(self, path: str, limit: int) -> dict[str, list[FileInfo]]:
        """One directory read and one ``fstatat`` per entry, then the directories below
        it, nearest first, while fewer than ``limit`` entries were read, all in one
        worker thread (not a thread hop and a path walk per entry). A symlink or
        another entry that is no file or directory is there, not ``readable``; it is
        never entered."""
        parts = [] if path == "/" else path.strip("/").split("/")
        prefix = "" if path == "/" else path

        def read() -> dict[str, list[FileInfo]]:
            with self._beneath.directory(parts) as top:
                tree = {path: _read_dir(top, prefix)}
                seen = len(tree[path])
                below = deque(info.path for info in tree[path] if info.is_dir)
                while below and seen < limit:
                    directory = below.popleft()
                    try:
                        fd = self._beneath.open_below(top, directory[len(prefix) + 1 :].split("/"))
                    except OSError:
                        continue  # gone meanwhile, or swapped for a symlink
                    try:
                        tree[directory] = _read_dir(fd, directory)
                    finally:
                        os.close(fd)
                    seen += len(tree[directory])
                    below.extend(info.path for info in tree[directory] if info.is_dir)
                return tree

        return await self._read_tree(path, read)

    async def list_tree(self, path: str, descend: Descend) -> dict[str, TreeListing]:
        """One worker thread walks the tree by directory descriptors (never through a
        symlink), with the kinds ``readdir`` gives: no ``stat`` of each entry. Each
        directory is kept packed as it is read (``TreeListing``)."""
        parts = [] if path == "/" else path.strip("/").split("/")

        def read() -> dict[str, TreeListing]:
            tree: dict[str, TreeListing] = {}
            with self._beneath.directory(parts) as fd:
                _walk_tree(fd, "" if path == "/" else path, descend, tree)
            return tree

        return await self._read_tree(path, read)

    @contextlib.asynccontextmanager
    async def reading_groups(
        self, groups: Sequence[Sequence[str]], descend: Descend, below: FilesBelow
    ) -> AsyncIterator[AsyncIterator[GroupRead]]:
        """From ``groups_in_process_from`` tops on, where ``descend`` is a pattern
        (``Refusing``), the groups are walked and read by a child process
        (``groupprocess.py``) ahead of the caller; its answers are what the threads
        give, and its failures the errors they raise."""
        refused = getattr(descend, "refused", None)
        if refused is None or sum(map(len, groups)) < self.groups_in_process_from:
            async with super().reading_groups(groups, descend, below) as reads:
                yield reads
            return
        for tops in groups:
            for top in tops:
                check_path(top)
        every = [top for tops in groups for top in tops]
        async with tops_in_process(
            self._beneath, every, refused, below.name, below.wanted
        ) as answers:
            yield self._group_reads(groups, answers)

    async def _group_reads(
        self, groups: Sequence[Sequence[str]], answers: AsyncIterator[tuple]
    ) -> AsyncIterator[GroupRead]:
        """Each group from its tops' answers (``groupchild.py``)."""
        for tops in groups:
            read = GroupRead({}, {})
            for top in tops:
                answer = await anext(answers)
                if answer[0] == "ok":
                    _, found, paths, contents = answer
                    read.tree.update(walked_tree(found))
                    for path, content in zip(paths, contents, strict=True):
                        read.files[path] = self._read_result(path, content)
                    continue
                if answer[0] == "fail":
                    raise self._error(top, rebuilt_error(answer[1], top))
                self._absent(top, rebuilt_error(answer[1], top))  # gone or unsafe: left out
            yield read

    def _read_result(self, path: str, content: bytes | tuple) -> bytes | Absent:
        """A file the child read, or why not as ``get_contents`` gives it: absent or
        unsafe as a value, any other error raised."""
        if isinstance(content, bytes):
            return content
        exc = rebuilt_error(content, path)
        if isinstance(exc, IsADirectoryError):
            return PathNotFoundError(path, self.name)  # as _read_whole
        return self._absent(path, exc)

    async def list_trees(self, tops: Sequence[str], descend: Descend) -> dict[str, TreeListing]:
        """Every top walked in one worker thread, one after another (threads at once
        contend for the interpreter more than they overlap). A top that is gone or no
        directory to enter is left out, as the default does; any other error raises."""

        def read() -> dict[str, TreeListing]:
            tree: dict[str, TreeListing] = {}
            for top in tops:
                try:
                    fd = self._beneath.open_dir(top.strip("/").split("/"))
                except OSError as exc:
                    self._absent(top, exc)  # gone or unsafe: left out
                    continue
                try:
                    _walk_tree(fd, top, descend, tree)
                finally:
                    os.close(fd)
            return tree

        return await _run(read)

    async def _read_tree(self, path: str, read: Callable[[], Tree]) -> Tree:
        """``read`` in a worker thread; a store not made yet has an empty root."""
        try:
            return await self._call(path, read)
        except PathNotFoundError:
            if path == "/":
                return {path: []}
            raise

    async def move(self, source: str, dest: str, expect: object | None = None) -> None:
        def do_move() -> None:
            with self._beneath.parent(source) as (src_dir, src_name):
                src = os.stat(src_name, dir_fd=src_dir, follow_symlinks=False)
                if statmode.S_ISLNK(src.st_mode):
                    raise UnsafeEntryError(source, "a symbolic link, not moved", self.name)
                with (
                    self._beneath.parent(dest, create=True) as (dst_dir, dst_name),
                    _locked(src_dir, src_name, src.st_mode),
                ):
                    now = os.stat(src_name, dir_fd=src_dir, follow_symlinks=False)
                    if expect is not None and _stamp_of(now) != expect:
                        raise FileChangedError(f"{source}: changed since it was validated")
                    os.replace(src_name, dst_name, src_dir_fd=src_dir, dst_dir_fd=dst_dir)

        await self._call(source, do_move)

    async def delete(self, path: str) -> None:
        """A file, or a directory with all below it (``rmtree`` by descriptors: a
        symlink inside is removed, never followed). A symlink named directly is
        left alone: whatever put it there may still want it."""

        def do_delete() -> None:
            with self._beneath.parent(path) as (parent, name):
                mode = os.stat(name, dir_fd=parent, follow_symlinks=False).st_mode
                if statmode.S_ISLNK(mode):
                    raise UnsafeEntryError(path, "a symbolic link, not deleted", self.name)
                if statmode.S_ISDIR(mode):
                    shutil.rmtree(name, dir_fd=parent)
                else:
                    os.unlink(name, dir_fd=parent)

        await self._call(path, do_delete)


_WRITE = os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC
_CREATE = _WRITE | os.O_CREAT


def _walk_tree(fd: int, directory: str, descend: Descend, tree: dict[str, TreeListing]) -> None:
    """``beneath.walk_tree`` into ``tree``, each directory's listing packed as it is
    read (a walk of the blobs holds 200,000 names: packed, 32 bytes each)."""

    def take(listed: Listed) -> None:
        tree[listed[0]] = TreeListing.walked(*listed)

    walk_tree(fd, directory, descend, take)


def walked_tree(found: list[Listed]) -> dict[str, TreeListing]:
    """The packed listings of a walk (``beneath.walk_tree``)."""
    return {directory: TreeListing.walked(directory, raws, rest) for directory, raws, rest in found}


def _read_dir(fd: int, prefix: str) -> list[FileInfo]:
    """The entries of an open directory with their attributes (``fstatat``, never
    following a symlink), in name order; temporary files of atomic puts left out."""
    found = []
    with os.scandir(fd) as entries:
        for entry in entries:
            if ".tmp-" in entry.name:
                continue
            try:
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            is_dir = statmode.S_ISDIR(st.st_mode)
            readable = is_dir or statmode.S_ISREG(st.st_mode)
            size = st.st_size if readable and not is_dir else 0
            when = datetime.fromtimestamp(st.st_mtime, UTC)
            found.append(FileInfo(f"{prefix}/{entry.name}", size, when, is_dir, readable))
    return sorted(found, key=lambda info: info.path)


class _FileReader(Reader):
    def __init__(self, fd: int, offset: int) -> None:
        self._fd = fd
        self._offset = offset

    async def read(self, size: int) -> bytes:
        data = await _run(os.pread, self._fd, size, self._offset)
        self._offset += len(data)
        return data

    async def aclose(self) -> None:
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            await _run(os.close, fd)


def _stamp_of(st: os.stat_result) -> tuple[int, int, int, int]:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


@contextlib.contextmanager
def _locked(dir_fd: int, name: str, mode: int) -> Iterator[None]:
    """An exclusive flock on a regular file while it is moved: a writer of this
    program's (in any process) writes under a shared one, after checking that its
    file is still at its path, so no byte follows a file into its new place."""
    if not statmode.S_ISREG(mode):
        yield
        return
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, dir_fd=dir_fd)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


class _FileWriter(FileWriter):
    """Appends through one descriptor; small writes are gathered up to WRITE_BUFFER.

    Each write-out holds an exclusive flock and first checks that the path still names
    the file it opened: a file moved (an upload finished by another mount) or
    removed meanwhile takes no byte from here (PathNotFoundError); and that the file
    ends where this writer left it: bytes another program appended since are not
    followed by this writer's (FileChangedError)."""

    def __init__(
        self,
        fd: int,
        path: str,
        size: int,
        call: Callable[[Callable[[], object]], Awaitable[object]],
        remove: Callable[[str], None],
        still_there: Callable[[int], bool] = lambda fd: True,
    ) -> None:
        self._fd = fd
        self._full = path
        self._call = call  # runs a system call in a thread, its OSError named for path
        self._remove = remove
        self._still_there = still_there
        self._stamp: object | None = None
        self._flushed = size
        self._buffer = bytearray()
        self._state = "open"
        self._lock = trio.Lock()

    @property
    def size(self) -> int:
        return self._flushed + len(self._buffer)

    def _check_open(self) -> None:
        if self._state != "open":
            raise WriterClosedError(f"writer for {self._full} is {self._state}")

    async def write_pieces(self, pieces: Sequence[bytes]) -> int:
        self._check_open()
        n = sum(map(len, pieces))
        async with self._lock:
            if len(self._buffer) + n < WRITE_BUFFER:
                for piece in pieces:  # small: gathered, copied on the trio thread
                    self._buffer += piece
            else:  # what was gathered, then the pieces: one writev, nothing copied
                gathered, self._buffer = self._buffer, bytearray()
                await self._write_out(gathered, *pieces)
        return n

    async def _write_out(self, *pieces: bytes | bytearray) -> None:
        """One writev for all pieces (no joined copy), in a worker thread."""
        start, size = self._flushed, sum(map(len, pieces))

        def write_all() -> None:
            views = [memoryview(piece) for piece in pieces if len(piece)]
            # exclusive: two mounts' writers checking the end and writing under a
            # shared lock both passed the check and interleaved their bytes
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            try:
                if not self._still_there(self._fd):
                    raise FileNotFoundError(errno.ENOENT, "moved or removed since it was opened")
                if os.fstat(self._fd).st_size != start:
                    raise FileChangedError(
                        f"{self._full}: another program wrote it since this writer's last write"
                    )
                while views:
                    written = os.writev(self._fd, _first_bytes(views, WRITE_CALL))
                    while views and written >= len(views[0]):
                        written -= len(views[0])
                        views.pop(0)
                    if written:
                        views[0] = views[0][written:]
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            start_writeback(self._fd, start, size)

        await self._call(write_all)
        self._flushed += size

    async def _flush(self) -> None:
        if self._buffer:
            gathered, self._buffer = self._buffer, bytearray()
            await self._write_out(gathered)

    async def close(self) -> None:
        if self._state == "closed":
            raise WriterClosedError(f"writer for {self._full} is already closed")
        async with self._lock:
            if self._state != "cancelled":
                try:
                    await self._flush()
                    self._stamp = _stamp_of(await _run(os.fstat, self._fd))
                finally:
                    await _run(os.close, self._fd)
            self._state = "closed"

    @property
    def stamp(self) -> object | None:
        return self._stamp

    async def cancel(self) -> None:
        self._check_open()
        async with self._lock:
            self._state = "cancelled"
            self._buffer.clear()
            await _run(os.close, self._fd)
            await _run(self._remove, self._full)

    async def commit(self) -> None:
        self._check_open()
        async with self._lock:
            await self._flush()
            await self._call(functools.partial(os.fsync, self._fd))
            self._state = "committed"
            self._stamp = _stamp_of(await _run(os.fstat, self._fd))
