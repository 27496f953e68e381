"""Open paths below a root directory without ever following a symbolic link.

The store is written by other programs (a registry, its operator), and the mount
often runs as root with ``allow_other``. A symbolic link placed in the store must not
let anyone read or write what it points at, so every path the filesystem driver
touches is resolved here, one directory descriptor at a time:

- with ``openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)`` where the kernel has it
  (Linux 5.6 and later): one call, and the kernel refuses any symlink or ``..`` on
  the way;
- otherwise with ``openat(O_NOFOLLOW | O_DIRECTORY)`` at every component.

The last component is never followed either: :meth:`Beneath.open_file` opens it
with ``O_NOFOLLOW`` (and ``O_NONBLOCK``, so a FIFO cannot hang the open) and takes
only a regular file; other callers look at it with ``fstatat(AT_SYMLINK_NOFOLLOW)``.
A symlink anywhere gives :class:`SymlinkError` (an ``OSError`` with ``ELOOP``), any
other entry that is no file :class:`NotRegularError`, both naming the driver path.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import re
import stat
from collections.abc import Callable, Iterator

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08
# openat2 has the same number on every architecture that has it (the generic table)
_SYS_OPENAT2 = 437 if os.uname().machine in ("x86_64", "aarch64", "arm64") else None


class _OpenHow(ctypes.Structure):
    _fields_ = (
        ("flags", ctypes.c_uint64),
        ("mode", ctypes.c_uint64),
        ("resolve", ctypes.c_uint64),
    )


_libc = ctypes.CDLL(None, use_errno=True)


class SymlinkError(OSError):
    """A symbolic link on a path, or at its end."""


class NotRegularError(OSError):
    """A FIFO, socket or device where a file was asked for."""

    def __init__(self, mode: int, shown: str) -> None:
        self.kind = kind_of(mode)
        super().__init__(errno.EACCES, self.kind, shown)


def kind_of(mode: int) -> str:
    """What an entry is, in words for a message."""
    for test, word in (
        (stat.S_ISLNK, "a symbolic link"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISDIR, "a directory"),
    ):
        if test(mode):
            return word
    return "a regular file" if stat.S_ISREG(mode) else "no file"


_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_PATH = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC


_syscall = _libc.syscall
_syscall.restype = ctypes.c_long
_syscall.argtypes = [ctypes.c_long, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p, ctypes.c_size_t]
_HOWS: dict[int, _OpenHow] = {}  # one open_how per set of flags, made once (and kept)


def _openat2(dir_fd: int, relative: str, flags: int = DIR_FLAGS) -> int:
    how = _HOWS.get(flags)
    if how is None:
        how = _HOWS[flags] = _OpenHow(flags, 0, RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)
    fd = _syscall(
        _SYS_OPENAT2, dir_fd, relative.encode(), ctypes.addressof(how), ctypes.sizeof(how)
    )
    if fd < 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), relative)
    return fd


def _probe_openat2() -> bool:
    if _SYS_OPENAT2 is None:
        return False
    root = os.open("/", DIR_FLAGS)
    try:
        os.close(_openat2(root, "."))
    except OSError as exc:
        return exc.errno not in (errno.ENOSYS, errno.EPERM, errno.EINVAL)
    finally:
        os.close(root)
    return True


HAVE_OPENAT2 = _probe_openat2()


class Beneath:
    """Directory descriptors below ``root`` for driver paths (``/a/b/c``).

    ``root`` itself is trusted (the operator named it) and may be a symlink; nothing
    below it is followed. ``use_openat2`` is there for tests of the fallback walk.
    """

    def __init__(self, root: str, use_openat2: bool = HAVE_OPENAT2) -> None:
        self.root = root
        self.use_openat2 = use_openat2

    def open_root(self) -> int:
        return os.open(self.root, DIR_FLAGS)

    def open_dir(self, parts: list[str], create: bool = False, shown: str = "") -> int:
        """A descriptor of the directory ``root/parts…``; with ``create``, missing
        directories are made on the way (never through a symlink)."""
        root = self.open_root()
        if not parts:
            return root
        try:
            return self.open_below(root, parts, create, shown or "/" + "/".join(parts))
        finally:
            os.close(root)

    def open_below(self, fd: int, parts: list[str], create: bool = False, shown: str = "") -> int:
        """A descriptor of the directory ``fd/parts…``, through no symlink; with
        ``create``, missing directories are made on the way."""
        shown = shown or "/".join(parts)
        if self.use_openat2:
            try:
                return _openat2(fd, "/".join(parts))
            except FileNotFoundError:
                if not create:
                    raise
            except OSError as exc:
                raise self._refusal(exc, shown) from None
        # no openat2, or directories to make: one component at a time
        return self._walk(fd, parts, create, shown)

    def open_parent(self, path: str, create: bool = False) -> tuple[int, str]:
        """The descriptor of ``path``'s parent and its last component."""
        parts = path.strip("/").split("/")
        return self.open_dir(parts[:-1], create, path), parts[-1]

    @contextlib.contextmanager
    def parent(self, path: str, create: bool = False) -> Iterator[tuple[int, str]]:
        """``open_parent``, closed when the block ends."""
        fd, name = self.open_parent(path, create)
        try:
            yield fd, name
        finally:
            os.close(fd)

    @contextlib.contextmanager
    def directory(self, parts: list[str]) -> Iterator[int]:
        """``open_dir``, closed when the block ends."""
        fd = self.open_dir(parts)
        try:
            yield fd
        finally:
            os.close(fd)

    def open_file(self, path: str, root: int | None = None) -> int:
        """A blocking read descriptor of the regular file at ``path``: a symlink is a
        SymlinkError, a directory IsADirectoryError, anything else NotRegularError.
        With ``root`` (a descriptor of the root, held across a batch of opens) and
        openat2, the whole path is one system call."""
        fd, _ = self._open_regular(path, root)
        os.set_blocking(fd, True)
        return fd

    def read_file(self, path: str, root: int | None = None) -> bytes:
        """The bytes of the regular file at ``path`` (as ``open_file``), read with
        its size known: one read for a file that is not growing."""
        fd, size = self._open_regular(path, root)
        try:
            data = os.read(fd, size + 1)
            if len(data) <= size:
                return data
            pieces = [data]  # it grew since the fstat: read on to its end
            while piece := os.read(fd, 1 << 20):
                pieces.append(piece)
            return b"".join(pieces)
        finally:
            os.close(fd)

    def _open_regular(self, path: str, root: int | None) -> tuple[int, int]:
        """A non-blocking descriptor of a regular file (O_NONBLOCK, so a FIFO cannot
        hang the open; for a regular file it changes nothing) and its size."""
        try:
            if root is not None and self.use_openat2:
                fd = _openat2(root, path.lstrip("/"), _READ)
            else:
                with self.parent(path) as (parent, name):
                    fd = os.open(name, _READ, dir_fd=parent)
        except OSError as exc:
            raise self._refusal(exc, path) from None
        try:
            st = os.fstat(fd)
            if stat.S_ISDIR(st.st_mode):
                raise IsADirectoryError(errno.EISDIR, "a directory", path)
            if not stat.S_ISREG(st.st_mode):
                raise NotRegularError(st.st_mode, path)
        except BaseException:
            os.close(fd)
            raise
        return fd, st.st_size

    def lstat(self, path: str, root: int | None = None) -> os.stat_result:
        """The attributes of the entry at ``path`` itself (a symlink is not followed,
        at the end or on the way). With ``root`` and openat2: one ``O_PATH`` open,
        which the kernel lets name a symlink at the end and nothing on the way."""
        if root is not None and self.use_openat2:
            try:
                fd = _openat2(root, path.lstrip("/"), _PATH)
            except OSError as exc:
                raise self._refusal(exc, path) from None
            try:
                return os.fstat(fd)
            finally:
                os.close(fd)
        with self.parent(path) as (parent, name):
            return os.stat(name, dir_fd=parent, follow_symlinks=False)

    def _walk(self, root: int, parts: list[str], create: bool, shown: str) -> int:
        fd = os.dup(root)
        try:
            for part in parts:
                child = self._open_child(fd, part, create, shown)
                os.close(fd)
                fd = child
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _open_child(self, fd: int, part: str, create: bool, shown: str) -> int:
        for _ in range(2):
            try:
                return os.open(part, DIR_FLAGS | os.O_NOFOLLOW, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    raise
                with contextlib.suppress(FileExistsError):  # made meanwhile: open it
                    os.mkdir(part, dir_fd=fd)
            except NotADirectoryError:
                if _is_symlink(fd, part):
                    raise SymlinkError(errno.ELOOP, "a symbolic link", shown) from None
                raise
        return os.open(part, DIR_FLAGS | os.O_NOFOLLOW, dir_fd=fd)

    @staticmethod
    def _refusal(exc: OSError, shown: str) -> OSError:
        """ELOOP (a symlink on the way) and EXDEV (a way out of the root) become a
        SymlinkError; ENOTDIR stays (a file where a directory belongs)."""
        if exc.errno in (errno.ELOOP, errno.EXDEV):
            return SymlinkError(errno.ELOOP, "a symbolic link, not followed", shown)
        exc.filename = shown or exc.filename
        return exc


def _is_symlink(dir_fd: int, name: str) -> bool:
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except OSError:
        return False


# A walk's listing of one directory: its path, the raw values of its directories named
# by a sha256 hex (sorted), and every other entry as (name, kind, what it is when ODD),
# sorted by name. The kinds are TreeListing's.
Listed = tuple[str, list[bytes], list[tuple[str, int, str]]]
FILE, DIRECTORY, ODD = 0, 1, 2
HEX_NAME = re.compile(r"[0-9a-f]{64}")  # a sha256 digest's hex: kept as 32 raw bytes
TREE_DEPTH = 160  # levels a walk descends at most (a repository name has up to 128)


def walk_tree(
    fd: int,
    directory: str,
    descend: Callable[[str], bool],
    take: Callable[[Listed], object],
    left: list[str] | None = None,
    depth: int = 0,
) -> None:
    """The listing of the open directory ``fd`` (driver path ``directory``, "" for
    the root) and of every directory below it that ``descend`` takes, parents first,
    each handed to ``take`` as it is read; the paths of the directories it did not
    take into ``left``. Nothing is followed: a symlink or any other entry that is
    neither file nor directory is ODD. Temporary files of atomic puts are left out,
    and an entry gone meanwhile. Below TREE_DEPTH levels nothing is listed (a store
    made to exhaust the stack or the descriptors)."""
    raws: list[bytes] = []
    rest: list[tuple[str, int, str]] = []
    with os.scandir(fd) as entries:
        for entry in entries:
            name = entry.name
            if ".tmp-" in name:
                continue
            try:
                if entry.is_dir(follow_symlinks=False):
                    if len(name) == 64 and HEX_NAME.fullmatch(name):
                        raws.append(bytes.fromhex(name))
                    else:
                        rest.append((name, DIRECTORY, ""))
                elif entry.is_file(follow_symlinks=False):
                    rest.append((name, FILE, ""))
                else:
                    odd = kind_of(entry.stat(follow_symlinks=False).st_mode)
                    rest.append((name, ODD, f"{odd}, not followed"))
            except FileNotFoundError:
                continue  # gone meanwhile
    raws.sort()
    rest.sort()
    take((directory or "/", raws, rest))
    if depth >= TREE_DEPTH:
        return
    below = [raw.hex() for raw in raws] + [name for name, kind, _ in rest if kind == DIRECTORY]
    for name in below:
        path = f"{directory}/{name}"
        if not descend(path):
            if left is not None:
                left.append(path)
            continue
        try:
            child = os.open(name, DIR_FLAGS | os.O_NOFOLLOW, dir_fd=fd)
        except OSError:
            continue  # gone meanwhile, or swapped for a symlink
        try:
            walk_tree(child, path, descend, take, left, depth + 1)
        finally:
            os.close(child)
