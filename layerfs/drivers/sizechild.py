"""The child process of ``sizeprocess.py``: sizes for the NUL-separated paths on
standard input, in order, each a signed 8-byte integer on standard output (-1 for
anything but a regular file, or any error). Run as a script by its path, beside
``beneath.py``, so that it loads nothing of the package but that file; no module in
this directory may take the name of a standard one it imports."""

import os
import stat
import sys
from array import array

from beneath import Beneath  # beside this script, which is never imported


def size_of(beneath: Beneath, root: int, path: str) -> int:
    try:
        st = beneath.lstat(path, root)
    except OSError:
        return -1
    return st.st_size if stat.S_ISREG(st.st_mode) else -1


def serve(root_path: str, how: str) -> None:
    beneath = Beneath(root_path, use_openat2=how == "openat2")
    root = beneath.open_root()
    source, sink = sys.stdin.buffer, sys.stdout.buffer
    pending = b""
    while data := source.read1(1 << 16):
        *whole, pending = (pending + data).split(b"\0")
        if whole:
            sizes = array("q", (size_of(beneath, root, p.decode()) for p in whole))
            sink.write(sizes.tobytes())
            sink.flush()
    os.close(root)


if __name__ == "__main__":
    serve(*sys.argv[1:3])
