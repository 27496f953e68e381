"""Inode numbers for view paths, kept until the kernel forgets them."""

from __future__ import annotations

import errno

import pyfuse3

from .errors import Refusal
from .view import Parts


class InodeTable:
    """Path ↔ inode. An inode is freed only in ``forget()`` (when its lookup count
    drops to zero), never when its path is deleted: the kernel may still ask."""

    def __init__(self) -> None:
        self._by_path: dict[Parts, int] = {(): pyfuse3.ROOT_INODE}
        self._by_ino: dict[int, Parts] = {pyfuse3.ROOT_INODE: ()}
        self._lookups: dict[int, int] = {}
        self._next = pyfuse3.ROOT_INODE + 1

    def path(self, ino: int) -> Parts:
        try:
            return self._by_ino[ino]
        except KeyError:
            raise Refusal(errno.ESTALE, f"inode {ino} is not known") from None

    def ino(self, parts: Parts) -> int:
        ino = self._by_path.get(parts)
        if ino is None:
            ino, self._next = self._next, self._next + 1
            self._by_path[parts] = ino
            self._by_ino[ino] = parts
        return ino

    def known(self, parts: Parts) -> int | None:
        """The inode of ``parts`` if one was handed out, else None."""
        return self._by_path.get(parts)

    def remember(self, ino: int) -> None:
        """The kernel now holds one more reference (a lookup or readdirplus entry)."""
        if ino != pyfuse3.ROOT_INODE:
            self._lookups[ino] = self._lookups.get(ino, 0) + 1

    def forget(self, ino: int, count: int) -> None:
        left = self._lookups.get(ino, 0) - count
        if left > 0:
            self._lookups[ino] = left
            return
        self._lookups.pop(ino, None)
        parts = self._by_ino.pop(ino, None)
        if parts is not None and self._by_path.get(parts) == ino:
            del self._by_path[parts]

    def move(self, old: Parts, new: Parts) -> None:
        """A rename: ``old`` and everything below it now live at ``new``."""
        moved = [p for p in self._by_path if p[: len(old)] == old]
        for parts in moved:
            ino = self._by_path.pop(parts)
            target = new + parts[len(old) :]
            stale = self._by_path.pop(target, None)
            if stale is not None:
                self._by_ino[stale] = (*target[:-1], f"\0replaced-{stale}")
            self._by_path[target] = ino
            self._by_ino[ino] = target

    def __len__(self) -> int:
        return len(self._by_ino)
