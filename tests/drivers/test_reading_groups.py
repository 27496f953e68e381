"""``reading_groups`` on a local disk in a child process (``drivers/groupprocess.py``):
the same listings and files as the worker threads give, for every kind of entry a
hostile or broken store holds; a child that fails is a driver error, and leaving
early or being cancelled leaves no process."""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from layerfs.drivers import FilesystemDriver, PathNotFoundError, StorageDriverError
from layerfs.drivers.base import FilesBelow, GroupRead, UnsafeEntryError
from layerfs.drivers.groupprocess import PIPE_SIZE
from layerfs.passes.readahead import layout_dirs
from layerfs.storage import paths

from ..children import living_children
from ..layouttrees import build_tree
from ..passes.test_readahead import LAYOUT_PATH

LAYOUT = layout_dirs
LINKS = FilesBelow("link")
SECRET = b"outside the store"


def _hex(i: int) -> str:
    return hashlib.sha256(b"%d" % i).hexdigest()


def _repository(root: Path, name: str, outside: Path) -> None:
    """A repository with a link file of every kind: good, empty, huge, a symlink out,
    a FIFO, a directory, missing; a link directory that is a symlink out; a tag."""
    layers = root / name / "_layers" / "sha256"
    for i in range(7):
        (layers / _hex(i)).mkdir(parents=True)
    (layers / _hex(0) / "link").write_bytes(f"sha256:{_hex(0)}".encode())
    (layers / _hex(1) / "link").write_bytes(b"")
    (layers / _hex(2) / "link").write_bytes(b"x" * (PIPE_SIZE + 12345))  # beyond the pipe
    (layers / _hex(3) / "link").symlink_to(outside / "secret")
    os.mkfifo(layers / _hex(4) / "link")
    (layers / _hex(5) / "link").mkdir()  # and _hex(6) has none
    (layers / _hex(7)).symlink_to(outside, target_is_directory=True)
    (layers / f"{_hex(8)}.tmp-1").write_bytes(b"a put not finished")
    (layers / _hex(9)[:40]).mkdir()  # a short hex name: not entered, its link read
    (layers / _hex(9)[:40] / "link").write_bytes(b"short")
    tag = root / name / "_manifests" / "tags" / "v1"
    (tag / "current").mkdir(parents=True)
    (tag / "current" / "link").write_bytes(f"sha256:{_hex(0)}".encode())
    (tag / "index" / "sha256" / _hex(0)).mkdir(parents=True)
    (tag / "index" / "sha256" / _hex(0) / "link").write_bytes(f"sha256:{_hex(0)}".encode())
    upload = root / name / "_uploads" / "0b9d5f5e-1f4c-4ad5-8a11-5b8c2a4a6e0f"
    upload.mkdir(parents=True)
    (upload / "data").write_bytes(b"upload bytes")  # entered and listed, not read


def _store(root: Path) -> list[list[str]]:
    """Repositories in two groups, with tops that are missing, a symlink out and a
    file; the groups of tops."""
    outside = root.parent / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(SECRET)
    (outside / "link").write_bytes(SECRET)
    for name in ("a", "b", "ns/c"):
        _repository(root, name, outside)
    (root / "linked").symlink_to(outside, target_is_directory=True)
    (root / "file").write_bytes(b"a file where a repository would be")
    return [["/a", "/missing", "/linked"], ["/ns/c", "/file", "/b"]]


async def _read_all(driver: FilesystemDriver, groups: list[list[str]]) -> list[GroupRead]:
    async with driver.reading_groups(groups, LAYOUT, LINKS) as reads:
        return [read async for read in reads]


def _comparable(read: GroupRead) -> tuple[dict, dict]:
    files = {
        path: content if isinstance(content, bytes) else (type(content), content.path)
        for path, content in read.files.items()
    }
    return {d: list(entries) for d, entries in read.tree.items()}, files


async def _child_and_threads(
    root: Path, groups: list[list[str]], use_openat2: bool
) -> list[GroupRead]:
    """The groups read by the child, once found equal to the threads' reading."""
    driver = FilesystemDriver(root)
    driver._beneath.use_openat2 = use_openat2
    driver.groups_in_process_from = 1 << 62
    threads = await _read_all(driver, groups)
    driver.groups_in_process_from = 0
    child = await _read_all(driver, groups)
    assert [_comparable(r) for r in child] == [_comparable(r) for r in threads]
    return child


@pytest.mark.parametrize("use_openat2", [True, False])
async def test_a_child_reads_what_worker_threads_read(tmp_path: Path, use_openat2: bool) -> None:
    groups = _store(tmp_path / "store")
    child = await _child_and_threads(tmp_path / "store", groups, use_openat2)
    assert not living_children(b"groupchild.py")

    first, second = child
    assert set(first.tree) >= {"/a", "/a/_layers/sha256", "/a/_manifests/tags/v1/index/sha256"}
    assert not any(d.startswith(("/linked", "/missing", "/b")) for d in first.tree)
    assert "/ns/c/_uploads/0b9d5f5e-1f4c-4ad5-8a11-5b8c2a4a6e0f" in second.tree
    layers = "/a/_layers/sha256"
    files = first.files
    assert files[f"{layers}/{_hex(0)}/link"] == f"sha256:{_hex(0)}".encode()
    assert files[f"{layers}/{_hex(1)}/link"] == b""
    assert files[f"{layers}/{_hex(2)}/link"] == b"x" * (PIPE_SIZE + 12345)
    for unsafe in (3, 4):
        assert isinstance(files[f"{layers}/{_hex(unsafe)}/link"], UnsafeEntryError)
    for absent in (5, 6):
        assert isinstance(files[f"{layers}/{_hex(absent)}/link"], PathNotFoundError)
    assert f"{layers}/{_hex(7)}/link" not in files  # a symlinked directory is not listed as one
    assert files[f"{layers}/{_hex(9)[:40]}/link"] == b"short"
    assert files["/a/_manifests/tags/v1/current/link"] == f"sha256:{_hex(0)}".encode()
    assert files[f"/a/_manifests/tags/v1/index/sha256/{_hex(0)}/link"] == (
        f"sha256:{_hex(0)}".encode()
    )
    assert len(files) == 10 and len(second.files) == 20  # 7 layers, 1 short, 2 of the tag
    every = [c for r in child for c in r.files.values() if isinstance(c, bytes)]
    assert SECRET not in every
    listed = [e.path for r in child for listing in r.tree.values() for e in listing]
    assert not any(".tmp-" in path for path in listed)


async def test_only_the_wanted_files_are_read(tmp_path: Path) -> None:
    groups = _store(tmp_path / "store")
    driver = FilesystemDriver(tmp_path / "store")
    driver.groups_in_process_from = 0
    async with driver.reading_groups(groups, LAYOUT, FilesBelow("link", "/current/")) as reads:
        read = await anext(reads)
    assert list(read.files) == ["/a/_manifests/tags/v1/current/link"]
    assert not living_children(b"groupchild.py")  # leaving after one group ends the child


async def test_a_child_that_cannot_start_its_work_is_an_error(tmp_path: Path) -> None:
    groups = _store(tmp_path / "store")
    driver = FilesystemDriver(tmp_path / "store")
    driver.groups_in_process_from = 0
    shutil.rmtree(tmp_path / "store")  # the child cannot open the root
    with pytest.raises(StorageDriverError, match="child process"):
        await _read_all(driver, groups)
    assert not living_children(b"groupchild.py")


async def _answers(*answers: tuple) -> AsyncIterator[tuple]:
    for answer in answers:
        yield answer


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (("fail", (errno.EIO, "Input/output error", "", "")), StorageDriverError),
        (("unopened", (errno.EACCES, "Permission denied", "", "")), StorageDriverError),
        (
            ("ok", [], ["/a/x/link"], [(errno.EIO, "Input/output error", "", "")]),
            StorageDriverError,
        ),
    ],
)
async def test_what_the_child_could_not_do_is_raised(
    tmp_path: Path, answer: tuple, error: type[Exception]
) -> None:
    """A walk that failed inside, a top that could not be opened for a reason other
    than its absence, a file that could not be read: raised, as the threads raise
    them, never taken for an absence (root reads any directory, so these are made
    here rather than on the disk)."""
    driver = FilesystemDriver(tmp_path)
    reads = driver._group_reads([["/a"]], _answers(answer))
    with pytest.raises(error) as raised:
        await anext(reads)
    assert not isinstance(raised.value, PathNotFoundError | UnsafeEntryError)
    assert "/a" in str(raised.value)


async def test_a_top_gone_or_unsafe_is_left_out(tmp_path: Path) -> None:
    driver = FilesystemDriver(tmp_path)
    gone = ("unopened", (errno.ENOENT, "No such file or directory", "", ""))
    linked = ("unopened", (errno.ELOOP, "Too many levels of symbolic links", "symlink", ""))
    listed = ("ok", [("/c", b"", [("f", 0, "")])], [], [])
    reads = driver._group_reads([["/a", "/b", "/c"]], _answers(gone, linked, listed))
    read = await anext(reads)
    assert list(read.tree) == ["/c"] and read.files == {}


async def test_a_cancelled_read_leaves_no_child(tmp_path: Path) -> None:
    root = tmp_path / "store"
    for i in range(300):
        (root / f"r{i}" / "_layers" / "sha256" / _hex(i)).mkdir(parents=True)
        (root / f"r{i}" / "_layers" / "sha256" / _hex(i) / "link").write_bytes(b"x" * 40000)
    driver = FilesystemDriver(root)
    driver.groups_in_process_from = 0
    groups = [[f"/r{i}"] for i in range(300)]
    with trio.move_on_after(10) as scope:
        async with trio.open_nursery() as nursery:

            async def read_one_then_wait() -> None:
                async with driver.reading_groups(groups, LAYOUT, LINKS) as reads:
                    await anext(reads)
                    await trio.sleep_forever()

            nursery.start_soon(read_one_then_wait)
            await trio.sleep(0.5)
            assert living_children(b"groupchild.py")  # held back by the full pipe
            nursery.cancel_scope.cancel()
    assert not scope.cancelled_caught  # the cancel returned at once
    assert not living_children(b"groupchild.py")


REPOSITORIES = ["app", "team/web", "a/b/c", "missing"]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    files=st.lists(LAYOUT_PATH, min_size=1, max_size=12),
    odd=st.lists(
        st.tuples(LAYOUT_PATH, st.integers(min_value=0), st.sampled_from("lfd")), max_size=3
    ),  # fmt: skip
    bare=st.lists(LAYOUT_PATH, max_size=3),
    use_openat2=st.booleans(),
)
def test_on_any_tree_a_child_reads_what_threads_read(
    files: list[str], odd: list[tuple[str, int, str]], bare: list[str], use_openat2: bool
) -> None:
    """Layout trees with a symbolic link, a FIFO or a directory at any component of a
    path, and directories without their file: every group of repositories the child
    reads is what the threads read."""
    base = Path(tempfile.mkdtemp(prefix="groups-"))
    try:
        root = build_tree(base, files, odd, bare)
        tops = [paths.repository(name) for name in REPOSITORIES]
        trio.run(_child_and_threads, root, [tops[:2], tops[2:]], use_openat2)
    finally:
        shutil.rmtree(base)
