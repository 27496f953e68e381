"""A pyfuse3 mount with one file, ``sink``, that accepts and discards every write:
the FUSE ceiling of this machine, for scripts/bench. Usage: fuse_discard.py MOUNTPOINT"""

from __future__ import annotations

import errno
import os
import stat
import sys

import pyfuse3
import trio

SINK = pyfuse3.ROOT_INODE + 1


class Discard(pyfuse3.Operations):
    def __init__(self) -> None:
        super().__init__()
        self.size = 0

    def _attrs(self, ino: int) -> pyfuse3.EntryAttributes:
        attrs = pyfuse3.EntryAttributes()
        attrs.st_ino = ino
        attrs.st_mode = (
            (stat.S_IFDIR | 0o755) if ino == pyfuse3.ROOT_INODE else (stat.S_IFREG | 0o644)
        )
        attrs.st_size = self.size if ino == SINK else 0
        attrs.st_blksize = 1 << 20
        attrs.st_uid, attrs.st_gid = os.getuid(), os.getgid()
        return attrs

    async def getattr(self, inode, ctx=None):  # type: ignore[no-untyped-def]
        return self._attrs(inode)

    async def lookup(self, parent_inode, name, ctx=None):  # type: ignore[no-untyped-def]
        if name != b"sink":
            raise pyfuse3.FUSEError(errno.ENOENT)
        return self._attrs(SINK)

    async def setattr(self, inode, attr, fields, fh, ctx):  # type: ignore[no-untyped-def]
        if fields.update_size:
            self.size = attr.st_size
        return self._attrs(inode)

    async def open(self, inode, flags, ctx):  # type: ignore[no-untyped-def]
        return pyfuse3.FileInfo(fh=inode)

    async def write(self, fh, off, buf):  # type: ignore[no-untyped-def]
        self.size = max(self.size, off + len(buf))
        return len(buf)


async def main(mountpoint: str) -> None:
    pyfuse3.init(Discard(), mountpoint, {"fsname=discard"})
    try:
        await pyfuse3.main()
    finally:
        pyfuse3.close(unmount=True)


if __name__ == "__main__":
    trio.run(main, sys.argv[1])
