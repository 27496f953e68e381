"""The manifest graph (storage/graph.py), against a plain model on drawn graphs: what
it reads (each manifest once, a level a batch), the order an image is stored in
(every child before its index), and the nesting bound an image copy and ``inspect``
hold to (the longest chain of indexes, along every path; a cycle exceeds any)."""

from __future__ import annotations

import json
from functools import cache

import pytest
import trio
from hypothesis import example, given, settings
from hypothesis import strategies as st

from layerfs.storage.digest import Digest
from layerfs.storage.errors import BlobUnknownError
from layerfs.storage.graph import IndexDepthError, ManifestGraph, reading_each
from layerfs.storage.manifests import OCI_INDEX, OCI_MANIFEST

CONFIG = "application/vnd.oci.image.config.v1+json"


def name(i: int) -> Digest:
    return Digest.parse(f"sha256:{i:064x}")


def entry(media_type: str, digest: Digest, **more: object) -> dict:
    return {"mediaType": media_type, "digest": str(digest), "size": 1, **more}


def payload(i: int, children: list[int]) -> bytes:
    """Node ``i``: an index of ``children`` (each with a platform naming it), or, with
    none, an image manifest whose config is blob ``1000 + i``."""
    if children:
        entries = [entry(OCI_MANIFEST, name(c), platform={"os": f"os{c}"}) for c in children]
        return json.dumps(
            {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}
        ).encode()
    doc = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
           "config": entry(CONFIG, name(1000 + i)), "layers": []}  # fmt: skip
    return json.dumps(doc).encode()


# node -> its children: a child may be any node, itself included (a cycle) ...
any_graphs = st.integers(1, 7).flatmap(
    lambda n: st.lists(
        st.lists(st.integers(0, n - 1), max_size=3, unique=True), min_size=n, max_size=n
    )
)
# ... or, as every image is, only a node after it: no cycle, and shortcuts often (a
# chain of indexes longer than the shortest way to its end)
acyclic_graphs = st.integers(1, 7).flatmap(
    lambda n: st.tuples(
        *(st.lists(st.integers(i + 1, n - 1), max_size=3, unique=True) if i < n - 1 else st.just([])
          for i in range(n))
    ).map(list)
)  # fmt: skip
graphs = acyclic_graphs | any_graphs


def reached(children: list[list[int]], root: int = 0) -> set[int]:
    seen, stack = set(), [root]
    while stack:
        if (current := stack.pop()) not in seen:
            seen.add(current)
            stack += children[current]
    return seen


def has_cycle(children: list[list[int]], root: int = 0) -> bool:
    def back(node: int, path: frozenset[int]) -> bool:
        return any(c in path or back(c, path | {c}) for c in children[node])

    return back(root, frozenset({root}))


def longest(children: list[list[int]], root: int = 0) -> int:
    """Index levels along the longest path below ``root`` (acyclic graphs only)."""

    @cache
    def height(node: int) -> int:
        return max((height(c) + 1 for c in children[node]), default=0)

    return height(root)


async def read(children: list[list[int]], max_depth: int | None) -> tuple[ManifestGraph, list]:
    levels: list[list[Digest]] = []

    async def get(digest: Digest) -> bytes:
        return payload(int(digest.hex, 16), children[int(digest.hex, 16)])

    async def read_level(level: list[Digest]) -> list[bytes | Exception]:
        levels.append(level)
        return await reading_each(get)(level)

    graph = ManifestGraph(keep=True, max_depth=max_depth)
    await graph.read(read_level, [name(0)])
    return graph, levels


@settings(max_examples=300, deadline=None)
@given(graphs)
def test_each_manifest_is_read_once_and_a_level_is_one_batch(children: list[list[int]]) -> None:
    graph, levels = trio.run(read, children, None)
    read_names = [d for level in levels for d in level]
    assert sorted(read_names) == sorted(name(i) for i in reached(children))
    depth = {0: 0}  # the shortest distance from the root: the level a node is read in
    for level_number, level in enumerate(levels):
        for digest in level:
            node = int(digest.hex, 16)
            assert depth[node] == level_number
            for child in children[node]:
                depth.setdefault(child, level_number + 1)


@settings(max_examples=300, deadline=None)
@given(graphs, st.none() | st.integers(0, 4))
@example([[1, 2], [2], [3], []], 2)  # a chain of 3 with a shortcut of 2: read, not stored
def test_children_first_is_every_child_before_its_index_within_the_bound(
    children: list[list[int]], max_depth: int | None
) -> None:
    too_deep = has_cycle(children) or (max_depth is not None and longest(children) > max_depth)

    async def check() -> None:
        try:
            graph, _ = await read(children, max_depth)
            order = graph.children_first(name(0))
        except IndexDepthError:
            assert too_deep
            return
        assert not too_deep
        nodes = [int(graph.digest(n).hex, 16) for n in order]
        assert sorted(nodes) == sorted(reached(children))
        for position, node in enumerate(nodes):
            assert all(nodes.index(c) < position for c in children[node])

    trio.run(check)


def test_entries_are_an_index_s_children_with_their_platforms() -> None:
    children = [[2, 1], [], []]
    graph, _ = trio.run(read, children, None)
    found = [(graph.digest(n), p) for n, p in graph.entries(graph.number(name(0)))]
    assert found == [(name(2), {"os": "os2"}), (name(1), {"os": "os1"})]
    assert graph.entries(graph.number(name(1))) == []
    assert list(graph.node(name(1)).blobs) == [graph.number(name(1001))]


def test_an_unreadable_child_is_told_and_kept_as_none() -> None:
    told: list[tuple[Digest, Exception]] = []

    async def get(digest: Digest) -> bytes:
        if digest == name(1):
            raise BlobUnknownError(digest)
        return payload(0, [1, 2]) if digest == name(0) else b"not json"

    async def on_unreadable(digest: Digest, exc: Exception) -> None:
        told.append((digest, exc))

    async def check() -> ManifestGraph:
        graph = ManifestGraph()
        await graph.read(reading_each(get), [name(0)], on_unreadable)
        return graph

    graph = trio.run(check)
    assert [d for d, _ in told] == [name(1), name(2)]
    assert isinstance(told[0][1], BlobUnknownError)
    assert graph.node(name(1)) is None and graph.node(name(2)) is None


def test_an_error_of_a_kind_not_kept_ends_the_read() -> None:
    async def get(digest: Digest) -> bytes:
        raise OSError("gateway away")

    with pytest.raises(BaseException) as raised:
        trio.run(ManifestGraph().read, reading_each(get), [name(0)])
    error = raised.value
    while isinstance(error, BaseExceptionGroup):  # a nursery's group, when strict
        error = error.exceptions[0]
    assert isinstance(error, OSError)
