"""A pyfuse3 mount of a tree held in memory (DIRS directories of one file each,
under 64 parents), answering every request at once: the ceiling of a metadata walk
(find, ls -R) through FUSE in Python on this machine, for scripts/bench.
Usage: fuse_tree.py MOUNTPOINT DIRS"""

from __future__ import annotations

import errno
import os
import stat
import sys

import pyfuse3
import trio

PARENTS = 64


class Tree(pyfuse3.Operations):
    """Inodes: 1 the root, then the parents, then the directories, then their files."""

    def __init__(self, dirs: int) -> None:
        super().__init__()
        self.dirs = dirs
        self.children: dict[int, list[tuple[bytes, int]]] = {pyfuse3.ROOT_INODE: []}
        for p in range(PARENTS):
            parent = 2 + p
            self.children[pyfuse3.ROOT_INODE].append((f"p{p:02x}".encode(), parent))
            self.children[parent] = []
        first_dir = 2 + PARENTS
        for d in range(dirs):
            ino = first_dir + d
            self.children[2 + d % PARENTS].append((f"d{d:06d}".encode(), ino))
            self.children[ino] = [(b"data", first_dir + dirs + d)]

    def _attrs(self, ino: int) -> pyfuse3.EntryAttributes:
        attrs = pyfuse3.EntryAttributes()
        attrs.st_ino = ino
        is_dir = ino in self.children
        attrs.st_mode = (stat.S_IFDIR | 0o755) if is_dir else (stat.S_IFREG | 0o444)
        attrs.st_nlink = 2 if is_dir else 1
        attrs.st_size = 0 if is_dir else 100
        attrs.st_uid, attrs.st_gid = os.getuid(), os.getgid()
        attrs.entry_timeout = attrs.attr_timeout = 1.0
        return attrs

    async def getattr(self, inode, ctx=None):  # type: ignore[no-untyped-def]
        return self._attrs(inode)

    async def lookup(self, parent_inode, name, ctx=None):  # type: ignore[no-untyped-def]
        for child, ino in self.children.get(parent_inode, []):
            if child == name:
                return self._attrs(ino)
        raise pyfuse3.FUSEError(errno.ENOENT)

    async def opendir(self, inode, ctx):  # type: ignore[no-untyped-def]
        return inode

    async def readdir(self, fh, start_id, token):  # type: ignore[no-untyped-def]
        entries = self.children[fh]
        for index in range(start_id, len(entries)):
            name, ino = entries[index]
            if not pyfuse3.readdir_reply(token, name, self._attrs(ino), index + 1):
                return

    async def releasedir(self, fh):  # type: ignore[no-untyped-def]
        return None


async def main(mountpoint: str, dirs: int) -> None:
    pyfuse3.init(Tree(dirs), mountpoint, {"fsname=tree", "ro"})
    try:
        await pyfuse3.main()
    finally:
        pyfuse3.close(unmount=True)


if __name__ == "__main__":
    trio.run(main, sys.argv[1], int(sys.argv[2]))
