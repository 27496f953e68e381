"""A snapshot lists as the driver does (passes/readahead.py): for any tree of
layout paths, with symbolic links and files where directories belong, every path's
listing through the snapshot is the driver's own, whatever the snapshot descended
into. And read-ahead hands out exactly what a read would have."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
import trio
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from layerfs.drivers import FilesystemDriver, MemoryDriver, PathNotFoundError, UnsafeEntryError
from layerfs.drivers.base import Absent, Descend, TreeEntry
from layerfs.drivers.beneath import TREE_DEPTH
from layerfs.drivers.s3 import S3Driver
from layerfs.passes.readahead import (
    ReadAhead,
    Snapshot,
    layout_dirs,
    marked_dirs,
    repository_dirs,
)
from layerfs.storage import Digest, paths

from ..conftest import S3_BUCKET, make_driver
from ..layouttrees import build_tree
from ..seaweed import SeaweedFS
from ..wrappers import Passthrough

HEXES = ["ab" * 32, "cd" * 32]
FIELDS = st.fixed_dictionaries({
    "name": st.sampled_from(["app", "team/web", "a/b/c"]),
    "alg": st.sampled_from(["sha256", "md5"]),
    "hex": st.sampled_from(HEXES),
    "hh": st.sampled_from(["ab", "cd"]),
    "tag": st.sampled_from(["v1", "latest"]),
    "upload": st.sampled_from(["0b4c9a4e-0c8e-4c64-9c43-1d0f6e1e2a3b", "odd-upload"]),
    "offset": st.sampled_from(["0", "12"]),
})  # fmt: skip
LAYOUT_PATH = st.builds(
    lambda kind, fields: paths.path(kind, **fields), st.sampled_from(sorted(paths.LAYOUT)), FIELDS
)
DESCEND = {"layout": layout_dirs, "marked": marked_dirs, "repositories": repository_dirs}


def _prefixes(path: str) -> list[str]:
    parts = path.strip("/").split("/")
    return ["/" + "/".join(parts[:i]) for i in range(1, len(parts) + 1)]


async def _compare(driver: FilesystemDriver | MemoryDriver, top: str, descend: str) -> None:
    snapshot = await Snapshot.read(driver, top, DESCEND[descend])
    everything = {p for path in await _all_paths(driver) for p in _prefixes(path)}
    asked = sorted(everything | {f"{p}/nothing" for p in everything})
    for path in asked:
        try:
            want: list[str] | type[Exception] = await driver.list_if_present(path)
        except UnsafeEntryError:
            want = UnsafeEntryError
        try:
            got: list[str] | type[Exception] = await snapshot.list_if_present(path)
        except UnsafeEntryError:
            got = UnsafeEntryError
        assert got == want, (path, descend)


async def _all_paths(driver: FilesystemDriver | MemoryDriver) -> list[str]:
    if isinstance(driver, MemoryDriver):
        return [info.path async for info in driver.walk("/")]
    root = Path(driver.root)
    return ["/" + str(p.relative_to(root)) for p in root.rglob("*")]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@example(  # found: the top of the snapshot is itself a symbolic link
    files=[paths.layer_link("app", Digest("sha256", HEXES[0]))],
    links=[(paths.path("blob_data", alg="sha256", hh="ab", hex=HEXES[0]), 3)],
    top=paths.BLOBS,
    descend="layout",
)
@given(
    files=st.lists(LAYOUT_PATH, min_size=1, max_size=12),
    links=st.lists(st.tuples(LAYOUT_PATH, st.integers(min_value=0)), max_size=3),
    top=st.sampled_from([paths.ROOT, paths.REPOSITORIES, paths.BLOBS]),
    descend=st.sampled_from(sorted(DESCEND)),
)
def test_a_snapshot_lists_as_the_driver_does(
    files: list[str], links: list[tuple[str, int]], top: str, descend: str
) -> None:
    base = Path(tempfile.mkdtemp(prefix="snapshot-"))
    try:
        root = build_tree(base, files, [(path, at, "l") for path, at in links])
        trio.run(_compare, FilesystemDriver(root), top, descend)
    finally:
        shutil.rmtree(base)


@pytest.mark.parametrize("descend", sorted(DESCEND))
async def test_a_snapshot_of_a_memory_store(descend: str) -> None:
    driver = MemoryDriver()
    for kind in paths.LAYOUT:
        await driver.put_content(paths.path(kind, **_fields()), b"x")
    await _compare(driver, paths.ROOT, descend)


def _fields() -> dict[str, str]:
    return {"name": "team/web", "alg": "sha256", "hex": HEXES[0], "hh": "ab", "tag": "v1",
            "upload": "0b4c9a4e-0c8e-4c64-9c43-1d0f6e1e2a3b", "offset": "0"}  # fmt: skip


async def test_read_ahead_gives_what_a_read_would_once() -> None:
    driver = MemoryDriver()
    await driver.put_content("/a/one", b"1")
    ahead = ReadAhead(driver)
    await ahead.fetch(["/a/one", "/a/missing"])
    await driver.put_content("/a/one", b"changed")  # after the read ahead: not seen...
    assert ahead.peek("/a/one") == b"1" and ahead.peek("/a/missing") is None
    assert await ahead.get("/a/one") == b"1"
    assert await ahead.get("/a/one") == b"changed"  # ...but only once
    with pytest.raises(PathNotFoundError):
        await ahead.get("/a/missing")
    await ahead.fetch(["/a/one"])
    ahead.forget()
    await driver.put_content("/a/one", b"third")
    assert await ahead.get("/a/one") == b"third"


async def test_a_tree_deeper_than_any_repository_name_is_listed_in_part(tmp_path: Path) -> None:
    """A store made to exhaust the stack or the descriptors: list_tree stops at
    TREE_DEPTH levels, and a snapshot asks the driver for what lies deeper."""
    deep = tmp_path / "store" / Path(*["d"] * 300)
    deep.mkdir(parents=True)
    (deep / "f").write_bytes(b"")
    driver = FilesystemDriver(tmp_path / "store")
    tree = await driver.list_tree("/", lambda _: True)
    assert len(tree) == TREE_DEPTH + 1  # "/" and TREE_DEPTH levels below it
    path = "/" + "/".join(["d"] * 300)
    assert await Snapshot(driver, tree).list_if_present(path) == [f"{path}/f"]


class ReadsCounted(Passthrough):
    """The S3 driver's own listing (with its ETags), and the paths read ahead."""

    def __init__(self, inner: S3Driver) -> None:
        super().__init__(inner)
        self.read: list[str] = []

    async def list_tree(self, path: str, descend: Descend) -> dict[str, list[TreeEntry]]:
        return await self.inner.list_tree(path, descend)

    async def get_contents(self, wanted: list[str]) -> list[bytes | Absent]:
        self.read += wanted
        return await self.inner.get_contents(wanted)


async def test_an_s3_listing_proves_a_link_whose_etag_is_the_md5_of_its_path(
    seaweedfs: SeaweedFS, tmp_path: Path
) -> None:
    """No GET for a link whose ETag is the MD5 of what its path says it holds; any
    other ETag (other bytes, a multipart object's) proves nothing: the link is read."""
    s3 = make_driver("s3", tmp_path, seaweedfs)
    assert isinstance(s3, S3Driver)
    driver = ReadsCounted(s3)
    one, two, three = (Digest.of(bytes([i])) for i in range(3))
    canonical = paths.layer_link("app", one)
    other = paths.layer_link("app", two)  # holds another digest than its path
    multipart = paths.manifest_revision_link("app", three)  # right bytes, a multipart ETag
    await driver.put_content(canonical, str(one).encode())
    await driver.put_content(other, str(one).encode())
    client, key = seaweedfs.client(), s3.key(multipart)
    started = client.create_multipart_upload(Bucket=S3_BUCKET, Key=key)
    part = client.upload_part(Bucket=S3_BUCKET, Key=key, UploadId=started["UploadId"],
                              PartNumber=1, Body=str(three).encode())  # fmt: skip
    client.complete_multipart_upload(
        Bucket=S3_BUCKET, Key=key, UploadId=started["UploadId"],
        MultipartUpload={"Parts": [{"ETag": part["ETag"], "PartNumber": 1}]},
    )  # fmt: skip
    ahead = ReadAhead(driver)
    ahead.trust(await Snapshot.read(driver))
    await ahead.fetch([canonical, other, multipart])
    assert sorted(driver.read) == sorted([other, multipart])
    assert ahead.proven == 1
    assert await ahead.get(canonical) == str(one).encode()
    assert await ahead.get(other) == str(one).encode()
    assert await ahead.get(multipart) == str(three).encode()
    await s3.aclose()


async def test_an_s3_listing_proves_a_tag_link_naming_an_entry_of_its_history(
    seaweedfs: SeaweedFS, tmp_path: Path
) -> None:
    """A tag's ``current`` link holds one of the digests of its index (the registry
    writes the index entry first): no GET when its ETag is the MD5 of one of them.
    A tag whose link names a manifest its history lacks, or whose history is not
    there, is read."""
    s3 = make_driver("s3", tmp_path, seaweedfs)
    assert isinstance(s3, S3Driver)
    driver = ReadsCounted(s3)
    old, new, stray = (Digest.of(bytes([i])) for i in range(3))
    for d in (old, new):
        await driver.put_content(paths.tag_index_link("app", "v1", d), str(d).encode())
    await driver.put_content(paths.tag_index_link("app", "v2", old), str(old).encode())
    proven = paths.tag_current_link("app", "v1")
    await driver.put_content(proven, str(new).encode())
    outside = paths.tag_current_link("app", "v2")  # names what its history lacks
    await driver.put_content(outside, str(stray).encode())
    no_history = paths.tag_current_link("app", "v3")
    await driver.put_content(no_history, str(new).encode())
    ahead = ReadAhead(driver)
    ahead.trust(await Snapshot.read(driver))
    await ahead.fetch([proven, outside, no_history])
    assert sorted(driver.read) == sorted([outside, no_history])
    assert ahead.proven == 1
    assert await ahead.get(proven) == str(new).encode()
    assert await ahead.get(outside) == str(stray).encode()
    assert await ahead.get(no_history) == str(new).encode()
    await s3.aclose()


NAMES = st.one_of(
    st.sampled_from(["current", "currently", "xcurrent", "_layers", "sha256", "index"]),
    st.text("0123456789abcdefg-", min_size=0, max_size=70),
)


@given(st.lists(NAMES, min_size=1, max_size=4).map(lambda names: "/" + "/".join(names)))
@example("/r/current/x")  # "current" above the last component is entered
@example("/r/" + "ab" * 16)  # 32 hex digits: a digest's directory
@example("/r/" + "ab" * 15 + "a")  # 31: entered
def test_the_layout_walk_refuses_exactly_digest_and_current_directories(path: str) -> None:
    """``layout_dirs``, a pattern so that a child process can walk with it, takes a
    directory unless its own name is ``current`` or a digest's hex (32 hex digits
    or more): the rule said as words."""
    name = path.rsplit("/", 1)[1]
    digest_like = len(name) >= 32 and all(c in "0123456789abcdef" for c in name)
    assert layout_dirs(path) == (name != "current" and not digest_like)
