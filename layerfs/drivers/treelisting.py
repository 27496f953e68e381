"""One directory of a ``list_tree``, kept small.

A whole-store pass holds the listing of every directory it walks: on a store of
200,000 blobs that is some 400,000 directories named by a sha256 hex
(``blobs/sha256/<hh>/<hex>``, ``_layers/sha256/<hex>``, revisions). As a path string
and a tuple each costs about 300 bytes; here each costs its 32 raw bytes, packed in
one ``bytes`` per listing in name order. Every other entry (files, odd entries,
names of any other shape) is kept as its :class:`TreeEntry`.
"""

from __future__ import annotations

import bisect
import heapq
import struct
import sys
from array import array
from collections.abc import Iterable, Iterator, Sequence
from typing import overload

from .base import WIDTH, TreeEntry
from .beneath import DIRECTORY, FILE, HEX_NAME, ODD

_KEY = struct.Struct(">Q24x")  # a packed value's first 8 bytes, as an ordered number


def is_hex_name(name: str) -> bool:
    """Whether ``name`` is a sha256 digest's hex (what is packed)."""
    return len(name) == 64 and HEX_NAME.fullmatch(name) is not None


def packable(entry: TreeEntry, name: str) -> bool:
    """Whether ``entry`` (named ``name``) is a plain directory named by a sha256 hex:
    nothing about it but its name is worth keeping."""
    return (
        entry.is_dir and not entry.odd and entry.size < 0 and not entry.etag
        and is_hex_name(name)
    )  # fmt: skip


_FILE, _DIR, _OTHER = FILE, DIRECTORY, ODD  # what an entry is (_OTHER: see ``_others``)
_NO_HEX = b""


class TreeListing(Sequence[TreeEntry]):
    """The entries of ``directory`` in name order: a sequence of :class:`TreeEntry`,
    each made when asked for. A plain file or directory is kept as its name (names
    the layout repeats, ``sha256``, ``current``, ``link``, are one shared string) and
    a byte for its kind; only an entry with more to it (odd, a size, an ETag) is kept
    whole."""

    __slots__ = ("_hex", "_keys", "_kinds", "_names", "_others", "directory")

    def __init__(self, directory: str, hex_dirs: bytes, rest: list[TreeEntry]) -> None:
        self.directory = directory
        self._hex = hex_dirs or _NO_HEX  # sorted raw sha256 values, WIDTH bytes each
        self._keys: array[int] | None = None  # each packed value's first 8 bytes
        skip = len(self._prefix()) + 1
        rest = sorted(rest)
        self._names = tuple(sys.intern(entry.path[skip:]) for entry in rest)  # in order
        self._kinds = bytes(_kind(entry) for entry in rest)
        others = {name: e for name, e in zip(self._names, rest, strict=True) if _kind(e) == _OTHER}
        self._others = others or None

    @classmethod
    def of(cls, directory: str, entries: Iterable[TreeEntry]) -> TreeListing:
        """The listing of ``directory`` holding ``entries`` (its children)."""
        skip = 1 if directory == "/" else len(directory) + 1
        raws: list[bytes] = []
        rest: list[TreeEntry] = []
        for entry in entries:
            name = entry.path[skip:]
            if packable(entry, name):
                raws.append(bytes.fromhex(name))
            else:
                rest.append(entry)
        return cls.packed(directory, raws, rest)

    @classmethod
    def packed(cls, directory: str, raws: list[bytes], rest: list[TreeEntry]) -> TreeListing:
        """From the raw values of its hex-named directories and its other entries."""
        raws.sort()
        return cls(directory, b"".join(raws), rest)

    @classmethod
    def walked(
        cls, directory: str, raws: list[bytes], rest: list[tuple[str, int, str]]
    ) -> TreeListing:
        """From a walk's listing (``beneath.walk_tree``): sorted raw values, and the
        other entries sorted as (name, kind, what an ODD one is)."""
        listing = cls.__new__(cls)
        listing.directory = directory
        listing._hex = b"".join(raws) or _NO_HEX
        listing._keys = None
        listing._names = tuple(sys.intern(name) for name, _, _ in rest)
        listing._kinds = bytes(kind for _, kind, _ in rest)
        prefix = listing._prefix()
        others = {name: TreeEntry(f"{prefix}/{name}", False, odd)
                  for name, kind, odd in rest if kind == _OTHER}  # fmt: skip
        listing._others = others or None
        return listing

    # the packed part -------------------------------------------------------------
    def hex_names(self) -> Iterator[str]:
        """The names of the hex-named directories, in order."""
        text = self._hex.hex()
        for start in range(0, len(text), 2 * WIDTH):
            yield text[start : start + 2 * WIDTH]

    def raw_hexes(self) -> Iterator[bytes]:
        """The raw values of the hex-named directories, in order."""
        packed = self._hex
        for start in range(0, len(packed), WIDTH):
            yield packed[start : start + WIDTH]

    def rest(self) -> list[str]:
        """The paths of the entries that are not packed, in order."""
        prefix = self._prefix()
        return [f"{prefix}/{name}" for name in self._names]

    def _rest(self) -> Iterator[TreeEntry]:
        prefix = self._prefix()
        for name, kind in zip(self._names, self._kinds, strict=True):
            yield self._entry(prefix, name, kind)

    def _entry(self, prefix: str, name: str, kind: int) -> TreeEntry:
        if kind == _OTHER and self._others is not None:
            return self._others[name]
        return TreeEntry(f"{prefix}/{name}", kind == _DIR)

    def packed_bytes(self) -> bytes:
        """The raw values of the hex-named directories, WIDTH bytes each, in order."""
        return self._hex

    def has_etags(self) -> bool:
        """Whether an entry carries an ETag (an S3 listing's files do)."""
        return self._others is not None and any(e.etag for e in self._others.values())

    def hex_count(self) -> int:
        return len(self._hex) // WIDTH

    def index_of(self, raw: bytes) -> int:
        """The position of the hex-named directory with this raw value among them
        (``raw_hexes`` order), or -1 where none is listed: a binary search in C over
        the first 8 bytes of each (made on the first search, 8 bytes an entry), then
        the whole value compared."""
        if self._keys is None:
            self._keys = array("Q", (key for (key,) in _KEY.iter_unpack(self._hex)))
        keys, packed = self._keys, self._hex
        key = int.from_bytes(raw[:8], "big")
        index = bisect.bisect_left(keys, key)
        while index < len(keys) and keys[index] == key:
            if packed[index * WIDTH : index * WIDTH + WIDTH] == raw:
                return index
            index += 1
        return -1

    def holds_hex(self, raw: bytes) -> bool:
        """Whether a hex-named directory with this raw value is listed."""
        return self.index_of(raw) >= 0

    # the sequence ------------------------------------------------------------------
    def _prefix(self) -> str:
        return "" if self.directory == "/" else self.directory

    def _packed_entries(self) -> Iterator[TreeEntry]:
        prefix = self._prefix()
        for name in self.hex_names():
            yield TreeEntry(f"{prefix}/{name}", True)

    def __iter__(self) -> Iterator[TreeEntry]:
        if not self._hex:
            return self._rest()
        if not self._names:
            return self._packed_entries()
        return heapq.merge(self._packed_entries(), self._rest())

    def __len__(self) -> int:
        return len(self._hex) // WIDTH + len(self._names)

    @overload
    def __getitem__(self, index: int) -> TreeEntry: ...
    @overload
    def __getitem__(self, index: slice) -> list[TreeEntry]: ...
    def __getitem__(self, index: int | slice) -> TreeEntry | list[TreeEntry]:
        return list(self)[index]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, TreeListing | list | tuple):
            return list(self) == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"TreeListing({self.directory!r}, {list(self)!r})"

    def paths(self) -> list[str]:
        return [entry.path for entry in self]

    def find(self, name: str) -> TreeEntry | None:
        """The entry named ``name``, if listed."""
        if is_hex_name(name) and self.holds_hex(bytes.fromhex(name)):
            return TreeEntry(f"{self._prefix()}/{name}", True)
        index = bisect.bisect_left(self._names, name)
        if index < len(self._names) and self._names[index] == name:
            return self._entry(self._prefix(), name, self._kinds[index])
        return None


def _kind(entry: TreeEntry) -> int:
    if entry.odd or entry.size >= 0 or entry.etag:
        return _OTHER
    return _DIR if entry.is_dir else _FILE


def listings(tree: dict[str, Sequence[TreeEntry]]) -> dict[str, TreeListing]:
    """A driver's ``list_tree`` answer with every directory as a :class:`TreeListing`."""
    return {d: e if isinstance(e, TreeListing) else TreeListing.of(d, e) for d, e in tree.items()}


__all__ = ["TreeListing", "listings", "packable"]
