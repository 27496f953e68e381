"""What every storage driver must do, whatever keeps the bytes (distribution's
driver test suite, in trio)."""

from __future__ import annotations

import hashlib
import tracemalloc

import pytest
import trio

from layerfs.drivers import (
    FilesystemDriver,
    InvalidOffsetError,
    InvalidPathError,
    MemoryDriver,
    PathNotFoundError,
    StorageDriver,
    StorageDriverError,
    WriterClosedError,
)
from layerfs.drivers.base import FilesBelow, Refusing

MiB = 1 << 20


def chunk_of(index: int, size: int = MiB) -> bytes:
    """Deterministic, distinct chunks without keeping a whole large file in memory."""
    seed = hashlib.sha256(index.to_bytes(8, "big")).digest()
    return (seed * (size // len(seed) + 1))[:size]


@pytest.mark.parametrize("size", [0, 1, 4095, 4096, 1_000_003])
async def test_put_get_round_trip(driver: StorageDriver, size: int) -> None:
    content = chunk_of(size, size)
    await driver.put_content("/a/b/file", content)
    assert await driver.get_content("/a/b/file") == content
    assert (await driver.stat("/a/b/file")).size == size
    assert not (await driver.stat("/a/b/file")).is_dir
    assert (await driver.stat("/a/b")).is_dir


async def test_put_content_replaces(driver: StorageDriver) -> None:
    await driver.put_content("/f", b"first version, longer")
    await driver.put_content("/f", b"second")
    assert await driver.get_content("/f") == b"second"


async def test_large_round_trip_with_bounded_memory(driver: StorageDriver) -> None:
    """256 MiB through writer and reader; a driver that does not keep data in memory
    must not hold more than a few chunks of it at a time."""
    chunks = 256
    expected = hashlib.sha256()
    tracemalloc.start()
    try:
        writer = await driver.writer("/big/data")
        for i in range(chunks):
            data = chunk_of(i)
            expected.update(data)
            await writer.write(data)
        await writer.commit()
        await writer.close()
        actual = hashlib.sha256()
        async for piece in driver.read_all("/big/data", 0, 4 * MiB):
            actual.update(piece)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert actual.hexdigest() == expected.hexdigest()
    assert (await driver.stat("/big/data")).size == chunks * MiB
    if not isinstance(driver, MemoryDriver):
        # a few buffers or parts in flight, far below the 256 MiB that went through
        assert peak < 96 * MiB, f"peak traced memory {peak / MiB:.1f} MiB"


async def test_reads_at_offsets(driver: StorageDriver) -> None:
    content = bytes(range(256)) * 40
    await driver.put_content("/r", content)
    for offset in (0, 1, 255, 5000, len(content) - 1):
        reader = await driver.reader("/r", offset)
        async with reader:
            got = b""
            while piece := await reader.read(777):
                got += piece
        assert got == content[offset:]
    for offset in (len(content), len(content) + 10):
        reader = await driver.reader("/r", offset)
        async with reader:
            assert await reader.read(100) == b""
    with pytest.raises(InvalidOffsetError):
        await driver.reader("/r", -1)
    with pytest.raises(PathNotFoundError):
        await driver.reader("/missing", 0)


async def test_writer_append_resume(driver: StorageDriver) -> None:
    writer = await driver.writer("/w/data")
    await writer.write(b"hello ")
    assert writer.size == 6
    await writer.close()
    # closed, not committed: the size is known (on S3 the data is a pending upload)
    assert (await driver.stat("/w/data")).size == 6
    writer = await driver.writer("/w/data", append=True)
    assert writer.size == 6
    await writer.write(b"world")
    assert writer.size == 11
    await writer.commit()
    await writer.close()
    assert await driver.get_content("/w/data") == b"hello world"
    with pytest.raises(WriterClosedError):
        await writer.write(b"more")


async def test_writer_without_append_truncates(driver: StorageDriver) -> None:
    await driver.put_content("/w/data", b"old content")
    writer = await driver.writer("/w/data", append=False)
    assert writer.size == 0
    await writer.write(b"new")
    await writer.commit()
    await writer.close()
    assert await driver.get_content("/w/data") == b"new"


async def test_writer_append_to_missing_file(driver: StorageDriver) -> None:
    with pytest.raises(PathNotFoundError):
        await driver.writer("/nothing/here", append=True)


async def test_writer_cancel_removes(driver: StorageDriver) -> None:
    writer = await driver.writer("/c/data")
    await writer.write(b"x" * 100)
    await writer.cancel()
    with pytest.raises(PathNotFoundError):
        await driver.stat("/c/data")
    with pytest.raises(WriterClosedError):
        await writer.write(b"y")


async def test_many_small_writes_then_commit(driver: StorageDriver) -> None:
    writer = await driver.writer("/s/data")
    expected = bytearray()
    for i in range(3000):
        piece = chunk_of(i, i % 97)
        expected += piece
        await writer.write(piece)
    assert writer.size == len(expected)
    await writer.commit()
    await writer.close()
    assert await driver.get_content("/s/data") == bytes(expected)


async def test_write_pieces_appends_them_in_order(driver: StorageDriver) -> None:
    """Batches as the write-behind hands them down: more pieces than one writev takes,
    pieces of every size (empty ones too) that straddle S3 part boundaries, a batch
    below the gathering threshold, a large one after what was gathered, then plain
    writes after them."""
    writer = await driver.writer("/p/data")
    many = [chunk_of(i, 1 + i % 2000) for i in range(3000)]
    straddling = [chunk_of(9000 + i, size) for i, size in enumerate([3 * MiB + 5, 0, 4 * MiB, 7])]
    small = [b"a", b"", b"bc"]
    after_small = [chunk_of(9100, 2 * MiB), b"d"]
    expected = bytearray()
    for batch in (many, straddling, small, after_small):
        assert await writer.write_pieces(batch) == sum(map(len, batch))
        expected += b"".join(batch)
    await writer.write(b"tail")
    expected += b"tail"
    assert writer.size == len(expected)
    await writer.commit()
    await writer.close()
    assert await driver.get_content("/p/data") == bytes(expected)


async def test_move_overwrites_target(driver: StorageDriver) -> None:
    await driver.put_content("/src/f", b"source")
    await driver.put_content("/dst/f", b"old target content")
    await driver.move("/src/f", "/dst/f")
    assert await driver.get_content("/dst/f") == b"source"
    with pytest.raises(PathNotFoundError):
        await driver.stat("/src/f")
    with pytest.raises(PathNotFoundError):
        await driver.move("/src/f", "/elsewhere")


async def test_move_creates_parents(driver: StorageDriver) -> None:
    await driver.put_content("/m/f", b"x")
    await driver.move("/m/f", "/deep/er/f")
    assert await driver.get_content("/deep/er/f") == b"x"


async def test_delete_prefix_leaves_sibling(driver: StorageDriver) -> None:
    await driver.put_content("/a/1", b"1")
    await driver.put_content("/a/sub/2", b"2")
    await driver.put_content("/ab/3", b"3")
    await driver.delete("/a")
    with pytest.raises(PathNotFoundError):
        await driver.stat("/a")
    with pytest.raises(PathNotFoundError):
        await driver.get_content("/a/sub/2")
    assert await driver.get_content("/ab/3") == b"3"
    with pytest.raises(PathNotFoundError):
        await driver.delete("/a")


async def test_delete_file(driver: StorageDriver) -> None:
    await driver.put_content("/d/f", b"1")
    await driver.put_content("/d/g", b"2")
    await driver.delete("/d/f")
    assert await driver.list("/d") == ["/d/g"]


async def test_list(driver: StorageDriver) -> None:
    for path in ("/l/b", "/l/a/x", "/l/c/y/z", "/other"):
        await driver.put_content(path, b".")
    assert await driver.list("/l") == ["/l/a", "/l/b", "/l/c"]
    assert await driver.list("/") == ["/l", "/other"]
    with pytest.raises(PathNotFoundError):
        await driver.list("/missing")
    with pytest.raises(PathNotFoundError):
        await driver.list("/l/missing/deeper")


async def test_walk_order(driver: StorageDriver) -> None:
    for path in ("/w/b/2", "/w/a/1", "/w/a/0/z", "/w/c", "/w/a.x"):
        await driver.put_content(path, b".")
    walked = [(info.path, info.is_dir) async for info in driver.walk("/w")]
    assert walked == [
        ("/w/a", True),
        ("/w/a/0", True),
        ("/w/a/0/z", False),
        ("/w/a/1", False),
        ("/w/a.x", False),
        ("/w/b", True),
        ("/w/b/2", False),
        ("/w/c", False),
    ]


@pytest.mark.parametrize(
    "path",
    ["", "/", "rel", "/trail/", "//double", "/a//b", "/spa ce", "/\u00e9", "/a/../b", "/a\n"],
)
async def test_invalid_paths(driver: StorageDriver, path: str) -> None:
    with pytest.raises(InvalidPathError):
        await driver.put_content(path, b"x")
    with pytest.raises(InvalidPathError):
        await driver.get_content(path)
    with pytest.raises(InvalidPathError):
        await driver.writer(path)


async def test_dot_components_are_refused(driver: StorageDriver) -> None:
    """``.`` and ``..`` fit the path rule's characters but would escape the root."""
    for path in ("/../../etc/passwd", "/a/./b", "/.."):
        with pytest.raises(InvalidPathError):
            await driver.get_content(path)


async def test_missing_file(driver: StorageDriver) -> None:
    with pytest.raises(PathNotFoundError):
        await driver.get_content("/no/such")
    with pytest.raises(PathNotFoundError):
        await driver.stat("/no/such")
    with pytest.raises(PathNotFoundError):
        await driver.delete("/no/such")


async def test_many_writers_at_once(driver: StorageDriver) -> None:
    count = 16

    async def write_one(i: int) -> None:
        writer = await driver.writer(f"/many/{i:02d}/data")
        for j in range(8):
            await writer.write(chunk_of(i * 100 + j, 64 << 10))
            await trio.sleep(0)
        await writer.commit()
        await writer.close()

    async with trio.open_nursery() as nursery:
        for i in range(count):
            nursery.start_soon(write_one, i)
    for i in range(count):
        expected = b"".join(chunk_of(i * 100 + j, 64 << 10) for j in range(8))
        assert await driver.get_content(f"/many/{i:02d}/data") == expected


async def test_get_contents_in_order_with_absent_ones_as_values(driver: StorageDriver) -> None:
    await driver.put_content("/b/one", b"1")
    await driver.put_content("/b/two", b"22")
    await driver.put_content("/b/dir/x", b"x")
    got = await driver.get_contents(["/b/two", "/b/missing", "/b/one", "/b/dir", "/b/two"])
    assert got[0] == b"22" and got[2] == b"1" and got[4] == b"22"
    assert isinstance(got[1], PathNotFoundError) and isinstance(got[3], PathNotFoundError)
    assert await driver.get_contents([]) == []


async def test_stat_many_in_order_with_absent_ones_as_values(driver: StorageDriver) -> None:
    await driver.put_content("/s/f", b"12345")
    got = await driver.stat_many(["/s/f", "/s/nothing", "/s/f"])
    assert [i.size for i in (got[0], got[2])] == [5, 5]  # type: ignore[union-attr]
    assert isinstance(got[1], PathNotFoundError)


async def test_file_sizes_in_order_with_none_as_minus_one(driver: StorageDriver) -> None:
    """A size for each path taken from an iterator made as it is read; -1 where no
    file is (absent, a directory)."""
    await driver.put_content("/z/f", b"12345")
    await driver.put_content("/z/empty", b"")
    await driver.put_content("/z/dir/x", b"x")
    wanted = ["/z/f", "/z/nothing", "/z/dir", "/z/empty", "/z/f"]
    assert list(await driver.file_sizes(iter(wanted), len(wanted))) == [5, -1, -1, 0, 5]
    with pytest.raises(InvalidPathError):
        await driver.file_sizes(iter(["/z/f", "/z/../f"]), 2)


async def test_file_sizes_in_packed_directories(driver: StorageDriver) -> None:
    """A size for ``<directory>/<hex><below>`` of each packed 32-byte value, in the
    order given; -1 where no file is. A tail or directory breaking the path rule, or
    values not 32 bytes each, are refused."""
    values = [bytes([i]) * 32 for i in range(4)]
    await driver.put_content(f"/p/a/{values[0].hex()}/data", b"123")
    await driver.put_content(f"/p/a/{values[2].hex()}/data/x", b"x")  # data: a directory
    await driver.put_content(f"/p/b/{values[1].hex()}/data", b"")
    await driver.put_content(f"/p/b/{values[3].hex()}/other", b"1")
    got = await driver.file_sizes_in(
        ["/p/a", "/p/b"], [values[0] + values[2] + values[1], values[1] + values[3]], "/data"
    )
    assert list(got) == [3, -1, -1, 0, -1]
    assert list(await driver.file_sizes_in([], [], "/data")) == []
    with pytest.raises(InvalidPathError):
        await driver.file_sizes_in(["/p/a"], [values[0]], "/../data")
    with pytest.raises(InvalidPathError):
        await driver.file_sizes_in(["/p/../a"], [values[0]], "/data")
    with pytest.raises(StorageDriverError):
        await driver.file_sizes_in(["/p/a"], [values[0][:31]], "/data")


async def test_a_batch_larger_than_one_thread_takes(driver: StorageDriver) -> None:
    paths = [f"/many/{i:04d}" for i in range(1500)]  # more than one filesystem batch
    for path in paths[::100]:
        await driver.put_content(path, path.encode())
    got = await driver.get_contents(paths)
    for path, content in zip(paths, got, strict=True):
        if path in paths[::100]:
            assert content == path.encode()
        else:
            assert isinstance(content, PathNotFoundError)


async def test_list_tree_is_every_listing_below(driver: StorageDriver) -> None:
    for i, path in enumerate(("/t/a/1", "/t/a/b/2", "/t/c", "/t/d/e/f/3", "/u/4")):
        await driver.put_content(path, b"." * i)
    tree = await driver.list_tree("/t", lambda path: not path.endswith("/e"))
    for directory in ("/t", "/t/a", "/t/a/b", "/t/d"):
        assert [e.path for e in tree[directory]] == await driver.list(directory)
        assert [e.is_dir for e in tree[directory]] == [
            (await driver.stat(p)).is_dir for p in await driver.list(directory)
        ]
    assert not any(d == "/u" or d.startswith("/u/") for d in tree)
    for entries in tree.values():  # a size given is the file's; -1: not given
        for entry in entries:
            if entry.size >= 0:
                assert not entry.is_dir and entry.size == (await driver.stat(entry.path)).size
    # below "/t/d/e" (not descended into) a driver may list or not, but truly
    for directory in [d for d in tree if d.startswith("/t/d/e")]:
        assert [e.path for e in tree[directory]] == await driver.list(directory)
    with pytest.raises(PathNotFoundError):
        await driver.list_tree("/missing", lambda _: True)


async def test_list_trees_is_each_list_tree_together(driver: StorageDriver) -> None:
    for i, path in enumerate(("/t/a/1", "/t/a/b/2", "/t/c", "/u/d/3", "/v/4")):
        await driver.put_content(path, b"." * i)
    tops = ["/t/a", "/u", "/missing", "/v/4"]  # a top that is gone or a file is left out
    everything = lambda path: True  # noqa: E731
    together = await driver.list_trees(tops, everything)
    apart: dict[str, list] = {}
    for top in ("/t/a", "/u"):
        apart.update(await driver.list_tree(top, everything))
    assert {d: list(e) for d, e in together.items()} == {d: list(e) for d, e in apart.items()}
    assert "/t/a/b" in together and "/u/d" in together and "/t" not in together


async def test_reading_groups_is_list_trees_with_the_files_below(driver: StorageDriver) -> None:
    """Each group's listings are ``list_trees`` of its tops; its files, each wanted
    ``name`` in a directory listed and not entered, are ``get_contents`` of them
    (absent ones as values), on every driver; on disk, by a child as by threads."""
    hexes = [hashlib.sha256(b"%d" % i).hexdigest() for i in range(3)]
    for i, hex_name in enumerate(hexes[:2]):
        await driver.put_content(f"/r/a/_layers/sha256/{hex_name}/link", b"link %d" % i)
    await driver.put_content(f"/r/a/_layers/sha256/{hexes[2]}/data", b"no link here")
    await driver.put_content("/r/a/_manifests/tags/t/current/link", b"current")
    await driver.put_content("/r/a/_uploads/u/data", b"an upload")
    await driver.put_content("/r/b/x/current/link", b"another")
    await driver.put_content("/r/c", b"a file top")
    descend = Refusing(r"/(?:current|[0-9a-f]{32,})$")
    groups = [["/r/a", "/r/missing"], ["/r/c", "/r/b"]]
    for in_process in (False, True):
        if isinstance(driver, FilesystemDriver):
            driver.groups_in_process_from = 0 if in_process else 1 << 62
        async with driver.reading_groups(groups, descend, FilesBelow("link")) as reads:
            found = [read async for read in reads]
        assert len(found) == 2
        for tops, read in zip(groups, found, strict=True):
            listed = await driver.list_trees(tops, descend)
            assert {d: list(e) for d, e in read.tree.items()} == {
                d: list(e) for d, e in listed.items()
            }
            wanted = sorted(read.files)
            contents = await driver.get_contents(wanted)
            assert [
                read.files[p] if isinstance(read.files[p], bytes) else None for p in wanted
            ] == [c if isinstance(c, bytes) else None for c in contents]
        layers = "/r/a/_layers/sha256"
        assert found[0].files[f"{layers}/{hexes[0]}/link"] == b"link 0"
        assert isinstance(found[0].files[f"{layers}/{hexes[2]}/link"], PathNotFoundError)
        assert found[0].files["/r/a/_manifests/tags/t/current/link"] == b"current"
        assert len(found[0].files) == 4  # nothing of the upload, which is entered
        assert found[1].files == {"/r/b/x/current/link": b"another"}


async def test_list_tree_infos_reads_ahead_below_the_children(
    driver: StorageDriver,
) -> None:
    """A read ahead goes below the children where the driver can (on disk, nearest
    first while under the limit; on S3, each child's whole subtree): a walker's
    grandchildren come with the same read."""
    for path in ("/r/a/b/c/1", "/r/a/b/2", "/r/d/3"):
        await driver.put_content(path, b"12")
    tree = await driver.list_tree_infos("/r", 8192)
    if driver.name == "inmemory":  # the default: the children only
        assert set(tree) == {"/r", "/r/a", "/r/d"}
    else:
        assert set(tree) == {"/r", "/r/a", "/r/a/b", "/r/a/b/c", "/r/d"}
    nearest = await driver.list_tree_infos("/r", 2)  # /r's two entries fill the limit
    assert set(nearest) == {"/r"} or driver.name == "s3"


@pytest.mark.parametrize("limit", [1, 3, 8192])
async def test_list_tree_infos_agrees_with_list_infos(driver: StorageDriver, limit: int) -> None:
    """Whatever way a driver reads ahead (on S3, one listing without a delimiter when
    the keys fit in ``limit``), each listing it gives is ``list_infos`` of that
    directory; on an object store, a directory emptied by deletes shows nowhere."""
    for path in ("/r/a/1", "/r/a/b/2", "/r/c", "/r/gone/x", "/r/d/e/3"):
        await driver.put_content(path, b"12")
    await driver.delete("/r/gone/x")
    tree = await driver.list_tree_infos("/r", limit)
    assert {"/r/a", "/r/c", "/r/d"} <= {i.path for i in tree["/r"]}
    for directory, infos in tree.items():
        want = await driver.list_infos(directory)
        assert [(i.path, i.is_dir, i.size) for i in infos] == [
            (i.path, i.is_dir, i.size) for i in want
        ], directory
    if driver.name == "s3":  # no directories of their own: gone with their last key
        assert "/r/gone" not in {i.path for i in tree["/r"]}
        with pytest.raises(PathNotFoundError):
            await driver.list_tree_infos("/r/gone", limit)
