"""The class behind every symlink escape: a symbolic link at any component of any
path the layout has. For each, every filesystem-driver operation on that path (and
below it) refuses with UnsafeEntryError or finds nothing, on both ways of resolving
(openat2, and the O_NOFOLLOW walk), and nothing outside the store changes."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from layerfs.drivers import FilesystemDriver, PathNotFoundError, UnsafeEntryError
from layerfs.drivers.beneath import Beneath
from layerfs.storage import paths

FIELDS = {
    "name": "app/web",
    "alg": "sha256",
    "hex": "ab" * 32,
    "hh": "ab",
    "tag": "v1",
    "upload": "0b4c9a4e-0c8e-4c64-9c43-1d0f6e1e2a3b",
    "offset": "0",
}
SECRET = b"outside the store\n"


def layout_paths() -> list[str]:
    return [paths.path(kind, **FIELDS) for kind in sorted(paths.LAYOUT)]


OPERATIONS = {
    "get_content": lambda d, path: d.get_content(path),
    "stat": lambda d, path: d.stat(path),
    "list": lambda d, path: d.list(path.rsplit("/", 1)[0]),
    "reader": lambda d, path: d.reader(path),
    "digest_file": lambda d, path: d.digest_file(path, "sha256"),
    "writer": lambda d, path: d.writer(path),
    "append": lambda d, path: d.writer(path, append=True),
    "put_content": lambda d, path: d.put_content(path, b"planted"),
    "move_from": lambda d, path: d.move(path, "/elsewhere/x"),
    "move_to": lambda d, path: d.move("/source", path),
    "delete": lambda d, path: d.delete(path),
    "delete_parent": lambda d, path: d.delete(path.rsplit("/", 1)[0]),
    # the batches of a whole-store pass (fsck, gc): an absent or unsafe path is a value
    "get_contents": lambda d, path: _first(d.get_contents([path])),
    "stat_many": lambda d, path: _first(d.stat_many([path])),
    "list_tree": lambda d, path: _tree_below(d, path),
    "file_sizes": lambda d, path: _one_size(d, path, in_process=False),
    "file_sizes_in_a_child": lambda d, path: _one_size(d, path, in_process=True),
}


async def _one_size(driver: FilesystemDriver, path: str, in_process: bool) -> int:
    """The one size of ``file_sizes``; none (-1) is a refusal (``stat_many`` tells
    which)."""
    driver.sizes_in_process_from = 1 if in_process else 2
    (size,) = await driver.file_sizes(iter([path]), 1)
    if size < 0:
        raise PathNotFoundError(path)
    return size


async def _first(batch):  # type: ignore[no-untyped-def]
    """The one result of a batch, raised when it is an error (as the call would)."""
    (result,) = await batch
    if isinstance(result, Exception):
        raise result
    return result


async def _tree_below(driver: FilesystemDriver, path: str) -> None:
    """list_tree from the store's top: the symlink is an odd entry, never entered,
    and nothing is listed from beyond it."""
    tree = await driver.list_tree("/", lambda _: True)
    for entries in tree.values():
        for entry in entries:
            # the store's only regular file is /source: a "data" file came from outside
            assert not (entry.path.endswith("/data") and not entry.odd), entry
            assert not (entry.is_dir and entry.odd), entry
    raise PathNotFoundError(path)  # listed without following anything: refused


# With the symlink as the path's last component, these act on the link itself (its
# directory is real): list it, replace it by a new file, or remove the tree holding it.
ON_THE_LINK_ITSELF = {"list", "put_content", "move_to", "delete_parent"}


async def refused(driver: FilesystemDriver, operation: str, path: str) -> bool:
    try:
        result = await OPERATIONS[operation](driver, path)
    except (UnsafeEntryError, PathNotFoundError):
        return True
    for closing in ("aclose", "close"):
        if callable(getattr(result, closing, None)):
            await getattr(result, closing)()
            break
    return False


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    path=st.sampled_from(layout_paths()),
    at=st.integers(min_value=0),
    to_dir=st.booleans(),
    use_openat2=st.booleans(),
)
def test_a_symlink_at_any_component_is_never_followed(
    path: str, at: int, to_dir: bool, use_openat2: bool
) -> None:
    parts = path.strip("/").split("/")
    cut = 1 + at % len(parts)  # the component that is a symlink: 1..len(parts)
    for operation in OPERATIONS:
        base = Path(tempfile.mkdtemp(prefix="beneath-"))
        try:
            root, outside = base / "store", base / "outside"
            outside.mkdir()
            (outside / "data").write_bytes(SECRET)
            link = root.joinpath(*parts[:cut])
            link.parent.mkdir(parents=True, exist_ok=True)
            (root / "source").write_bytes(b"source")
            link.symlink_to(outside if to_dir else outside / "data")
            before = sorted(os.walk(outside))
            driver = FilesystemDriver(root)
            driver._beneath = Beneath(str(root), use_openat2=use_openat2)
            if not trio.run(refused, driver, operation, path):
                assert cut == len(parts) and operation in ON_THE_LINK_ITSELF, operation
            assert (outside / "data").read_bytes() == SECRET, operation
            assert sorted(os.walk(outside)) == before, operation
        finally:
            shutil.rmtree(base)


@pytest.mark.parametrize("use_openat2", [True, False])
async def test_a_directory_made_on_the_way_is_never_a_symlink_swapped_in(
    tmp_path: Path, use_openat2: bool
) -> None:
    """A writer makes the directories it needs; one that turns out to be a symlink
    (planted between two writes) is refused, not written through."""
    root, outside = tmp_path / "store", tmp_path / "outside"
    outside.mkdir()
    driver = FilesystemDriver(root)
    driver._beneath = Beneath(str(root), use_openat2=use_openat2)
    await driver.put_content("/a/b/c", b"one")
    shutil.rmtree(root / "a" / "b")
    (root / "a" / "b").symlink_to(outside)
    with pytest.raises(UnsafeEntryError):
        await driver.put_content("/a/b/c", b"two")
    with pytest.raises(UnsafeEntryError):
        await driver.writer("/a/b/d")
    assert os.listdir(outside) == []


@pytest.mark.parametrize("use_openat2", [True, False])
async def test_a_read_ahead_enters_no_symlink_at_any_depth(
    tmp_path: Path, use_openat2: bool
) -> None:
    """``list_tree_infos`` reads below the children, by descriptors from its top: a
    symlinked directory two levels down is an entry, not readable, and not entered."""
    root, outside = tmp_path / "store", tmp_path / "outside"
    (outside / "deep").mkdir(parents=True)
    (outside / "deep" / "secret").write_bytes(SECRET)
    driver = FilesystemDriver(root)
    driver._beneath = Beneath(str(root), use_openat2=use_openat2)
    await driver.put_content("/r/a/b/1", b"1")
    (root / "r" / "a" / "link").symlink_to(outside)
    tree = await driver.list_tree_infos("/r", 8192)
    assert set(tree) == {"/r", "/r/a", "/r/a/b"}
    [link] = [info for info in tree["/r/a"] if info.path == "/r/a/link"]
    assert not link.readable and not link.is_dir
    assert not any(path.startswith("/r/a/link") for path in tree)
