"""``file_sizes`` on a local disk in a child process (``drivers/sizeprocess.py``):
the same answers as the worker threads give, for every kind of entry, in order,
across chunks; a child that fails or a call that is cancelled leaves no process."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import trio

from layerfs.drivers import FilesystemDriver, InvalidPathError, StorageDriverError
from layerfs.drivers.sizeprocess import CHUNK


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
        kind = i % 7
        if kind in (0, 1, 2):
            (where / "data").write_bytes(b"b" * i)
        elif kind == 3:
            (where / "data").mkdir()
        elif kind == 4:
            (where / "data").symlink_to(outside / "secret")
        elif kind == 5:
            os.mkfifo(where / "data")
        # kind 6: no data at all
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


async def test_a_child_that_cannot_start_its_work_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "store").mkdir()
    driver = FilesystemDriver(tmp_path / "store")
    driver.sizes_in_process_from = 1
    shutil.rmtree(tmp_path / "store")  # the child cannot open the root
    with pytest.raises(StorageDriverError, match="child process"):
        await driver.file_sizes(iter(["/a/data"]), 1)
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
    """This process's living children that are size children."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == os.getpid() and b"sizechild.py" in command:
            state = stat.rsplit(")", 1)[1].split()[0]
            if state != "Z":
                found.append(int(entry.name))
    return found
