"""File sizes stated in a second process, for a whole-store pass on a local disk.

A pass over a store of 200,000 blobs states each blob's ``data``. In worker threads
that work holds the interpreter the pass needs for reading and parsing the
repositories at the same moment (measured: the two together took longer than one
after the other). A child process has its own interpreter and, on a second core,
states while the pass reads on.

The child is ``sizechild.py`` run as a script: it loads only the standard library and
``beneath.py`` (11 MB, where importing the package would cost 27 MB). It reads
NUL-separated paths below ROOT from its input (or, for ``file_sizes_in``, each
directory with its packed hex names, and makes the paths itself) and writes, for
each path in order, a signed 8-byte size: the size of the regular file there, or -1
for anything else (absent, a directory, a symbolic link anywhere on the way, any
error), which the caller asks the driver about (``stat_many``) to learn why. Each
path is stated with ``Beneath.lstat``, as the driver's own ``stat`` is: nothing
below ROOT is followed. The child only reads.
"""

from __future__ import annotations

import subprocess
import sys
from array import array
from collections.abc import Iterable, Sequence
from pathlib import Path

import trio

from .base import WIDTH, StorageDriverError, chunked
from .beneath import Beneath

CHUNK = 4096  # paths sent (and sizes answered) together
CHILD = Path(__file__).with_name("sizechild.py")
_SIZE = array("q").itemsize


class SizeProcessError(StorageDriverError):
    """The child ended without answering every path (its error output says why)."""


async def sizes_in_process(beneath: Beneath, paths: Iterable[str]) -> array[int]:
    """The size of each path's regular file below ``beneath``'s root (-1 where there
    is none), stated by a child process that resolves paths as ``beneath`` does.
    Paths are sent a chunk at a time while the answers come back, so neither side
    holds them all."""
    requests = ((b"".join(p.encode() + b"\0" for p in chunk), len(chunk))
                for chunk in chunked(paths, CHUNK))  # fmt: skip
    return await _sizes(beneath, requests, ["paths"])


async def sizes_in_process_in(
    beneath: Beneath, directories: Sequence[str], packed: Sequence[bytes], below: str
) -> array[int]:
    """``sizes_in_process`` of ``<directory>/<hex><below>`` for each packed value
    (``StorageDriver.file_sizes_in``): the child makes the paths, so the caller sends
    each directory's packed bytes as they are."""
    requests = (
        (_directory_header(directory, len(values) // WIDTH) + values, len(values) // WIDTH)
        for directory, values in zip(directories, packed, strict=True)
    )
    return await _sizes(beneath, requests, ["hex", below])


def _directory_header(directory: str, count: int) -> bytes:
    name = directory.encode()
    return len(name).to_bytes(2, "little") + name + count.to_bytes(8, "little")


async def _sizes(
    beneath: Beneath, requests: Iterable[tuple[bytes, int]], mode: list[str]
) -> array[int]:
    """Run the child in ``mode``, sending each request's bytes (which ask for its
    count of sizes) while the sizes come back."""
    how = "openat2" if beneath.use_openat2 else "walk"
    process = await trio.lowlevel.open_process(
        [sys.executable, "-S", str(CHILD), beneath.root, how, *mode],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    sizes, errors, sent = array("q"), bytearray(), [0]
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_send, process.stdin, requests, sent)
            nursery.start_soon(keep_start, process.stderr, errors)
            await _receive(process.stdout, sizes)
        code = await process.wait()
    finally:
        if process.returncode is None:
            process.kill()
            with trio.CancelScope(shield=True):
                await process.wait()
    if code != 0 or len(sizes) != sent[0]:
        why = errors.decode(errors="replace").strip() or f"exit status {code}"
        raise SizeProcessError(f"stating sizes in a child process: {why}")
    return sizes


async def _send(
    stream: trio.abc.SendStream, requests: Iterable[tuple[bytes, int]], sent: list[int]
) -> None:
    async with stream:
        for data, count in requests:
            sent[0] += count
            try:
                await stream.send_all(data)
            except trio.BrokenResourceError:
                return  # the child ended: its count and its errors tell


async def _receive(stream: trio.abc.ReceiveStream, sizes: array[int]) -> None:
    pending = b""
    while data := await stream.receive_some(1 << 16):
        pending += data
        whole = len(pending) - len(pending) % _SIZE
        sizes.frombytes(pending[:whole])
        pending = pending[whole:]


async def keep_start(stream: trio.abc.ReceiveStream, kept: bytearray, most: int = 4096) -> None:
    """The first ``most`` bytes of ``stream``, the rest read and dropped."""
    while data := await stream.receive_some():
        kept.extend(data[: max(0, most - len(kept))])
