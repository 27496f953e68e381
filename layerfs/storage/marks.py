"""Marks on the blobs a store lists, a byte each: gc's mark set, kept small.

A mark over a store of 200,000 blobs held as a set of ``Digest`` costs some 40 MB;
here a listed sha256 blob's mark is one byte beside its place in the snapshot's
packed listing (``walk.blob_prefixes``), found by a binary search in its prefix's
listing. A digest marked that is not listed (a manifest names a missing blob) is kept
aside as itself, and so is a listed blob the listing did not pack (another
algorithm, an odd entry).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from .digest import CANONICAL, Digest
from .walk import BlobPrefix


class BlobMarks:
    """The blobs listed (``prefixes``) and which of them, and of others, are marked."""

    def __init__(self, prefixes: Iterable[BlobPrefix] = ()) -> None:
        self._prefixes = sorted(prefixes, key=lambda p: p.name)
        self._packed = {p.name: p for p in self._prefixes if p.packed is not None}
        self._flags = {p.name: bytearray(p.packed.hex_count()) for p in self._packed.values()
                       if p.packed is not None}  # fmt: skip
        self._others: dict[Digest, bool] = {d: False for p in self._prefixes for d in p.others}
        self._unlisted: set[Digest] = set()  # marked, not listed
        self._count = 0  # listed blobs marked

    def _place(self, digest: Digest) -> tuple[bytearray, int] | None:
        """Where a listed, packed blob's mark is kept."""
        if digest.algorithm != CANONICAL:
            return None
        name = digest.hex[:2]
        prefix = self._packed.get(name)
        if prefix is None or prefix.packed is None:
            return None
        index = prefix.packed.index_of(bytes.fromhex(digest.hex))
        return (self._flags[name], index) if index >= 0 else None

    def add(self, digest: Digest) -> None:
        """Mark ``digest``."""
        place = self._place(digest)
        if place is not None:
            flags, index = place
            if not flags[index]:
                flags[index] = 1
                self._count += 1
        elif digest in self._others:
            if not self._others[digest]:
                self._others[digest] = True
                self._count += 1
        else:
            self._unlisted.add(digest)

    def update(self, digests: Iterable[Digest]) -> None:
        for digest in digests:
            self.add(digest)

    def __contains__(self, digest: object) -> bool:
        """Whether ``digest`` is marked."""
        if not isinstance(digest, Digest):
            return False
        place = self._place(digest)
        if place is not None:
            flags, index = place
            return bool(flags[index])
        return self._others.get(digest, False) or digest in self._unlisted

    def __len__(self) -> int:
        """Distinct digests marked, listed or not."""
        return self._count + len(self._unlisted)

    def listed(self, digest: Digest) -> bool:
        return self._place(digest) is not None or digest in self._others

    def unmarked(self) -> Iterator[Digest]:
        """The listed blobs not marked, in ``(algorithm, hex)`` order."""
        found = [d for d, marked in self._others.items() if not marked]
        for name, prefix in self._packed.items():
            flags = self._flags[name]
            found += [
                Digest(CANONICAL, raw.hex()) for i, raw in prefix.packed_digests() if not flags[i]
            ]
        return iter(sorted(found))
