"""The manifest graph: what manifests reference, read a level at a time.

A manifest references blobs (its config and layers, ``Manifest.blob_references``)
and, an index, child manifests. Every reader of manifests goes through this graph:
gc's mark, du, prune and fsck over a whole store, ``inspect`` over one tag, import
and export over one image. Each reads its roots and then the children of every
index among them, a level at a time, each level in one batch from wherever its
manifests live (``ReadLevel``: the store's blobs, a repository's revisions, an image
source). Indexes may name each other in a cycle, and nest as deep as a writer likes:
the graph is walked with a stack, never by recursion, and a graph built for one image
bounds the nesting (``max_depth``), as an image copy and ``inspect`` must.

Every digest is kept as a number (``Numbers``; on a whole-store pass, the blob's
place in the store's packed listing), so a graph of 20,000 manifests costs a few MB,
not a ``Digest`` per reference. A graph for one image keeps each manifest's payload
and parse as well (``keep``): what it copies, and the platforms its indexes name.
"""

from __future__ import annotations

import json
from array import array
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import Protocol

import trio

from .digest import Digest
from .errors import RegistryError
from .manifests import MAX_INDEX_DEPTH, Descriptor, Manifest, parse_manifest

# Reads one level of manifests: each digest's payload, or the error that kept it.
ReadLevel = Callable[[list[Digest]], Awaitable[list[bytes | Exception]]]
# Told of a digest named as a manifest that is none, or could not be read, and why.
OnUnreadable = Callable[[Digest, Exception], Awaitable[None]]


async def _nothing(digest: Digest, exc: Exception) -> None:
    return None


def reading_each(
    get: Callable[[Digest], Awaitable[bytes]], kept: tuple[type[Exception], ...] = (RegistryError,)
) -> ReadLevel:
    """A ``ReadLevel`` that calls ``get`` for every digest of a level at once; an
    error of the ``kept`` kinds is that digest's answer, any other ends the read."""

    async def read(level: list[Digest]) -> list[bytes | Exception]:
        found: list[bytes | Exception] = [b""] * len(level)

        async def one(i: int, digest: Digest) -> None:
            try:
                found[i] = await get(digest)
            except kept as exc:
                found[i] = exc

        async with trio.open_nursery() as nursery:
            for i, digest in enumerate(level):
                nursery.start_soon(one, i, digest)
        return found

    return read


class IndexDepthError(RegistryError):
    """Indexes nested deeper than a graph for one image allows, or in a cycle."""

    def __init__(self, digest: Digest, max_depth: int) -> None:
        super().__init__(f"manifest {digest}: indexes nested more than {max_depth} deep")
        self.digest = digest


class Numbers(Protocol):
    """A number for every digest (``passes.blobtable.Numbering`` over a store)."""

    def known(self, digest: Digest) -> int: ...  # -1: none yet
    def number(self, digest: Digest) -> int: ...
    def digest(self, number: int) -> Digest: ...


class DigestNumbers:
    """Numbers given in the order digests are first asked for."""

    def __init__(self) -> None:
        self._numbers: dict[Digest, int] = {}
        self._digests: list[Digest] = []

    def known(self, digest: Digest) -> int:
        return self._numbers.get(digest, -1)

    def number(self, digest: Digest) -> int:
        found = self._numbers.get(digest)
        if found is None:
            found = self._numbers[digest] = len(self._digests)
            self._digests.append(digest)
        return found

    def digest(self, number: int) -> Digest:
        return self._digests[number]


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

    def __init__(
        self, numbering: Numbers | None = None, *, keep: bool = False, max_depth: int | None = None
    ) -> None:
        self.numbering: Numbers = numbering or DigestNumbers()
        self.nodes: dict[int, Node | None] = {}
        self.unreadable: dict[int, Exception] = {}  # why a node is None
        self.keep, self.max_depth = keep, max_depth
        self.kept: dict[int, tuple[bytes, Manifest]] = {}  # payload and parse, if ``keep``

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
        if self.keep:
            self.kept[number(digest)] = (payload, manifest)

    async def read(
        self,
        read_level: ReadLevel,
        roots: Iterable[Digest],
        on_unreadable: OnUnreadable = _nothing,
        wanted: Callable[[Digest], bool] = lambda digest: True,
    ) -> None:
        """Read ``roots`` and every child they reach that is not read yet, a level at
        a time. A digest ``wanted`` refuses (du: a blob not stored) is left unread.
        With ``max_depth``, a level deeper than that raises ``IndexDepthError``."""
        level = sorted({d for d in roots if self.numbering.known(d) not in self.nodes})
        depth = 0
        while level := [d for d in level if wanted(d)]:
            if self.max_depth is not None and depth > self.max_depth:
                raise IndexDepthError(level[0], self.max_depth)
            for digest, found in zip(level, await read_level(level), strict=True):
                if not isinstance(found, Exception):
                    try:
                        self.add(digest, found)
                        continue
                    except RegistryError as exc:
                        found = exc
                self.nodes[self.number(digest)] = None
                self.unreadable[self.number(digest)] = found
                await on_unreadable(digest, found)
            children = {c for d in level for c in self._children_of(self.number(d))}
            level = sorted(self.digest(c) for c in children if c not in self.nodes)
            depth += 1

    def _children_of(self, number: int) -> array[int]:
        node = self.nodes.get(number)
        return node.children if node is not None else _NO_CHILDREN

    def walk(self, roots: Iterable[int], seen: set[int] | None = None) -> Iterator[int]:
        """Every manifest ``roots`` reach through indexes (themselves included), each
        once, skipping (and adding to) ``seen``."""
        seen = set() if seen is None else seen
        stack = list(roots)
        while stack:
            current = stack.pop()
            if current not in seen:
                seen.add(current)
                yield current
                stack += self._children_of(current)

    def reachable(self, roots: Iterable[Digest]) -> set[Digest]:
        """The manifests ``roots`` reach through indexes (themselves included)."""
        return {self.digest(n) for n in self.walk(self.number(d) for d in roots)}

    def children_first(self, root: Digest) -> list[int]:
        """The manifests ``root`` reaches, each once, every child before the indexes
        that name it: the order an image is stored in. Along every path the nesting
        is held to ``max_depth``; a cycle exceeds any bound."""
        bound = self.max_depth if self.max_depth is not None else len(self.nodes)
        order: list[int] = []
        height: dict[int, int] = {}  # a finished manifest's deepest chain of indexes below
        on_path: set[int] = set()
        stack = [(self.number(root), False)]
        while stack:
            current, children_done = stack.pop()
            if children_done:
                on_path.discard(current)
                below = [height[c] + 1 for c in self._children_of(current)]
                height[current] = max(below, default=0)
                if height[current] > bound:
                    raise IndexDepthError(self.digest(current), bound)
                order.append(current)
            elif current in on_path:
                raise IndexDepthError(self.digest(current), bound)
            elif current not in height:
                on_path.add(current)
                stack.append((current, True))
                stack += [(c, False) for c in self._children_of(current)]
        return order

    def blob_references(self) -> dict[Digest, Descriptor]:
        """Every blob the kept manifests reference, each once (its first descriptor)."""
        found: dict[Digest, Descriptor] = {}
        for _, manifest in self.kept.values():
            for ref in manifest.blob_references():
                found.setdefault(ref.digest, ref)
        return found

    def entries(self, number: int) -> list[tuple[int, dict]]:
        """An index's children as its kept payload names them, each with the
        ``platform`` its entry gives (``{}`` where none)."""
        payload, manifest = self.kept[number]
        if not manifest.manifests:
            return []
        raw = json.loads(payload)["manifests"]
        return [
            (self.number(d.digest), entry.get("platform") or {})
            for entry, d in zip(raw, manifest.manifests, strict=True)
        ]

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


async def _raise(digest: Digest, exc: Exception) -> None:
    raise exc


async def read_image(
    top: Digest,
    get: Callable[[Digest], Awaitable[bytes]],
    on_unreadable: OnUnreadable = _raise,
    kept: tuple[type[Exception], ...] = (RegistryError,),
) -> tuple[ManifestGraph, list[int]]:
    """The graph of one image (import, export, ``inspect``): ``top`` and the manifests
    its indexes name, each read by ``get`` (a level's at once; an error of the
    ``kept`` kinds goes to ``on_unreadable``, which by default raises it), payloads
    kept, nested at most ``MAX_INDEX_DEPTH`` deep along every path; and the order
    they are stored in, every child before the indexes that name it."""
    graph = ManifestGraph(keep=True, max_depth=MAX_INDEX_DEPTH)
    await graph.read(reading_each(get, kept), [top], on_unreadable)
    return graph, graph.children_first(top)
