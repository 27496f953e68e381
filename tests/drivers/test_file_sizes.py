"""``file_sizes`` and ``file_sizes_in`` on a local disk in a child process
(``drivers/sizeprocess.py``):
the same answers as the worker threads give, for every kind of entry, in order,
across chunks; a child that fails or a call that is cancelled leaves no process."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest
import trio

from layerfs.drivers import FilesystemDriver, InvalidPathError, StorageDriverError
from layerfs.drivers.sizeprocess import CHUNK

from ..children import living_children


def _make_data(where: Path, i: int, secret: Path) -> None:
    """The ``data`` of entry ``i`` in ``where``: by ``i % 7``, a file of ``i`` bytes
    (0 to 2), a directory, a symlink to ``secret``, a FIFO, or nothing (6)."""
    kind = i % 7
    if kind in (0, 1, 2):
        (where / "data").write_bytes(b"b" * i)
    elif kind == 3:
        (where / "data").mkdir()
    elif kind == 4:
        (where / "data").symlink_to(secret)
    elif kind == 5:
        os.mkfifo(where / "data")


def _store(root: Path) -> list[str]:
    """A tree of every kind of entry a blob's ``data`` could be; the paths to ask."""
    outside = root.parent / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(b"x" * 99)
    (outside / "data").write_bytes(b"x" * 98)  # what a followed directory link would give
    wanted = []
    for i in range(2 * CHUNK + 7):  # more than two chunks each way
        where = root / "blobs" / f"{i % 256:02x}" / f"{i:06d}"
        where.mkdir(parents=True)
        _make_data(where, i, outside / "secret")
        wanted.append(f"/blobs/{i % 256:02x}/{i:06d}/data")
    (root / "blobs" / "00" / "000000").rename(root / "blobs" / "00" / "moved")
    (root / "blobs" / "00" / "000000").symlink_to(outside, target_is_directory=True)
    return wanted


def _expected(i: int) -> int:
    return i if i % 7 in (0, 1, 2) and i != 0 else -1


@pytest.mark.parametrize("use_openat2", [True, False])
async def test_a_child_states_what_worker_threads_state(tmp_path: Path, use_openat2: bool) -> None:
    wanted = _store(tmp_path / "store")
    driver = FilesystemDriver(tmp_path / "store")
    driver._beneath.use_openat2 = use_openat2
    threads = await driver.file_sizes(iter(wanted), len(wanted))
    driver.sizes_in_process_from = 1
    child = await driver.file_sizes(iter(wanted), len(wanted))
    assert list(child) == list(threads) == [_expected(i) for i in range(len(wanted))]


def _packed_store(root: Path) -> tuple[list[str], list[bytes], list[int]]:
    """``_store``'s kinds of entry as the ``data`` of hex-named directories in three
    directories (one of them a symlink to a directory outside); the directories, their
    packed names and the size each should have."""
    outside = root.parent / "outside-packed"
    outside.mkdir()
    (outside / "secret").write_bytes(b"x" * 99)
    directories, packed, expected = [], [], []
    for group in range(3):
        # the third directory is outside, a symlink on the way to it: nothing is stated
        directory = outside / "p2" if group == 2 else root / "blobs" / f"p{group}"
        directory.mkdir(parents=True)
        values = sorted(hashlib.sha256(b"%d-%d" % (group, i)).digest() for i in range(CHUNK + 5))
        for i, value in enumerate(values):
            where = directory / value.hex()
            where.mkdir()
            _make_data(where, i, outside / "secret")
            expected.append(i if i % 7 in (0, 1, 2) and group != 2 else -1)
        directories.append(f"/blobs/p{group}")
        packed.append(b"".join(values))
    (root / "blobs" / "p2").symlink_to(outside / "p2", target_is_directory=True)
    return directories, packed, expected


@pytest.mark.parametrize("use_openat2", [True, False])
async def test_a_child_states_packed_directories_as_threads_do(
    tmp_path: Path, use_openat2: bool
) -> None:
    directories, packed, expected = _packed_store(tmp_path / "store")
    driver = FilesystemDriver(tmp_path / "store")
    driver._beneath.use_openat2 = use_openat2
    threads = await driver.file_sizes_in(directories, packed, "/data")
    driver.sizes_in_process_from = 1
    child = await driver.file_sizes_in(directories, packed, "/data")
    assert list(child) == list(threads) == expected
    assert not _children()


async def test_a_child_that_cannot_start_its_work_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "store").mkdir()
    driver = FilesystemDriver(tmp_path / "store")
    driver.sizes_in_process_from = 1
    shutil.rmtree(tmp_path / "store")  # the child cannot open the root
    with pytest.raises(StorageDriverError, match="child process"):
        await driver.file_sizes(iter(["/a/data"]), 1)
    with pytest.raises(StorageDriverError, match="child process"):
        await driver.file_sizes_in(["/a"], [bytes(32)], "/data")
    assert not _children()


async def test_a_bad_path_ends_the_child_with_the_call(tmp_path: Path) -> None:
    (tmp_path / "store").mkdir()
    driver = FilesystemDriver(tmp_path / "store")
    driver.sizes_in_process_from = 1
    paths = (f"/a/{i}/data" if i < 3 * CHUNK else "/a/../data" for i in range(4 * CHUNK))
    with pytest.raises(InvalidPathError):
        await driver.file_sizes(paths, 4 * CHUNK)
    assert not _children()


async def test_a_cancelled_call_leaves_no_child(tmp_path: Path) -> None:
    (tmp_path / "store").mkdir()
    driver = FilesystemDriver(tmp_path / "store")
    driver.sizes_in_process_from = 1
    started = trio.Event()

    def endless():  # type: ignore[no-untyped-def]
        while True:
            started.set()
            yield "/a/data"

    with trio.move_on_after(5) as scope:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(driver.file_sizes, endless(), 1)
            await started.wait()
            await trio.sleep(0.2)
            assert _children()
            nursery.cancel_scope.cancel()
    assert not scope.cancelled_caught  # the cancel returned at once
    assert not _children()


def _children() -> list[int]:
    return living_children(b"sizechild.py")
