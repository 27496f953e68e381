"""A pyfuse3 mount of a copy, held in memory, of the names, kinds and sizes of a
directory tree (a store's ``docker/registry/v2``) and the bytes of its small files
(links), answering every request at once: the ceiling of a metadata walk (find,
ls -R) and of reading links through FUSE in Python on this machine, for
scripts/bench.

Its options add, one by one, the two rules the mount keeps for a link, and nothing
else of the mount: ``--flush``, a close sends a flush (where the mount returns a
link's or an upload's refusal; pyfuse3 cannot mark an open as needing none), and
``--direct-io``, every open is ``direct_io`` (a shell's ``echo … > link`` opens with
O_TRUNC, after which the kernel takes the file as empty, so a reader served from the
page cache meanwhile reads nothing). What ``cat`` of links costs with both is the
least the mount can cost.
Usage: fuse_tree.py MOUNTPOINT SOURCE [--flush] [--direct-io]"""

from __future__ import annotations

import errno
import os
import stat
import sys

import pyfuse3
import trio

SMALL = 4096


class Tree(pyfuse3.Operations):
    """Inode 1 is SOURCE itself; every entry below it gets the next number as it is
    read (``os.walk``, symlinks not followed)."""

    def __init__(self, source: str) -> None:
        super().__init__()
        self.children: dict[int, list[tuple[bytes, int]]] = {}
        self.by_name: dict[tuple[int, bytes], int] = {}
        self.sizes: dict[int, int] = {}
        self.contents: dict[int, bytes] = {}  # files of up to SMALL bytes
        inodes = {source: pyfuse3.ROOT_INODE}
        for directory, dirs, files in os.walk(source):
            parent = inodes[directory]
            self.children[parent] = []
            for name in sorted(dirs + files):
                path = os.path.join(directory, name)
                ino = inodes[path] = len(inodes) + 1
                self.children[parent].append((name.encode(), ino))
                self.by_name[parent, name.encode()] = ino
                if name in files:
                    self.sizes[ino] = os.lstat(path).st_size
                    if self.sizes[ino] <= SMALL:
                        with open(path, "rb") as f:
                            self.contents[ino] = f.read()

    def _attrs(self, ino: int) -> pyfuse3.EntryAttributes:
        attrs = pyfuse3.EntryAttributes()
        attrs.st_ino = ino
        is_dir = ino in self.children
        attrs.st_mode = (stat.S_IFDIR | 0o755) if is_dir else (stat.S_IFREG | 0o444)
        attrs.st_nlink = 2 if is_dir else 1
        attrs.st_size = 0 if is_dir else self.sizes[ino]
        attrs.st_uid, attrs.st_gid = os.getuid(), os.getgid()
        attrs.entry_timeout = attrs.attr_timeout = 1.0
        return attrs

    async def getattr(self, inode, ctx=None):  # type: ignore[no-untyped-def]
        return self._attrs(inode)

    async def lookup(self, parent_inode, name, ctx=None):  # type: ignore[no-untyped-def]
        ino = self.by_name.get((parent_inode, name))
        if ino is None:
            raise pyfuse3.FUSEError(errno.ENOENT)
        return self._attrs(ino)

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

    async def open(self, inode, flags, ctx):  # type: ignore[no-untyped-def]
        return pyfuse3.FileInfo(fh=inode)

    async def read(self, fh, off, size):  # type: ignore[no-untyped-def]
        return self.contents.get(fh, b"")[off : off + size]

    async def release(self, fh):  # type: ignore[no-untyped-def]
        return None


class TreeFlushed(Tree):
    """The same tree, each close sending a flush."""

    async def flush(self, fh):  # type: ignore[no-untyped-def]
        return None


class TreeFlushedDirect(TreeFlushed):
    """The same tree, closes flushed and every read sent to the daemon."""

    async def open(self, inode, flags, ctx):  # type: ignore[no-untyped-def]
        return pyfuse3.FileInfo(fh=inode, direct_io=True)


TREES = {
    frozenset(): Tree,
    frozenset({"--flush"}): TreeFlushed,
    frozenset({"--flush", "--direct-io"}): TreeFlushedDirect,
}


async def main(mountpoint: str, source: str, *options: str) -> None:
    tree = TREES.get(frozenset(options))
    if tree is None:
        sys.exit(f"options: none, --flush, or --flush --direct-io (not {' '.join(options)})")
    pyfuse3.init(tree(source), mountpoint, {"fsname=tree", "ro"})
    try:
        await pyfuse3.main()
    finally:
        pyfuse3.close(unmount=True)


if __name__ == "__main__":
    trio.run(main, *sys.argv[1:])
