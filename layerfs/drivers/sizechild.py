"""The child process of ``sizeprocess.py``: a signed 8-byte size on standard output
for each path asked on standard input, in order (-1 for anything but a regular file,
or any error). Asked in one of two ways, by the mode after ROOT and HOW:

- ``paths``: NUL-separated paths;
- ``hex BELOW``: directories, each a 2-byte length, its path, an 8-byte count and
  that many 32-byte values; the paths are ``<directory>/<hex><BELOW>``.

Run as a script by its path, beside ``beneath.py``, so that it loads nothing of the
package but that file; no module in this directory may take the name of a standard
one it imports."""

from __future__ import annotations

import io
import os
import stat
import sys
from array import array
from collections.abc import Iterator

from beneath import Beneath  # beside this script, which is never imported

WIDTH = 32  # bytes of a packed hex name (base.WIDTH)


def size_of(beneath: Beneath, root: int, path: str) -> int:
    try:
        st = beneath.lstat(path, root)
    except OSError:
        return -1
    return st.st_size if stat.S_ISREG(st.st_mode) else -1


def asked_paths(source: io.BufferedReader) -> Iterator[list[str]]:
    """The NUL-separated paths of ``source``, as many as each read brings."""
    pending = b""
    while data := source.read1(1 << 16):
        *whole, pending = (pending + data).split(b"\0")
        if whole:
            yield [p.decode() for p in whole]


def asked_hex_paths(source: io.BufferedReader, below: str) -> Iterator[list[str]]:
    """The paths of each directory's packed hex names, a directory at a time."""
    while length := source.read(2):
        directory = exactly(source, int.from_bytes(length, "little")).decode()
        count = int.from_bytes(exactly(source, 8), "little")
        values = exactly(source, count * WIDTH)
        yield [f"{directory}/{values[i : i + WIDTH].hex()}{below}"
               for i in range(0, len(values), WIDTH)]  # fmt: skip


def exactly(source: io.BufferedReader, size: int) -> bytes:
    data = source.read(size)
    if len(data) != size:
        raise SystemExit("input ended inside a directory's packed names")
    return data


def serve(root_path: str, how: str, mode: str, *below: str) -> None:
    beneath = Beneath(root_path, use_openat2=how == "openat2")
    root = beneath.open_root()
    source, sink = sys.stdin.buffer, sys.stdout.buffer
    batches = asked_paths(source) if mode == "paths" else asked_hex_paths(source, *below)
    for batch in batches:
        sizes = array("q", (size_of(beneath, root, p) for p in batch))
        sink.write(sizes.tobytes())
        sink.flush()
    os.close(root)


if __name__ == "__main__":
    serve(*sys.argv[1:])
