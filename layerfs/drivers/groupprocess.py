"""Groups of directories walked and their small files read in a second process, for
a whole-store pass on a local disk.

A pass over a store of 200,000 blobs walks some 77,000 directories of repositories
and reads some 240,000 link files. In worker threads that is Python holding the
interpreter the pass needs to check what was read, so the two took turns. The child
(``groupchild.py``, run as a script: it loads only the standard library and
``beneath.py``) walks and reads every top (a repository) in order, each answer a
frame, while the pass checks the groups before: up to FRAMES_AHEAD frames wait here,
unparsed, and the pipe holds the child back beyond that. It resolves every path with the same
``Beneath`` and walks with the same ``beneath.walk_tree`` as the driver's threads:
nothing below the root is followed, and it only reads.
"""

from __future__ import annotations

import contextlib
import fcntl
import marshal
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import trio

from .base import StorageDriverError
from .beneath import Beneath, NotRegularError, SymlinkError
from .sizeprocess import keep_start

CHILD = Path(__file__).with_name("groupchild.py")
FRAMES_AHEAD = 32  # tops read and waiting for the pass, at most, beside...
PIPE_SIZE = 1 << 20  # ...what the pipe holds (Linux's pipe-max-size by default)


class GroupProcessError(StorageDriverError):
    """The child ended before answering every top (its error output says why)."""


@contextlib.asynccontextmanager
async def tops_in_process(
    beneath: Beneath, tops: Sequence[str], refused: str, name: str, wanted: str
) -> AsyncIterator[AsyncIterator[tuple]]:
    """The child's answer for each top, in order (``groupchild.py`` says what one
    holds), read while the caller works on the ones before. Leaving early ends the
    child."""
    how = "openat2" if beneath.use_openat2 else "walk"
    process = await trio.lowlevel.open_process(
        [sys.executable, "-S", str(CHILD), beneath.root, how],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    _widen(process.stdout)  # type: ignore[arg-type]
    request = marshal.dumps((list(tops), refused, name, wanted))
    send, receive = trio.open_memory_channel[bytes](FRAMES_AHEAD)
    errors = bytearray()
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_send_request, process.stdin, request)
            nursery.start_soon(keep_start, process.stderr, errors)
            nursery.start_soon(_receive_frames, process.stdout, send)
            yield _answers(receive, len(tops), process, errors)
            nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:  # the nursery's: the caller's error as itself
        raise _alone(group) from None
    finally:
        if process.returncode is None:
            process.kill()
        with trio.CancelScope(shield=True):
            await process.wait()


def _widen(stream: trio.lowlevel.FdStream) -> None:
    """The child's output pipe as wide as an unprivileged process may make it: the
    child runs ahead by that much even while the pass holds the interpreter and no
    task here reads (a pass checking a group awaits nothing that waits)."""
    with contextlib.suppress(OSError):
        fcntl.fcntl(stream.fileno(), fcntl.F_SETPIPE_SZ, PIPE_SIZE)


async def _send_request(stream: trio.abc.SendStream, request: bytes) -> None:
    async with stream:
        with contextlib.suppress(trio.BrokenResourceError):
            await stream.send_all(request)  # else the child ended: its errors tell


async def _receive_frames(stream: trio.abc.ReceiveStream, send: trio.MemorySendChannel) -> None:
    """Each length-prefixed frame of ``stream``, whole, into ``send``."""
    async with send:
        pending = b""
        while True:
            header = await _exactly(stream, 4, pending)
            if header is None:
                return
            size = int.from_bytes(header[:4], "little")
            frame = await _exactly(stream, 4 + size, header)
            if frame is None:
                return  # cut short: the count of answers tells
            pending = frame[4 + size :]
            await send.send(frame[4 : 4 + size])


async def _exactly(stream: trio.abc.ReceiveStream, size: int, start: bytes) -> bytes | None:
    """At least ``size`` bytes beginning with ``start``; None where the stream ends
    first."""
    pieces, have = [start], len(start)
    while have < size:
        data = await stream.receive_some(max(size - have, 1 << 16))
        if not data:
            return None
        pieces.append(data)
        have += len(data)
    return b"".join(pieces)


async def _answers(
    receive: trio.MemoryReceiveChannel, count: int, process: trio.Process, errors: bytearray
) -> AsyncIterator[tuple]:
    for _ in range(count):
        try:
            frame = await receive.receive()
        except trio.EndOfChannel:
            code = await process.wait()
            why = errors.decode(errors="replace").strip() or f"exit status {code}"
            raise GroupProcessError(f"walking and reading in a child process: {why}") from None
        yield marshal.loads(frame)


def _alone(group: BaseExceptionGroup) -> BaseException:
    """The one error a group holds, else the group."""
    found: BaseException = group
    while isinstance(found, BaseExceptionGroup) and len(found.exceptions) == 1:
        found = found.exceptions[0]
    return found


def rebuilt_error(why: Any, path: str) -> OSError:
    """The OSError the child met (``groupchild.why``), for ``path``, as the driver's
    threads would have met it."""
    code, strerror, tag, kind = why
    if tag == "symlink":
        return SymlinkError(code, strerror, path)
    if tag == "notregular":
        error = NotRegularError(0, path)
        error.kind = kind
        return error
    if tag == "isdir":
        return IsADirectoryError(code, strerror, path)
    return OSError(code, strerror, path)
