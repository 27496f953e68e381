"""The blobs a store lists, numbered, and a byte of state for each: what a
whole-store pass knows of every blob, kept small.

Held as a set of ``Digest``, 200,000 blobs cost some 40 MB a set; here a listed
sha256 blob is its 32 raw bytes in the snapshot's packed listing
(``walk.blob_prefixes``), found by a binary search in its prefix's listing, and
numbered by its place there. gc's marks, fsck's verdicts and du's sizes are arrays
indexed by that number. A digest that is not listed (a manifest names a missing
blob, a repair stored one since) is kept aside as itself.
"""

from __future__ import annotations

import bisect
import re
from array import array
from collections.abc import Iterable, Iterator

from ..drivers.base import chunked
from ..drivers.treelisting import WIDTH, TreeListing
from ..storage.digest import CANONICAL, Digest
from ..storage.walk import BlobPrefix

_PREFIX = re.compile(r"[0-9a-f]{2}")  # a blob prefix directory's name


class BlobTable:
    """Every blob ``prefixes`` list, each with a number (``index``) below ``len``."""

    def __init__(self, prefixes: Iterable[BlobPrefix] = ()) -> None:
        ordered = sorted(prefixes, key=lambda p: p.name)
        self._runs: list[tuple[BlobPrefix, TreeListing, int]] = []  # packed, first number
        count = 0
        for prefix in ordered:
            if prefix.packed is not None:
                self._runs.append((prefix, prefix.packed, count))
                count += prefix.packed.hex_count()
        self._others: dict[Digest, int] = {}
        for prefix in ordered:
            for digest in prefix.others:
                self._others[digest] = count
                count += 1
        self.size = count  # numbers in use (a packed blob under the wrong prefix has one)
        self._firsts = [first for _, _, first in self._runs]
        # the packed listing of each first byte's prefix ("00" to "ff") and its first number
        self._by_byte: list[tuple[TreeListing, int] | None] = [None] * 256
        for prefix, packed, first in self._runs:
            if _PREFIX.fullmatch(prefix.name):
                self._by_byte[int(prefix.name, 16)] = (packed, first)
        self._other_at = {number: digest for digest, number in self._others.items()}

    def digest_at(self, number: int) -> Digest:
        """The listed blob numbered ``number`` (below ``size``)."""
        if number in self._other_at:
            return self._other_at[number]
        _, packed, first = self._runs[bisect.bisect_right(self._firsts, number) - 1]
        start = (number - first) * WIDTH
        return Digest(CANONICAL, packed.packed_bytes()[start : start + WIDTH].hex())

    def index(self, digest: Digest) -> int:
        """The blob's number, or -1 where it is not listed."""
        if digest.algorithm == CANONICAL:
            found = self.index_packed(bytes.fromhex(digest.hex))
            if found >= 0:
                return found
        return self._others.get(digest, -1)

    def index_packed(self, raw: bytes) -> int:
        """The number of the packed sha256 blob whose value is ``raw``, or -1 (a blob
        listed but not packed is found by ``index``)."""
        found = self._by_byte[raw[0]]
        if found is not None:
            place = found[0].index_of(raw)
            if place >= 0:
                return found[1] + place
        return -1

    def packed_runs(self) -> Iterator[tuple[str, bytes, int]]:
        """Each prefix directory's packed blobs under their right prefix: its path,
        their raw values (contiguous, being sorted) and the first one's number."""
        for _, packed, values, first in self._right_runs():
            if values:
                yield packed.directory, values, first

    def _right_runs(self) -> Iterator[tuple[BlobPrefix, TreeListing, bytes, int]]:
        """Each of ``_runs`` cut to its blobs under their right prefix (one under
        another prefix is no blob there), maybe none."""
        for prefix, packed, first in self._runs:
            values = packed.packed_bytes()
            count = len(values) // WIDTH
            right = int(prefix.name, 16) if _PREFIX.fullmatch(prefix.name) else -1
            start = bisect.bisect_left(range(count), right, key=lambda i: values[i * WIDTH])
            end = bisect.bisect_right(range(count), right, key=lambda i: values[i * WIDTH])
            yield prefix, packed, values[start * WIDTH : end * WIDTH], first + start

    def other_items(self) -> list[tuple[int, Digest]]:
        """The listed blobs that are not packed, with their numbers, in digest order."""
        return sorted(((i, d) for d, i in self._others.items()), key=lambda item: item[1])

    def chunks(self, size: int) -> Iterator[list[tuple[int, Digest]]]:
        """``iter(self)`` in lists of at most ``size``, made one at a time (a pass that
        stats or reads each blob holds a chunk of paths, not all)."""
        return chunked(self, size)

    def __iter__(self) -> Iterator[tuple[int, Digest]]:
        """Every listed blob with its number, in ``(algorithm, hex)`` order, made a
        prefix at a time."""
        others = self.other_items()
        yield from ((i, d) for i, d in others if d.algorithm < CANONICAL)
        sha256 = [(i, d) for i, d in others if d.algorithm == CANONICAL]
        for prefix, _, values, first in self._right_runs():
            here = [(first + k // WIDTH, Digest(CANONICAL, values[k : k + WIDTH].hex()))
                    for k in range(0, len(values), WIDTH)]  # fmt: skip
            also = [(i, d) for i, d in sha256 if d.hex[:2] == prefix.name]
            yield from sorted(here + also, key=lambda item: item[1]) if also else here
        packed_names = {prefix.name for prefix, _, _ in self._runs}
        yield from ((i, d) for i, d in sha256 if d.hex[:2] not in packed_names)
        yield from ((i, d) for i, d in others if d.algorithm > CANONICAL)


class Numbering:
    """A number for every digest: a listed blob's from ``table`` (below its size), any
    other's after those, given when first asked for."""

    def __init__(self, table: BlobTable | None = None) -> None:
        self.table = table or BlobTable()
        self._more: dict[Digest, int] = {}
        self._more_digests: list[Digest] = []

    def known(self, digest: Digest) -> int:
        """``digest``'s number, or -1 where it has none yet."""
        index = self.table.index(digest)
        return index if index >= 0 else self._more.get(digest, -1)

    def number_raw(self, raw: bytes) -> int:
        """``number`` of the sha256 digest whose value is ``raw``."""
        found = self.table.index_packed(raw)
        return found if found >= 0 else self.number(Digest(CANONICAL, raw.hex()))

    def number(self, digest: Digest) -> int:
        found = self.known(digest)
        if found < 0:
            found = self._more[digest] = self.table.size + len(self._more_digests)
            self._more_digests.append(digest)
        return found

    def digest(self, number: int) -> Digest:
        if number >= self.table.size:
            return self._more_digests[number - self.table.size]
        return self.table.digest_at(number)


class BlobStates:
    """A small number (0 to 255) for every digest, by its number (``Numbering``): a
    byte for each listed blob, a dict entry for any other. 0 is where all start."""

    def __init__(self, numbering: Numbering | None = None) -> None:
        self.numbering = numbering or Numbering()
        self._listed = bytearray(self.numbering.table.size)
        self._unlisted: dict[int, int] = {}

    def get(self, digest: Digest) -> int:
        return self.get_number(self.numbering.known(digest))

    def set(self, digest: Digest, state: int) -> int:
        """Set ``digest``'s state; returns the one it had."""
        return self.set_number(self.numbering.number(digest), state)

    def get_number(self, number: int) -> int:
        if 0 <= number < len(self._listed):
            return self._listed[number]
        return self._unlisted.get(number, 0)

    def set_number(self, number: int, state: int) -> int:
        old = self.get_number(number)
        if number < len(self._listed):
            self._listed[number] = state
        else:
            self._unlisted[number] = state
        return old


class BlobMarks:
    """gc's mark set: a state of 1 in ``BlobStates``, with a count."""

    def __init__(self, numbering: Numbering | None = None) -> None:
        self.numbering = numbering or Numbering()
        self._states = BlobStates(self.numbering)
        self._count = 0

    def add_number(self, number: int) -> None:
        if not self._states.set_number(number, 1):
            self._count += 1

    def add(self, digest: Digest) -> None:
        self.add_number(self.numbering.number(digest))

    def __contains__(self, digest: object) -> bool:
        return isinstance(digest, Digest) and self._states.get(digest) == 1

    def __len__(self) -> int:
        """Distinct digests marked, listed or not."""
        return self._count

    def listed(self, digest: Digest) -> bool:
        return self.numbering.table.index(digest) >= 0

    def unmarked(self) -> Iterator[Digest]:
        """The listed blobs not marked, in ``(algorithm, hex)`` order."""
        return (d for i, d in self.numbering.table if not self._states.get_number(i))


def sizes_array(count: int) -> array[int]:
    """A size for each of ``count`` blobs, -1 (unknown) to start with."""
    return array("q", [-1]) * count
