"""Uploads: the seeds' layer tests ported to pytest-trio, and the invariants of the
upload and commit path (UPLOADS.md) checked on memory and filesystem drivers."""

from __future__ import annotations

import hashlib
import random
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from layerfs.drivers import FilesystemDriver, PathNotFoundError, StorageDriver
from layerfs.drivers.s3 import S3Driver
from layerfs.storage import (
    EMPTY_SHA256,
    BlobUnknownError,
    Digest,
    DigestMismatchError,
    Registry,
    SizeMismatchError,
    UploadClosedError,
    UploadUnknownError,
    paths,
)
from layerfs.storage.hashstate import ResumableSha256

from ..images import random_tar
from ..wrappers import CountingDriver, LaggingStatDriver

ROOT = "/docker/registry/v2"


async def upload_bytes(registry: Registry, name: str, data: bytes, piece: int = 65536) -> Digest:
    upload = await registry.repository(name).uploads.create()
    for i in range(0, len(data), piece):
        await upload.write(data[i : i + piece])
    info = await upload.finish(Digest.of(data))
    return info.digest


async def read_blob(registry: Registry, name: str, digest: Digest) -> bytes:
    async with await registry.repository(name).layers.open(digest) as reader:
        return await reader.read()


# --- ported from the seeds' layer_test.go -------------------------------------


async def test_simple_layer_upload(driver: StorageDriver) -> None:
    registry = Registry(driver)
    repo = registry.repository("foo/bar")
    layer = random_tar(random.Random(1))
    digest = Digest.of(layer)

    upload = await repo.uploads.create()
    await upload.cancel()
    with pytest.raises(UploadUnknownError):
        await repo.uploads.resume(upload.id)

    upload = await repo.uploads.create()  # start again
    await upload.write(layer)
    await upload.close()
    assert upload.size == len(layer)

    resumed = await repo.uploads.resume(upload.id)
    assert resumed.size == len(layer)
    info = await resumed.finish(digest)
    assert info.digest == digest
    assert info.size == len(layer)

    with pytest.raises(UploadUnknownError):
        await repo.uploads.resume(upload.id)
    assert await repo.layers.exists(digest)
    assert hashlib.sha256(await read_blob(registry, "foo/bar", digest)).hexdigest() == digest.hex


async def test_simple_layer_read_with_seek(driver: StorageDriver) -> None:
    registry = Registry(driver)
    layer = random_tar(random.Random(2), files=6)
    digest = Digest.of(layer)
    repo = registry.repository("foo/bar")
    with pytest.raises(BlobUnknownError):
        await repo.layers.open(digest)
    await upload_bytes(registry, "foo/bar", layer)

    async with await repo.layers.open(digest) as reader:
        assert reader.size == len(layer)
        first = await reader.read(1000)
        assert first == layer[:1000]
        middle = len(layer) // 2
        reader.seek(middle)
        assert reader.tell() == middle
        assert await reader.read() == layer[middle:]
        reader.seek(10)
        assert await reader.read(5) == layer[10:15]
        reader.seek(len(layer) + 5)
        assert await reader.read(10) == b""


async def test_zero_length_upload(driver: StorageDriver) -> None:
    registry = Registry(driver)
    repo = registry.repository("foo/empty")
    upload = await repo.uploads.create()
    info = await upload.finish(EMPTY_SHA256)
    assert info.size == 0
    assert await repo.layers.exists(EMPTY_SHA256)
    assert await driver.get_content(paths.blob_data(EMPTY_SHA256)) == b""
    assert await read_blob(registry, "foo/empty", EMPTY_SHA256) == b""


async def test_random_tar_layers(driver: StorageDriver) -> None:
    registry = Registry(driver)
    rng = random.Random(3)
    layers = [random_tar(rng, files=rng.randrange(1, 8)) for _ in range(5)]
    digests = [await upload_bytes(registry, "foo/tars", layer, 4099) for layer in layers]
    repo = registry.repository("foo/tars")
    assert sorted(digests) == await repo.layers.digests()
    for layer, digest in zip(layers, digests, strict=True):
        assert await read_blob(registry, "foo/tars", digest) == layer
        assert (await repo.layers.stat(digest)).size == len(layer)


# --- what is on disk, byte for byte ---------------------------------------------


async def test_layout_of_an_upload(driver: StorageDriver) -> None:
    repo = Registry(driver).repository("lay/out")
    upload = await repo.uploads.create()
    base = f"{ROOT}/repositories/lay/out/_uploads/{upload.id}"
    started = (await driver.get_content(f"{base}/startedat")).decode()
    assert started == upload.started_at.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert (await driver.stat(f"{base}/data")).size == 0
    await upload.write(b"a" * 1001)
    await upload.close()
    assert (await driver.stat(f"{base}/data")).size == 1001  # S3: a pending upload
    state = await driver.get_content(f"{base}/hashstates/sha256/1001")
    assert state == ResumableSha256(b"a" * 1001).marshal()

    resumed = await repo.uploads.resume(upload.id)
    await resumed.write(b"b" * 10)
    await resumed.close()
    assert await driver.list(f"{base}/hashstates/sha256") == [
        f"{base}/hashstates/sha256/1001",
        f"{base}/hashstates/sha256/1011",
    ]

    digest = Digest.of(b"a" * 1001 + b"b" * 10)
    await (await repo.uploads.resume(upload.id)).finish(digest)
    with pytest.raises(PathNotFoundError):
        await driver.stat(base)
    assert (
        await driver.get_content(f"{ROOT}/blobs/sha256/{digest.hex[:2]}/{digest.hex}/data")
        == b"a" * 1001 + b"b" * 10
    )
    link = f"{ROOT}/repositories/lay/out/_layers/sha256/{digest.hex}/link"
    assert await driver.get_content(link) == str(digest).encode()


async def test_cancel_removes_every_resource(driver: StorageDriver) -> None:
    repo = Registry(driver).repository("can/cel")
    upload = await repo.uploads.create()
    await upload.write(b"x" * 5000)
    await upload.close()
    upload = await repo.uploads.resume(upload.id)
    await upload.cancel()
    with pytest.raises(PathNotFoundError):
        await driver.stat(paths.upload_dir("can/cel", upload.id))
    with pytest.raises(UploadClosedError):
        await upload.write(b"more")
    with pytest.raises(UploadUnknownError):
        await repo.uploads.cancel(upload.id)


async def test_restart_truncates_and_drops_states(driver: StorageDriver) -> None:
    repo = Registry(driver).repository("re/start")
    upload = await repo.uploads.create()
    await upload.write(b"wrong content")
    await upload.close()
    upload = await repo.uploads.resume(upload.id)
    await upload.restart()
    await upload.write(b"right")
    await upload.close()
    states = paths.upload_hash_states("re/start", upload.id, "sha256")
    assert await driver.list(states) == [f"{states}/5"]
    info = await (await repo.uploads.resume(upload.id)).finish(Digest.of(b"right"))
    assert info.size == 5


# --- finishing ----------------------------------------------------------------------


async def test_wrong_digest_names_both_and_keeps_upload(driver: StorageDriver) -> None:
    registry = Registry(driver)
    repo = registry.repository("wrong/digest")
    data = b"the real content"
    upload = await repo.uploads.create()
    await upload.write(data)
    claimed = Digest.of(b"something else")
    with pytest.raises(DigestMismatchError) as info:
        await upload.finish(claimed)
    assert str(claimed) in str(info.value)
    assert str(Digest.of(data)) in str(info.value)
    assert not await registry.blobs.exists(claimed)
    assert not await registry.blobs.exists(Digest.of(data))
    assert await driver.get_content(paths.upload_data("wrong/digest", upload.id)) == data
    # the same upload is then finished with the right digest
    result = await upload.finish(Digest.of(data))
    assert result.size == len(data)
    assert await read_blob(registry, "wrong/digest", Digest.of(data)) == data


async def test_wrong_size_is_refused(driver: StorageDriver) -> None:
    repo = Registry(driver).repository("wrong/size")
    upload = await repo.uploads.create()
    await upload.write(b"12345")
    with pytest.raises(SizeMismatchError):
        await upload.finish(Digest.of(b"12345"), size=6)
    await upload.finish(Digest.of(b"12345"), size=5)


@pytest.mark.parametrize("algorithm", ["sha384", "sha512"])
async def test_finish_with_other_algorithm_writes_alias(
    driver: StorageDriver, algorithm: str
) -> None:
    registry = Registry(driver)
    repo = registry.repository("other/alg")
    data = random.Random(4).randbytes(300_000)
    upload = await repo.uploads.create()
    await upload.write(data)
    digest = Digest.of(data, algorithm)
    info = await upload.finish(digest)
    canonical = Digest.of(data)
    assert await driver.get_content(paths.blob_data(canonical)) == data
    for name in (canonical, digest):
        assert (
            await driver.get_content(paths.layer_link("other/alg", name)) == str(canonical).encode()
        )
    assert info.size == len(data)
    assert await repo.layers.exists(digest)
    assert await read_blob(registry, "other/alg", digest) == data


async def test_finish_onto_existing_blob_stores_nothing_new(driver: StorageDriver) -> None:
    registry = Registry(driver)
    data = b"shared layer" * 1000
    digest = await upload_bytes(registry, "first/repo", data)
    counting = CountingDriver(driver)
    registry2 = Registry(counting)
    upload = await registry2.repository("second/repo").uploads.create()
    await upload.write(data)
    await upload.finish(digest)
    assert counting.calls["move"] == 0
    assert await registry2.repository("second/repo").layers.exists(digest)
    with pytest.raises(PathNotFoundError):
        await driver.stat(paths.upload_dir("second/repo", upload.id))
    assert await driver.get_content(paths.blob_data(digest)) == data


async def test_same_content_finished_concurrently(driver: StorageDriver) -> None:
    registry = Registry(driver)
    data = random.Random(5).randbytes(2 << 20)
    digest = Digest.of(data)
    repo = registry.repository("con/current")
    uploads = [await repo.uploads.create() for _ in range(4)]
    for upload in uploads:
        await upload.write(data)
    async with trio.open_nursery() as nursery:
        for upload in uploads:
            nursery.start_soon(upload.finish, digest)
    assert await read_blob(registry, "con/current", digest) == data
    assert await repo.uploads.ids() == []


async def test_link_blob_from_another_repository(driver: StorageDriver) -> None:
    registry = Registry(driver)
    digest = await upload_bytes(registry, "src/repo", b"mountable")
    other = registry.repository("dst/repo")
    assert not await other.layers.exists(digest)
    await other.layers.link(digest)
    assert await read_blob(registry, "dst/repo", digest) == b"mountable"
    with pytest.raises(BlobUnknownError):
        await other.layers.link(Digest.of(b"never stored"))
    await other.layers.unlink(digest)
    assert not await other.layers.exists(digest)
    assert await registry.repository("src/repo").layers.exists(digest)
    with pytest.raises(BlobUnknownError):
        await other.layers.unlink(digest)


async def test_validation_retries_a_lagging_size(driver: StorageDriver) -> None:
    lagging = LaggingStatDriver(driver, "/data", lag=2)
    repo = Registry(lagging).repository("lag/ging")
    upload = await repo.uploads.create()
    await upload.write(b"eventually consistent")
    info = await upload.finish(Digest.of(b"eventually consistent"))
    assert info.size == len(b"eventually consistent")


async def test_validation_gives_up_after_retries(driver: StorageDriver) -> None:
    lagging = LaggingStatDriver(driver, "/data", lag=100)
    repo = Registry(lagging).repository("lag/ging")
    upload = await repo.uploads.create()
    await upload.write(b"never consistent")
    with pytest.raises(SizeMismatchError):
        await upload.finish(Digest.of(b"never consistent"))
    # nothing was moved or linked
    assert not await Registry(driver).blobs.exists(Digest.of(b"never consistent"))
    assert await driver.get_content(paths.upload_data("lag/ging", upload.id)) == (
        b"never consistent"
    )


async def test_resume_unknown_or_malformed_ids(driver: StorageDriver) -> None:
    repo = Registry(driver).repository("un/known")
    for upload_id in ("00000000-0000-0000-0000-000000000000", "not-a-uuid", "../../x", ""):
        with pytest.raises(UploadUnknownError):
            await repo.uploads.resume(upload_id)


async def test_finished_upload_takes_no_more_calls(driver: StorageDriver) -> None:
    repo = Registry(driver).repository("fin/ished")
    upload = await repo.uploads.create()
    await upload.write(b"x")
    await upload.finish(Digest.of(b"x"))
    with pytest.raises(UploadClosedError):
        await upload.write(b"y")
    with pytest.raises(UploadClosedError):
        await upload.finish(Digest.of(b"x"))


# --- resuming without reading the data back --------------------------------------

WRITER_PROCESS = """
import sys, trio
from layerfs.drivers import FilesystemDriver
from layerfs.storage import Registry

async def main(root, size):
    repo = Registry(FilesystemDriver(root)).repository("new/process")
    upload = await repo.uploads.create()
    block = bytes(range(256)) * 4096
    written = 0
    while written < size:
        piece = block[: min(len(block), size - written)]
        await upload.write(piece)
        written += len(piece)
    await upload.close()
    print(upload.id)

trio.run(main, sys.argv[1], int(sys.argv[2]))
"""


def expected_digest(size: int, tail: bytes = b"") -> Digest:
    """The digest of what WRITER_PROCESS writes, followed by ``tail``."""
    block = bytes(range(256)) * 4096
    h = hashlib.sha256()
    written = 0
    while written < size:
        piece = block[: min(len(block), size - written)]
        h.update(piece)
        written += len(piece)
    h.update(tail)
    return Digest("sha256", h.hexdigest())


def write_upload_in_new_process(root: Path, size: int) -> str:
    result = subprocess.run(
        [sys.executable, "-c", WRITER_PROCESS, str(root), str(size)],
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.strip()


async def test_resume_in_new_process_reads_no_data(store_dir: Path) -> None:
    size = 5_000_011
    upload_id = write_upload_in_new_process(store_dir, size)
    counting = CountingDriver(FilesystemDriver(str(store_dir)))
    repo = Registry(counting).repository("new/process")
    upload = await repo.uploads.resume(upload_id)
    await upload.write(b"tail")
    info = await upload.finish(expected_digest(size, b"tail"))
    assert info.size == size + 4
    assert counting.read_below("/data") == 0
    # what was read of the upload: its startedat, one 108-byte hash state and the
    # stamp recorded beside it (what that state vouches for)
    assert counting.read_below("/stamp") > 0
    assert counting.read_below("/_uploads/") == 20 + 108 + counting.read_below("/stamp")


async def test_resume_without_state_rehashes(store_dir: Path) -> None:
    size = 3_000_000
    upload_id = write_upload_in_new_process(store_dir, size)
    states = store_dir / f"docker/registry/v2/repositories/new/process/_uploads/{upload_id}"
    for state in (states / "hashstates/sha256").iterdir():
        state.unlink()
    counting = CountingDriver(FilesystemDriver(str(store_dir)))
    upload = await Registry(counting).repository("new/process").uploads.resume(upload_id)
    info = await upload.finish(expected_digest(size))
    assert info.size == size
    assert counting.read_below("/data") == size


async def test_resume_with_corrupt_state_rehashes(store_dir: Path) -> None:
    size = 1_000_000
    upload_id = write_upload_in_new_process(store_dir, size)
    state = (
        store_dir
        / f"docker/registry/v2/repositories/new/process/_uploads/{upload_id}"
        / f"hashstates/sha256/{size}"
    )
    state.write_bytes(b"not a hash state")
    upload = (
        await Registry(FilesystemDriver(str(store_dir)))
        .repository("new/process")
        .uploads.resume(upload_id)
    )
    assert (await upload.finish(expected_digest(size))).size == size


def test_startedat_is_rfc3339(store_dir: Path) -> None:
    upload_id = write_upload_in_new_process(store_dir, 10)
    started = (
        store_dir / f"docker/registry/v2/repositories/new/process/_uploads/{upload_id}/startedat"
    ).read_text()
    assert len(started) == 20 and started.endswith("Z") and started[10] == "T"


async def test_finish_after_a_crash_between_move_and_link(driver: StorageDriver) -> None:
    """What a crash right after finish's move leaves (UPLOADS.md, step 3): the blob in
    place, the upload dir without data. Finishing again links and cleans up."""
    registry = Registry(driver)
    repo = registry.repository("crash/move")
    data = b"moved before the crash"
    upload = await repo.uploads.create()
    await upload.write(data)
    await upload.close()
    writer = await driver.writer(paths.upload_data("crash/move", upload.id), append=True)
    await writer.commit()  # finish step 1 (on S3: complete the multipart upload)
    await writer.close()
    await driver.move(paths.upload_data("crash/move", upload.id), paths.blob_data(Digest.of(data)))
    resumed = await repo.uploads.resume(upload.id)
    assert resumed.size == 0
    info = await resumed.finish(Digest.of(data))
    assert info.size == len(data)
    assert await repo.layers.exists(Digest.of(data))
    assert await repo.uploads.ids() == []


async def test_finish_commits_the_data_of_a_closed_upload(driver: StorageDriver) -> None:
    """The data is made durable (the writer's commit: fsync, or S3's complete) before it
    is moved into blobs/, also when the upload was closed and resumed."""
    from .test_writebehind import FailingDriver

    commits: list[str] = []

    class Recording(FailingDriver):
        async def writer(self, path: str, append: bool = False):  # type: ignore[no-untyped-def]
            writer = await super().writer(path, append)
            inner_commit = writer.commit

            async def commit() -> None:
                commits.append(path)
                await inner_commit()

            writer.commit = commit  # type: ignore[method-assign]
            return writer

    repo = Registry(Recording(driver, budget=1 << 30)).repository("durable/data")
    upload = await repo.uploads.create()
    await upload.write(b"must reach the disk")
    await upload.close()
    await (await repo.uploads.resume(upload.id)).finish(Digest.of(b"must reach the disk"))
    assert commits == [paths.upload_data("durable/data", upload.id)]


async def test_a_stamp_never_vouches_for_another_writers_state(
    seaweedfs,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    """Two mounts append to one empty upload on S3 at once: two pending writes, and
    two hash states at one offset, the later one's kept. A read completes the newer
    write; the older one's stamp still matches its own pending write, but must not
    vouch for the other's state: else its finish takes the other's digest for its own
    bytes and stores a blob whose bytes do not match its name (found by
    test_two_mounts_appending_to_one_upload[s3])."""
    from ..conftest import make_driver

    first, second = make_driver("s3", tmp_path, seaweedfs), make_driver("s3", tmp_path, seaweedfs)
    assert isinstance(first, S3Driver)
    try:
        repo_a, repo_b = (Registry(d).repository("two/writers") for d in (first, second))
        created = await repo_a.uploads.create()
        await created.close()
        data = paths.upload_data("two/writers", created.id)
        assert [c async for c in first.read_all(data)] == []  # an empty object, as a read leaves
        a = await repo_a.uploads.resume(created.id)
        b = await repo_b.uploads.resume(created.id)
        async with trio.open_nursery() as nursery:  # both find no pending write: two
            nursery.start_soon(a.write, b"a" * 70_000)
            nursery.start_soon(b.write, b"b" * 70_000)
        assert len(await first.pending_writes(data)) == 2
        newest = await first.pending_upload(first.key(data))
        older, newer = (a, b) if b._writer.upload_id == newest else (b, a)  # type: ignore[union-attr]
        await older.close()
        await newer.close()  # its hash state replaces the older's at the same offset
        held = b"".join([c async for c in second.read_all(data)])  # completes the newer
        older_repo = repo_a if older is a else repo_b
        again = await older_repo.uploads.resume(created.id, stamp=older.stamp)
        try:
            info = await again.finish(Digest.of(held))
        except DigestMismatchError:
            return  # the finish completed the older write and hashed what it holds
        blob = await first.get_content(paths.blob_data(info.digest))
        assert Digest.of(blob) == info.digest, "a blob whose bytes do not match its name"
    finally:
        await first.aclose()
        await second.aclose()
