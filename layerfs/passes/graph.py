"""The manifest graph: what each manifest read references, read a level at a time.

A manifest references blobs (its config and layers, ``Manifest.blob_references``)
and, an index, child manifests. du and prune read the manifests their roots reach
(revisions, tags) and then the children of every index among them, a level at a
time, each level in one batch (``ReadAhead``); an index's children are read from
their blobs, as gc reads them, so an index whose children's revisions were deleted
still reaches them. Indexes may nest as deep as a writer likes and may name each
other in a cycle: the graph is walked with a stack, never by recursion.

Every digest is kept as a number (``Numbering``: on a whole-store pass, the blob's
place in the store's packed listing), so a graph of 20,000 manifests costs a few
MB, not a ``Digest`` per reference.
"""

from __future__ import annotations

from array import array
from collections.abc import Awaitable, Callable, Iterable

from ..drivers import PathNotFoundError, UnsafeEntryError
from ..storage import paths
from ..storage.digest import Digest
from ..storage.errors import RegistryError
from ..storage.manifests import parse_manifest
from .blobtable import Numbering
from .readahead import ReadAhead

# Told of a blob named as a manifest that is none, or cannot be read, and why.
OnUnreadable = Callable[[Digest, Exception], Awaitable[None]]


async def _nothing(digest: Digest, exc: Exception) -> None:
    return None


_NO_CHILDREN = array("l")  # shared by every manifest that is no index


class Node:
    """One manifest: the numbers of the blobs it references and of its children."""

    __slots__ = ("blobs", "children")

    def __init__(self, blobs: array[int], children: array[int]) -> None:
        self.blobs = blobs
        self.children = children


class ManifestGraph:
    """The manifests read so far, by number; ``None`` for a digest read that is no
    manifest (or could not be read)."""

    def __init__(self, numbering: Numbering | None = None) -> None:
        self.numbering = numbering or Numbering()
        self.nodes: dict[int, Node | None] = {}
        self.unreadable: dict[int, Exception] = {}  # why a node is None

    def number(self, digest: Digest) -> int:
        return self.numbering.number(digest)

    def digest(self, number: int) -> Digest:
        return self.numbering.digest(number)

    def node(self, digest: Digest) -> Node | None:
        return self.nodes.get(self.numbering.known(digest))

    def add(self, digest: Digest, payload: bytes) -> None:
        """Parse ``payload`` as ``digest``'s manifest (RegistryError if it is none)."""
        manifest = parse_manifest(payload)
        number = self.numbering.number
        children = [number(d.digest) for d in manifest.manifests]
        self.nodes[number(digest)] = Node(
            array("l", (number(d.digest) for d in manifest.blob_references())),
            array("l", children) if children else _NO_CHILDREN,
        )

    async def read(
        self,
        ahead: ReadAhead,
        roots: Iterable[Digest],
        on_unreadable: OnUnreadable = _nothing,
        wanted: Callable[[Digest], bool] = lambda digest: True,
    ) -> None:
        """Read ``roots`` and every child they reach that is not read yet, a level at
        a time. A digest ``wanted`` refuses (du: a blob not stored) is left unread."""
        level = sorted({d for d in roots if self.numbering.known(d) not in self.nodes})
        while level := [d for d in level if wanted(d)]:
            await ahead.fetch(paths.blob_data(d) for d in level)
            for digest in level:
                try:
                    self.add(digest, await ahead.get(paths.blob_data(digest)))
                except (RegistryError, PathNotFoundError, UnsafeEntryError) as exc:
                    self.nodes[self.number(digest)] = None
                    self.unreadable[self.number(digest)] = exc
                    await on_unreadable(digest, exc)
            ahead.forget()
            children = {c for d in level for c in self._children_of(self.number(d))}
            level = sorted(self.digest(c) for c in children if c not in self.nodes)

    def _children_of(self, number: int) -> array[int]:
        node = self.nodes.get(number)
        return node.children if node is not None else array("l")

    def reachable(self, roots: Iterable[Digest]) -> set[Digest]:
        """The manifests ``roots`` reach through indexes (themselves included)."""
        seen: set[int] = set()
        stack = [self.number(d) for d in roots]
        while stack:
            current = stack.pop()
            if current not in seen:
                seen.add(current)
                stack += self._children_of(current)
        return {self.digest(n) for n in seen}

    def closure(self, number: int, cache: dict[int, frozenset[int]]) -> frozenset[int]:
        """The numbers of the manifest ``number``, its blobs and, through an index,
        its children's closures. ``cache`` keeps the closures of indexes (a manifest
        with no children is its own few numbers, made again when asked); an index
        that names itself, or one that names it, ends the cycle there."""
        stack = [(number, False)]
        entered: set[int] = set()
        done: dict[int, frozenset[int]] = {}
        while stack:
            current, children_done = stack.pop()
            if current in cache or current in done:
                continue
            children = self._children_of(current)
            if not children_done:
                if current in entered:
                    continue  # a cycle: its first visit finishes it
                entered.add(current)
                stack.append((current, True))
                stack += [(c, False) for c in children if c not in cache]
                continue
            node = self.nodes.get(current)
            found = {current, *node.blobs} if node is not None else {current}
            for child in children:
                found |= cache.get(child) or done.get(child) or frozenset()
            done[current] = frozenset(found)
            if children:
                cache[current] = done[current]
        return cache.get(number) or done[number]
