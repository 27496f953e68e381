"""The default driver: a local directory laid out like docker-registry's ``rootdirectory``.

Driver path ``/docker/registry/v2/x`` is the file ``ROOT/docker/registry/v2/x``.
Every system call runs in a worker thread so the trio loop never waits on the disk.
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import mmap
import os
import shutil
import stat as statmode
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

import trio

from .base import (
    FileInfo,
    FileWriter,
    InvalidOffsetError,
    PathNotFoundError,
    Reader,
    StorageDriver,
    StorageDriverError,
    WriterClosedError,
    check_path,
)

# digest_file reports progress after each step of this many bytes.
MMAP_HASH_STEP = 16 << 20
# Writes smaller than this are gathered before they go to a worker thread.
WRITE_BUFFER = 1 << 20
_IOV_MAX = os.sysconf("SC_IOV_MAX")


async def _run(fn, *args):  # type: ignore[no-untyped-def]
    return await trio.to_thread.run_sync(fn, *args)


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


_libc = ctypes.CDLL(None, use_errno=True)
_sync_file_range = getattr(_libc, "sync_file_range", None)
if _sync_file_range is not None:
    _sync_file_range.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
SYNC_FILE_RANGE_WRITE = 2


def start_writeback(fd: int, offset: int, length: int) -> None:
    """Ask the kernel to start writing these bytes to disk now, without waiting, so
    the fsync at commit finds little left to do (and a finish stays quick)."""
    if _sync_file_range is not None:
        _sync_file_range(fd, offset, length, SYNC_FILE_RANGE_WRITE)


class FilesystemDriver(StorageDriver):
    name = "filesystem"

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = os.path.abspath(os.fspath(root))
        os.makedirs(self.root, exist_ok=True)

    @property
    def location(self) -> str:
        return self.root

    async def statvfs(self) -> os.statvfs_result:
        return await _run(os.statvfs, self.root)

    def full_path(self, path: str, allow_root: bool = False) -> str:
        check_path(path, self.name, allow_root)
        return self.root if path == "/" else self.root + path

    def _not_found(self, path: str, exc: OSError) -> StorageDriverError:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            return PathNotFoundError(path, self.name)
        return StorageDriverError(f"{self.name}: {path}: {exc.strerror}")

    # content -------------------------------------------------------------
    async def get_content(self, path: str) -> bytes:
        full = self.full_path(path)
        try:
            return await _run(Path(full).read_bytes)
        except IsADirectoryError:
            raise PathNotFoundError(path, self.name) from None
        except OSError as exc:
            raise self._not_found(path, exc) from None

    async def put_content(self, path: str, content: bytes) -> None:
        full = self.full_path(path)
        await _run(self._put_atomic, full, bytes(content))

    @staticmethod
    def _put_atomic(full: str, content: bytes) -> None:
        parent = os.path.dirname(full)
        os.makedirs(parent, exist_ok=True)
        tmp = f"{full}.tmp-{uuid.uuid4().hex}"
        try:
            with open(tmp, "wb") as f:
                f.write(content)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, full)
        except BaseException:
            with _suppress_oserror():
                os.unlink(tmp)
            raise
        _fsync_dir(parent)

    async def digest_file(
        self, path: str, algorithm: str, progress: Callable[[int], None] | None = None
    ) -> str:
        """Hash the page cache in place (mmap) in one worker thread: no copy and no hop
        to trio per chunk, so this runs at the speed of the hash itself. Meant for
        blobs, which nobody truncates: a file cut short under the mapping would
        raise SIGBUS, so the mount never calls this (fsck does)."""
        full = self.full_path(path)

        def run() -> str:
            hasher = hashlib.new(algorithm)
            with open(full, "rb") as f:
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

        try:
            return await _run(run)
        except IsADirectoryError:
            raise PathNotFoundError(path, self.name) from None
        except OSError as exc:
            raise self._not_found(path, exc) from None

    # streams ---------------------------------------------------------------
    async def reader(self, path: str, offset: int = 0) -> Reader:
        full = self.full_path(path)
        if offset < 0:
            raise InvalidOffsetError(path, offset, self.name)
        try:
            f = await _run(open, full, "rb", 0)
        except IsADirectoryError:
            raise PathNotFoundError(path, self.name) from None
        except OSError as exc:
            raise self._not_found(path, exc) from None
        return _FileReader(f, offset)

    async def writer(self, path: str, append: bool = False) -> FileWriter:
        full = self.full_path(path)

        def open_for_writing() -> tuple[int, int]:
            if append and not os.path.exists(full):  # never makes a directory for it
                raise FileNotFoundError(errno.ENOENT, "no such file", full)
            os.makedirs(os.path.dirname(full), exist_ok=True)
            flags = os.O_WRONLY | os.O_CREAT | (0 if append else os.O_TRUNC)
            fd = os.open(full, flags, 0o644)
            return fd, os.lseek(fd, 0, os.SEEK_END)

        try:
            fd, size = await _run(open_for_writing)
        except IsADirectoryError:
            raise StorageDriverError(f"{self.name}: {path} is a directory") from None
        except OSError as exc:
            raise self._not_found(path, exc) from None
        return _FileWriter(fd, full, size)

    # metadata --------------------------------------------------------------
    async def stat(self, path: str) -> FileInfo:
        full = self.full_path(path)
        try:
            st = await _run(os.stat, full)
        except OSError as exc:
            raise self._not_found(path, exc) from None
        is_dir = statmode.S_ISDIR(st.st_mode)
        return FileInfo(
            path,
            0 if is_dir else st.st_size,
            datetime.fromtimestamp(st.st_mtime, UTC),
            is_dir,
        )

    async def list(self, path: str) -> list[str]:
        full = self.full_path(path, allow_root=True)
        try:
            names = await _run(os.listdir, full)
        except OSError as exc:
            if path == "/" and exc.errno == errno.ENOENT:
                return []
            raise self._not_found(path, exc) from None
        prefix = "" if path == "/" else path
        return sorted(f"{prefix}/{n}" for n in names if ".tmp-" not in n)

    async def move(self, source: str, dest: str) -> None:
        src, dst = self.full_path(source), self.full_path(dest)

        def do_move() -> None:
            if not os.path.exists(src):
                raise FileNotFoundError(errno.ENOENT, "no such file", src)
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            os.replace(src, dst)

        try:
            await _run(do_move)
        except OSError as exc:
            raise self._not_found(source, exc) from None

    async def delete(self, path: str) -> None:
        full = self.full_path(path)

        def do_delete() -> None:
            if os.path.isdir(full) and not os.path.islink(full):
                shutil.rmtree(full)
            else:
                os.unlink(full)

        try:
            await _run(do_delete)
        except OSError as exc:
            raise self._not_found(path, exc) from None


class _suppress_oserror:
    def __enter__(self) -> None:
        return None

    def __exit__(self, typ: type | None, exc: BaseException | None, tb: object) -> bool:
        return typ is not None and issubclass(typ, OSError)


class _FileReader(Reader):
    def __init__(self, f, offset: int) -> None:  # type: ignore[no-untyped-def]
        self._f = f
        self._offset = offset

    async def read(self, size: int) -> bytes:
        data = await _run(os.pread, self._f.fileno(), size, self._offset)
        self._offset += len(data)
        return data

    async def aclose(self) -> None:
        await _run(self._f.close)


class _FileWriter(FileWriter):
    """Appends through one descriptor; small writes are gathered up to WRITE_BUFFER."""

    def __init__(self, fd: int, full: str, size: int) -> None:
        self._fd = fd
        self._full = full
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
            while views:
                written = os.writev(self._fd, views[:_IOV_MAX])
                while views and written >= len(views[0]):
                    written -= len(views[0])
                    views.pop(0)
                if written:
                    views[0] = views[0][written:]
            start_writeback(self._fd, start, size)

        await _run(write_all)
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
                await self._flush()
                await _run(os.close, self._fd)
            self._state = "closed"

    async def cancel(self) -> None:
        self._check_open()
        async with self._lock:
            self._state = "cancelled"
            self._buffer.clear()
            await _run(os.close, self._fd)

            def remove() -> None:
                with _suppress_oserror():
                    os.unlink(self._full)

            await _run(remove)

    async def commit(self) -> None:
        self._check_open()
        async with self._lock:
            await self._flush()
            await _run(os.fsync, self._fd)
            self._state = "committed"
