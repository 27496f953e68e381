"""Interleavings that once hung or raced, called on Operations without the kernel
(tests/fsops.py), each kept as the example that showed it."""

from __future__ import annotations

import errno
import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import trio
import trio.testing

from layerfs.drivers import MemoryDriver, StorageDriverError
from layerfs.fs.state import DIR_TIMEOUT
from layerfs.storage import Digest, Registry, paths
from layerfs.storage.maintenance import purge_uploads

from ..fsops import Clock, Errno, Kernel, context, mounted
from ..wrappers import CountingDriver, LaggingStatDriver, Passthrough, Pausing

UP = "repositories/r/_uploads"
DATA = b"layer bytes " * 1000
LONG = "upload-with-a-long-name-" * 4


async def uploads_in_store(driver: MemoryDriver, repository: str = "r") -> list[str]:
    return await Registry(driver).repository(repository).uploads.ids()


async def errno_of(call) -> int:  # type: ignore[no-untyped-def]
    with pytest.raises(Errno) as info:
        await call
    return info.value.errno


async def new_repo(k: Kernel) -> None:
    await k.makedirs("repositories/r")


async def stored_repo(driver: MemoryDriver) -> MemoryDriver:
    """A repository every mount of ``driver`` sees: one holding a layer."""
    registry = Registry(driver)
    await registry.repository("r").layers.link(await registry.blobs.put(b"seed"))
    return driver


# removed while open ----------------------------------------------------------------------
@pytest.mark.parametrize("how", ["rm", "rename over it"])
async def test_a_write_to_an_upload_removed_while_open_is_estale_and_close_returns(
    how: str,
) -> None:
    driver = MemoryDriver()
    async with mounted(driver) as k:
        await new_repo(k)
        fh = await k.create(f"{UP}/a")
        await k.write(fh, 0, b"first")
        if how == "rm":
            await k.unlink(f"{UP}/a")
        else:
            await k.write_file(f"{UP}/b", b"other")
            await k.rename(f"{UP}/b", f"{UP}/a")
        assert await errno_of(k.write(fh, 5, b"second")) == errno.ESTALE
        assert await errno_of(k.flush(fh)) == errno.ESTALE
        await k.release(fh)  # returns (under the deadline)
        assert len(k.ops.state.handles) == 0
        names = await k.listdir(UP)
        assert names == ([] if how == "rm" else ["a"])
        if how != "rm":
            assert await k.read_file(f"{UP}/a") == b"other"
    assert len(await uploads_in_store(driver)) == (0 if how == "rm" else 1)


async def test_a_handle_left_on_a_finished_upload_is_estale() -> None:
    async with mounted(MemoryDriver()) as k:
        await new_repo(k)
        fh = await k.create(f"{UP}/a")
        await k.write(fh, 0, DATA)
        await k.rename(f"{UP}/a", f"{UP}/{Digest.of(DATA)}")
        assert await errno_of(k.write(fh, len(DATA), b"more")) == errno.ESTALE
        await k.release(fh)
        assert len(k.ops.state.uploads.sessions) == 0


class GatedPuts(Passthrough):
    """Holds every put of a path ending in ``suffix`` until ``gate`` is set."""

    def __init__(self, inner: MemoryDriver, suffix: str) -> None:
        super().__init__(inner)
        self.suffix = suffix
        self.gate = trio.Event()
        self.waiting = trio.Event()

    async def put_content(self, path: str, content: bytes) -> None:
        if "/hashstates/" in path and self.suffix in path:
            self.waiting.set()
            await self.gate.wait()
        await self.inner.put_content(path, content)


async def test_an_open_during_the_last_close_keeps_the_session() -> None:
    driver = GatedPuts(MemoryDriver(), "/hashstates/sha256/")
    async with mounted(driver) as k:
        await new_repo(k)
        first = await k.create(f"{UP}/a")
        await k.write(first, 0, b"abc")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(k.release, first)  # stores the state: waits at the gate
            await driver.waiting.wait()
            second = await k.open(f"{UP}/a", os.O_WRONLY)  # arrives during that close
            driver.gate.set()
        session = k.ops.state.uploads.sessions[next(iter(k.ops.state.uploads.sessions))]
        assert session.handles == 1
        await k.write(second, 3, b"def")
        await k.close(second)
        assert await k.read_file(f"{UP}/a") == b"abcdef"
        assert k.ops.state.uploads.sessions == {}


async def test_truncate_changes_the_handle_it_was_given() -> None:
    blob = Digest.of(DATA)
    async with mounted(MemoryDriver()) as k:
        await new_repo(k)
        await k.write_file(f"{UP}/a", DATA)
        await k.rename(f"{UP}/a", f"{UP}/{blob}")
        link = f"repositories/r/_layers/sha256/{blob.hex}/link"
        writer = await k.open(link, os.O_WRONLY | os.O_TRUNC)
        await k.write(writer, 0, b"sha256:")
        other = await k.open(link, os.O_RDWR)
        await k.truncate(link, 0, other)
        assert await k.read(writer, 0, 100) == b"sha256:"
        assert await k.read(other, 0, 100) == b""
        await k.release(other)  # an empty link is refused, logged, and nothing stored
        await k.release(writer)
        assert await k.read_file(link) == str(blob).encode()


# two mounts of one store ---------------------------------------------------------------
async def test_rm_in_one_mount_racing_mv_in_another_is_enoent_and_leaves_nothing() -> None:
    driver = await stored_repo(MemoryDriver())
    async with mounted(driver) as a, mounted(driver) as b:
        await a.write_file(f"{UP}/x", DATA)
        held = await b.open(f"{UP}/x", os.O_WRONLY)  # b's session exists
        await a.unlink(f"{UP}/x")
        code = await errno_of(b.rename(f"{UP}/x", f"{UP}/{Digest.of(DATA)}"))
        assert code == errno.ENOENT
        with pytest.raises(Errno) as info:  # at the write, or the flush after it
            await b.write(held, len(DATA), b"more")
            await b.flush(held)
        assert info.value.errno in (errno.ENOENT, errno.ESTALE)
        await b.release(held)
    assert await driver.list_if_present(paths.uploads_dir("r")) == []
    assert not await driver.exists(paths.blob_data(Digest.of(DATA)))


async def test_a_write_after_rm_in_another_mount_leaves_no_upload_directory() -> None:
    driver = await stored_repo(MemoryDriver())
    async with mounted(driver) as a, mounted(driver) as b:
        fh = await b.create(f"{UP}/x")
        await b.write(fh, 0, b"abc")
        await b.flush(fh)
        await a.unlink(f"{UP}/x")
        with pytest.raises(Errno):
            await b.write(fh, 3, b"def")
            await b.flush(fh)
        await b.release(fh)
    assert await driver.list_if_present(paths.uploads_dir("r")) == []


async def test_purge_uploads_while_open_leaves_no_empty_upload_directory() -> None:
    driver = MemoryDriver()
    async with mounted(driver) as k:
        await new_repo(k)
        fh = await k.create(f"{UP}/x")
        await k.write(fh, 0, b"abc")
        await purge_uploads(Registry(driver), timedelta(0))  # from outside the mount
        with pytest.raises(Errno) as info:
            await k.close(fh)
        assert info.value.errno == errno.ENOENT
    assert await driver.list_if_present(paths.uploads_dir("r")) == []


async def test_two_mounts_creating_one_name_at_once_show_one_upload_by_it() -> None:
    driver = await stored_repo(MemoryDriver())
    async with mounted(driver) as a, mounted(driver) as b:
        handles: dict[str, int] = {}

        async def create(name: str, k: Kernel) -> None:
            handles[name] = await k.create(f"{UP}/same")

        async with trio.open_nursery() as nursery:
            nursery.start_soon(create, "a", a)
            nursery.start_soon(create, "b", b)
        for k in (a, b):
            names = await k.listdir(UP)
            assert names.count("same") == 1
            assert len(names) == len(await uploads_in_store(driver))  # none hidden
        await a.write(handles["a"], 0, b"from a")
        await a.close(handles["a"])
        await b.close(handles["b"])


async def test_an_upload_whose_name_file_is_empty_shows_under_its_id() -> None:
    driver, clock = MemoryDriver(), Clock()
    async with mounted(driver, clock=clock) as k:
        await new_repo(k)
        await k.write_file(f"{UP}/good", b"x")
        (upload_id,) = await uploads_in_store(driver)
        await driver.put_content(paths.upload_name("r", upload_id), b"")
        clock.past_the_timeout()  # changed behind the mount's back: seen after the timeout
        assert await k.listdir(UP) == [upload_id]
        await driver.put_content(paths.upload_name("r", upload_id), b"bad\nname")
        clock.past_the_timeout()
        assert await k.listdir(UP) == [upload_id]


# sparse files ---------------------------------------------------------------------------
async def test_a_write_past_the_end_fills_the_gap_with_zeros() -> None:
    async with mounted(MemoryDriver()) as k:
        await new_repo(k)
        fh = await k.create(f"{UP}/sparse")
        await k.write(fh, 0, b"head")
        await k.write(fh, (3 << 20) + 5, b"tail")  # cp seeks over a hole of 3 MiB
        assert await errno_of(k.write(fh, 2, b"back")) == errno.EINVAL
        await k.truncate(f"{UP}/sparse", (3 << 20) + 20, fh)  # a hole at the end
        await k.close(fh)
        expected = b"head" + bytes((3 << 20) + 1) + b"tail" + bytes(11)
        assert await k.read_file(f"{UP}/sparse") == expected
        await k.rename(f"{UP}/sparse", f"{UP}/{Digest.of(expected)}")
        assert await errno_of(k.truncate("repositories/r/_uploads/none", 0)) == errno.ENOENT


# names ----------------------------------------------------------------------------------
async def test_odd_names_get_the_errno_a_file_system_gives() -> None:
    async with mounted(MemoryDriver()) as k:
        await new_repo(k)
        uploads = await k.walk(UP)
        ctx = context()

        async def lookup(name: bytes) -> int:
            return await errno_of(k.call("lookup", uploads, name, ctx))

        assert await lookup(b"x" * 256) == errno.ENAMETOOLONG
        assert await lookup(b"new\nline") == errno.ENOENT
        assert await lookup(b"\xff\xfe") == errno.ENOENT
        assert await lookup(b"sha256:abc") == errno.ENOENT
        for size in (256, 1000):
            assert await errno_of(k.create(f"{UP}/{'n' * size}")) == errno.ENAMETOOLONG
        await k.create(f"{UP}/{'n' * 255}")  # the longest name there is
        assert await errno_of(k.create(f"{UP}/new\nline")) == errno.EINVAL
        assert await errno_of(k.call("symlink", uploads, b"s", b"/etc", ctx)) == errno.EPERM
        assert await errno_of(k.call("mknod", uploads, b"n", 0o10644, 0, ctx)) == errno.EPERM
        root_ino = await k.walk("repositories")
        assert await errno_of(k.call("link", root_ino, uploads, b"h", ctx)) == errno.EPERM


async def test_mkdir_where_the_layout_has_no_directory_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with mounted(MemoryDriver()) as k:
        await new_repo(k)
        assert await errno_of(k.mkdir("repositories/r/_manifests/foo")) == errno.EPERM
        assert "the layout has no directory here" in caplog.text
        assert "repository name" not in caplog.text
        assert await errno_of(k.mkdir("repositories/Bad")) == errno.EINVAL


# tags ----------------------------------------------------------------------------------
async def test_rm_of_a_tags_current_link_untags() -> None:
    driver = MemoryDriver()
    registry = Registry(driver)
    repo = registry.repository("r")
    config = await registry.blobs.put(b"{}")
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": str(config),
                "size": 2,
            },
            "layers": [],
        }
    ).encode()
    await repo.layers.link(config)
    digest = await repo.manifests.put(manifest)
    await repo.tags.tag("v1", digest)
    async with mounted(driver) as k:
        await k.unlink("repositories/r/_manifests/tags/v1/current/link")
        # the tag is gone from the store; its folders stay in view for the rest of rm -r
        assert await repo.tags.list() == []
        assert await k.listdir("repositories/r/_manifests/tags/v1/current") == []
        assert await k.listdir("repositories/r/_manifests/tags/v1/index") == []
        await k.rmdir("repositories/r/_manifests/tags/v1/current")
        await k.rmdir("repositories/r/_manifests/tags/v1/index")
        await k.rmdir("repositories/r/_manifests/tags/v1")
        assert await k.listdir("repositories/r/_manifests/tags") == []


class FailingIndexPut(Passthrough):
    async def put_content(self, path: str, content: bytes) -> None:
        if "/index/" in path:
            raise OSError("killed here")
        await self.inner.put_content(path, content)


async def test_a_tag_cut_short_after_its_current_link_still_serves() -> None:
    inner = MemoryDriver()
    registry = Registry(inner)
    repo = registry.repository("r")
    config = await registry.blobs.put(b"{}")
    await repo.layers.link(config)
    manifest = (
        b'{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",'
        b'"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"'
        + str(config).encode()
        + b'","size":2},"layers":[]}'
    )
    digest = await repo.manifests.put(manifest)
    with pytest.raises(StorageDriverError):  # the contract's form of the OSError
        await Registry(FailingIndexPut(inner)).repository("r").tags.tag("v1", digest)
    assert await repo.tags.resolve("v1") == digest


# status --------------------------------------------------------------------------------
async def test_the_status_of_many_open_uploads_is_split_into_pages() -> None:
    async with mounted(MemoryDriver()) as k:
        await new_repo(k)
        handles = [await k.create(f"{UP}/{LONG}{n:04}") for n in range(400)]
        pages, page = [], 0
        while True:
            name = "user.layerfs.uploads" + (f".{page}" if page else "")
            try:
                value = await k.getxattr("", name)
            except Errno as exc:
                assert exc.errno == errno.ENODATA
                break
            assert len(value) <= 65536
            pages.append(json.loads(value))
            page += 1
        assert len(pages) > 1
        listed = sorted(u["name"] for p in pages for u in p)
        assert listed == sorted(f"{LONG}{n:04}" for n in range(400))
        for fh in handles:
            await k.release(fh)


async def test_a_repository_made_only_by_mkdir_lives_until_unmount() -> None:
    """README, the view: such a repository is kept by the mount alone."""
    driver = MemoryDriver()
    async with mounted(driver) as k:
        await k.makedirs("repositories/only/made")
        assert "_uploads" in await k.listdir("repositories/only/made")
    async with mounted(driver) as k:
        assert await k.listdir("repositories") == []


# found by the model (tests/viewmodel/) --------------------------------------------------
async def test_a_folder_holding_one_the_mount_made_stays_when_the_store_drops_it() -> None:
    """unlink the last layer link, with a refused link's folder made beside it (that
    folder goes with its refusal; the unlinked one's stays in view)."""
    driver = await stored_repo(MemoryDriver())
    seed = Digest.of(b"seed")
    unknown = Digest.of(b"unknown")
    async with mounted(driver) as k:
        folder = f"repositories/r/_layers/sha256/{unknown.hex}"
        await k.makedirs(folder)
        with pytest.raises(Errno):
            await k.write_file(f"{folder}/link", str(unknown).encode())
        await k.unlink(f"repositories/r/_layers/sha256/{seed.hex}/link")
        listed = await k.listdir("repositories/r/_layers/sha256")
        assert listed == [seed.hex]  # kept by the unlink; the refused one's is gone


async def test_renaming_a_missing_upload_is_enoent_before_exdev() -> None:
    async with mounted(await stored_repo(MemoryDriver())) as k:
        await k.makedirs("repositories/s")
        code = await errno_of(k.rename(f"{UP}/missing", "repositories/s/_uploads/x"))
        assert code == errno.ENOENT


async def test_a_rename_in_another_mount_shows_while_this_one_holds_the_upload() -> None:
    driver, clock = await stored_repo(MemoryDriver()), Clock()
    async with mounted(driver, clock=clock) as a, mounted(driver, clock=clock) as b:
        fh = await a.create(f"{UP}/old")
        await a.write(fh, 0, b"abc")
        await b.rename(f"{UP}/old", f"{UP}/new")
        assert await a.listdir(UP) == ["old"]  # a trusts what it listed, for a while
        clock.past_the_timeout()
        assert await a.listdir(UP) == ["new"]
        await a.close(fh)
        assert await a.read_file(f"{UP}/new") == b"abc"


async def test_a_link_removed_while_being_written_stores_nothing() -> None:
    async with mounted(await stored_repo(MemoryDriver())) as k:
        seed = Digest.of(b"seed")
        await k.makedirs("repositories/s")
        folder = f"repositories/s/_layers/sha256/{seed.hex}"
        await k.makedirs(folder)
        fh = await k.create(f"{folder}/link")
        await k.write(fh, 0, b"sha256:")
        await k.unlink(f"{folder}/link")
        assert await errno_of(k.write(fh, 7, seed.hex.encode())) == errno.ESTALE
        await k.close(fh)
        assert await errno_of(k.stat(f"{folder}/link")) == errno.ENOENT


async def test_an_upload_grown_through_another_mount_shows_its_new_size_here() -> None:
    """Found by the two-mount model: a reader's session kept the size it opened at."""
    driver = await stored_repo(MemoryDriver())
    async with mounted(driver) as a, mounted(driver) as b:
        writer = await b.create(f"{UP}/x")
        reader = await a.open(f"{UP}/x")
        await b.write(writer, 0, b"grown")
        await b.flush(writer)
        assert (await a.stat(f"{UP}/x")).st_size == 5
        assert await a.read(reader, 0, 100) == b"grown"
        await a.release(reader)
        await b.close(writer)


async def test_an_upload_written_here_keeps_its_size_when_a_listing_lags() -> None:
    """Found by the S3 gateway test: a getattr between two closes took a lagging size
    from the store, and the next write met a hash state of another size."""
    driver = LaggingStatDriver(await stored_repo(MemoryDriver()), "/data", lag=50)
    async with mounted(driver) as k:
        fh = await k.create(f"{UP}/x")
        await k.write(fh, 0, b"first")
        await k.flush(fh)  # the writer closes, as each dd's close does
        assert (await k.stat(f"{UP}/x")).st_size == 5
        await k.write(fh, 5, b"second")
        await k.close(fh)
        driver.lag = 0
        assert await k.read_file(f"{UP}/x") == b"firstsecond"


# what the mount remembers of a listing --------------------------------------------------
async def test_a_listing_answers_the_lookups_that_follow_until_its_timeout() -> None:
    """``ls -l`` and ``find``: after a directory is read, its entries' lookups and
    getattrs cost the store nothing, until the time the kernel trusts it passes."""
    inner = MemoryDriver()
    registry = Registry(inner)
    for i in range(20):
        await registry.repository("r").layers.link(await registry.blobs.put(b"%d" % i))
    driver, clock = CountingDriver(inner), Clock()
    layers = "repositories/r/_layers/sha256"
    async with mounted(driver, clock=clock) as k:
        names = await k.listdir(layers)
        assert len(names) == 20
        driver.stats.clear()
        for name in names:
            await k.stat(f"{layers}/{name}")
            await k.stat(f"{layers}/{name}/link")
        below = [p for p in driver.stats if "/_layers/sha256/" in p]
        assert below == [], below  # every answer came from the listing and its children
        clock.past_the_timeout()
        await k.stat(f"{layers}/{names[0]}/link")
        assert any(p.endswith(f"{names[0]}/link") for p in driver.stats)


@pytest.mark.parametrize("kind", ["memory", "filesystem"])
async def test_a_walk_reads_a_directory_with_its_children_not_each_child_alone(
    kind: str, tmp_path: Path
) -> None:
    """``find``: a directory that came with its parent's listing, without its own
    children, is read again with them when it is listed, rather than each of its
    children alone (40 layers were 40 listings and more)."""
    from layerfs.drivers import FilesystemDriver

    inner = MemoryDriver() if kind == "memory" else FilesystemDriver(str(tmp_path / "s"))
    registry = Registry(inner)
    for i in range(40):
        await registry.repository("r").layers.link(await registry.blobs.put(b"%d" % i))
    driver = CountingDriver(inner)
    async with mounted(driver) as k:
        seen, below = 0, ["repositories/r/_layers"]
        while below:
            directory = below.pop()
            for name in await k.listdir(directory):
                seen += 1
                if name != "link":
                    below.append(f"{directory}/{name}")
        assert seen == 1 + 40 * 2  # sha256, then each layer's directory and link
        assert driver.calls["listing"] <= 3, driver.calls


async def test_listing_many_uploads_reads_each_name_once() -> None:
    """An ``ls -l`` of _uploads was quadratic: each entry's lookup read every name."""
    inner = MemoryDriver()
    uploads = Registry(inner).repository("r").uploads
    for i in range(60):
        upload = await uploads.create()
        await uploads.set_name(upload.id, f"part-{i:03d}")
        await upload.close()
    driver = CountingDriver(inner)
    async with mounted(driver) as k:
        names = await k.listdir(UP)
        for name in names:
            await k.stat(f"{UP}/{name}")
        name_reads = {p: n for p, n in driver.gets.items() if p.endswith("/name")}
        assert len(name_reads) == 60
        assert max(name_reads.values()) == 1, name_reads
        fh = await k.create(f"{UP}/part-new")  # the 61st: its own name, no re-read
        await k.close(fh)
        assert max(n for p, n in driver.gets.items() if p.endswith("/name")) == 1


@pytest.mark.parametrize("kind", ["memory", "filesystem"])
async def test_a_writer_never_follows_its_upload_into_blobs(kind: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Found by the two-mounts model once the memory driver's writers followed their
    file as descriptors do: mount A writes an upload and keeps it open, mount B
    finishes it, A writes again through the writer it still holds; on disk those
    bytes went into the blob."""
    from layerfs.drivers import FilesystemDriver

    store = MemoryDriver() if kind == "memory" else FilesystemDriver(str(tmp_path / "s"))
    registry = Registry(store)
    await registry.repository("r").layers.link(await registry.blobs.put(b"seed"))
    first = os.urandom(4 << 20)  # stored as it arrives, not held in a buffer
    clock = Clock()
    async with mounted(store, clock=clock) as a, mounted(store, clock=clock) as b:
        fh = await a.create(f"{UP}/x")
        for start in range(0, len(first), 1 << 20):
            await a.write(fh, start, first[start : start + (1 << 20)])
        data = paths.upload_data("r", (await a.getxattr(f"{UP}/x", "user.layerfs.uuid")).decode())
        with trio.fail_after(5):
            while (await store.stat(data)).size < len(first):  # the write-behind stored it
                await trio.sleep(0.01)
        clock.past_the_timeout()
        digest = Digest.of(first)
        await b.rename(f"{UP}/x", f"{UP}/{digest}")
        with pytest.raises(Errno) as refused:
            await a.write(fh, len(first), b"second" * 200_000)
            await a.flush(fh)
        assert refused.value.errno in (errno.ENOENT, errno.ESTALE, errno.EBUSY)
        await a.release(fh)
        assert await store.get_content(paths.blob_data(digest)) == first


async def test_what_only_digests_name_is_an_index_refreshed_behind_the_browser() -> None:
    """README, "The mounted view": a listing of blobs or links is kept INDEX_TIMEOUT
    and read again in the background once INDEX_REFRESH old; a name it lacks is found
    at once, a deleted blob is ENOENT to a new open at once; a tag is seen within
    DIR_TIMEOUT."""
    from layerfs.fs.state import DIR_TIMEOUT, INDEX_REFRESH, INDEX_TIMEOUT

    driver, clock = MemoryDriver(), Clock()
    old, new = Digest.of(b"old"), Digest.of(b"new")
    registry = Registry(driver)
    for data in (b"old", b"new"):
        await driver.put_content(paths.blob_data(Digest.of(data)), data)
    await registry.repository("r").layers.link(old)
    async with mounted(driver, clock=clock) as k:
        layers = "repositories/r/_layers/sha256"
        assert await k.listdir(layers) == [old.hex]
        await registry.repository("r").layers.link(new)  # behind the mount's back
        await driver.put_content(paths.tag_current_link("r", "v1"), str(old).encode())
        clock.now += DIR_TIMEOUT + 0.5
        assert await k.listdir(layers) == [old.hex]  # the index, still trusted
        assert await k.read_file(f"{layers}/{new.hex}/link") == str(new).encode()  # by name
        assert await k.listdir("repositories/r/_manifests/tags") == ["v1"]  # a tag: 1 s
        clock.now += INDEX_REFRESH
        assert await k.listdir(layers) == [old.hex]  # served, and read again behind it
        await trio.testing.wait_all_tasks_blocked()
        assert await k.listdir(layers) == sorted([old.hex, new.hex])
        await driver.delete(paths.blob_dir(new))  # a gc beside the mount
        with pytest.raises(Errno) as gone:
            await k.open(f"blobs/sha256/{new.hex[:2]}/{new.hex}/data")
        assert gone.value.errno == errno.ENOENT
        clock.now += INDEX_TIMEOUT + 0.5
        assert new.hex[:2] != old.hex[:2]  # so its directory went with it
        assert await k.listdir("blobs/sha256") == [old.hex[:2]]


async def _tagged_store(inner: MemoryDriver | object, tags: int) -> Registry:
    registry = Registry(inner)  # type: ignore[arg-type]
    repo = registry.repository("r")
    config = await registry.blobs.put(b"{}")
    await repo.layers.link(config)
    for i in range(tags):
        manifest = json.dumps({
            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": str(config), "size": 2},
            "layers": [], "annotations": {"n": str(i)},
        }).encode()  # fmt: skip
        await repo.tags.tag(f"t{i}", await repo.manifests.put(manifest))
    return registry


@pytest.mark.parametrize("kind", ["memory", "filesystem"])
async def test_reading_many_tag_links_lists_their_directory_once(kind: str, tmp_path: Path) -> None:
    """``cat`` of every tag's link: a name looked up where no trusted listing answers
    lists its directory with what lies below it, as a walk does, so the lookups beside
    and below it ask the store nothing (each link's ``current``, ``link``: about ten
    stats a link were each a worker-thread call). Every open still reads the link, a
    tag moves in place; what another writer adds is found once DIR_TIMEOUT passes."""
    from layerfs.drivers import FilesystemDriver

    inner = MemoryDriver() if kind == "memory" else FilesystemDriver(str(tmp_path / "s"))
    registry = await _tagged_store(inner, 20)
    driver, clock = CountingDriver(inner), Clock()
    tags = "repositories/r/_manifests/tags"
    async with mounted(driver, clock=clock) as k:
        for i in range(20):
            digest = await registry.repository("r").tags.resolve(f"t{i}")
            assert await k.read_file(f"{tags}/t{i}/current/link") == str(digest).encode()
        assert [p for p in driver.stats if "/_manifests/tags" in p] == []
        if kind == "filesystem":  # it reads below the children: one listing for all
            assert driver.calls["listing"] <= 6, driver.calls
        assert sum(n for p, n in driver.gets.items() if p.endswith("current/link")) == 20
        await registry.repository("r").tags.tag(
            "new", await registry.repository("r").tags.resolve("t0")
        )
        clock.now += DIR_TIMEOUT
        assert await k.read_file(f"{tags}/new/current/link")


async def test_on_a_store_that_lists_dearly_a_lookup_asks_for_the_one_name() -> None:
    """S3: a listing of a large tree is many paged requests where a stat is one, so a
    name looked up without a trusted listing is asked of the store alone."""
    inner = MemoryDriver()
    await _tagged_store(inner, 3)
    driver = CountingDriver(inner)
    driver.lists_cheaply = False
    async with mounted(driver) as k:
        assert await k.read_file("repositories/r/_manifests/tags/t1/current/link")
        assert driver.calls["listing"] == 0, driver.calls
        assert any(p.endswith("t1/current/link") for p in driver.stats)


async def test_a_finish_of_an_upload_the_mount_is_completing_waits_for_it() -> None:
    """A mount's start completes the finishes a kill cut short after their move; the
    same ``mv`` again, run meanwhile, was a second finish of the same upload beside
    the first. It now waits for the completion, then finds the upload gone (ENOENT),
    and the blob is linked once, its upload removed."""
    from layerfs.storage.maintenance import complete_interrupted_finishes

    inner = MemoryDriver()
    repo = Registry(inner).repository("r")
    upload = await repo.uploads.create()
    await repo.uploads.set_name(upload.id, "layer")
    await upload.write(b"x" * 1000)
    await upload.close()
    digest = Digest.of(b"x" * 1000)
    await inner.move(paths.upload_data("r", upload.id), paths.blob_data(digest))  # then killed
    assert await repo.uploads.interrupted_finish(upload.id) == digest
    driver = Pausing(inner, "put_content", lambda path: "/_layers/" in path)  # the link
    answers: list[int] = []
    async with mounted(driver) as k:

        async def mv() -> None:
            try:
                await k.rename(f"{UP}/layer", f"{UP}/{digest}")
                answers.append(0)
            except Errno as exc:
                answers.append(exc.errno)

        async with trio.open_nursery() as nursery:
            uploads = k.ops.state.uploads
            nursery.start_soon(complete_interrupted_finishes, k.ops.registry, uploads.claimed)
            await driver.reached.wait()  # the completion is linking the blob
            nursery.start_soon(mv)
            await trio.testing.wait_all_tasks_blocked()
            assert answers == []  # the finish waits for the completion
            driver.go.set()
        assert answers == [errno.ENOENT]
        assert await k.read_file(f"repositories/r/_layers/sha256/{digest.hex}/link")
        assert await k.listdir(UP) == []
    assert await repo.uploads.ids() == []


async def test_the_mount_s_purge_keeps_an_upload_opened_after_it_read_the_ages() -> None:
    """A mount's purge read the uploads' ages, found one abandoned, and deleted it
    though the mount had opened it meanwhile (``cat >> old-upload``): its writer lost
    the upload under it. The purge now claims each upload as it deletes it, and
    leaves one the mount has open."""
    inner = MemoryDriver()
    repo = Registry(inner).repository("r")
    upload = await repo.uploads.create()
    await repo.uploads.set_name(upload.id, "old")
    await upload.write(b"abc")
    await upload.close()
    driver = Pausing(inner, "get_contents")  # the purge reads the layer links
    async with mounted(driver) as k:
        uploads = k.ops.state.uploads
        async with trio.open_nursery() as nursery:
            later = datetime.now(UTC) + timedelta(days=30)  # every upload is old by then

            async def purge() -> None:
                await purge_uploads(k.ops.registry, timedelta(days=7), now=later,
                                    claim=uploads.claimed)  # fmt: skip

            nursery.start_soon(purge)
            await driver.reached.wait()  # the ages are read: "old" is doomed
            fh = await k.open(f"{UP}/old", os.O_WRONLY | os.O_APPEND)
            driver.go.set()
        await k.write(fh, 3, b"def")
        await k.close(fh)
        assert await k.read_file(f"{UP}/old") == b"abcdef"
