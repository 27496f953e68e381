"""What only the S3 driver does: multipart layout, server-side moves, no leaked
uploads. Runs against SeaweedFS."""

from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

from layerfs.drivers import (
    BackendRequestError,
    FileChangedError,
    PathNotFoundError,
    StorageDriverError,
)
from layerfs.drivers.s3 import (
    COPY_SINGLE_MAX,
    MIN_PART,
    SMALL_OBJECT,
    SMALL_OBJECTS_TOTAL,
    PartBody,
    S3Driver,
    SmallObjects,
)

from ..conftest import S3_BUCKET
from ..httpaux import Proxy
from ..mounts import LAYERFS
from ..seaweed import SeaweedFS


def make(seaweedfs: SeaweedFS, tmp_path: Path, endpoint: str | None = None) -> S3Driver:
    return S3Driver(
        S3_BUCKET,
        f"s3t/{tmp_path.name}",
        endpoint=endpoint or seaweedfs.endpoint,
        access_key="any",
        secret_key="any",
        part_size=MIN_PART,
    )


@contextlib.contextmanager
def behind_proxy(
    seaweedfs: SeaweedFS, tmp_path: Path, **faults: Any
) -> Iterator[tuple[S3Driver, Proxy]]:
    """A driver whose requests pass through a Proxy, which can drop or refuse them."""
    proxy = Proxy(seaweedfs.endpoint.removeprefix("http://"), **faults)
    try:
        yield make(seaweedfs, tmp_path, endpoint=f"http://{proxy.host}"), proxy
    finally:
        proxy.stop()


async def test_writer_is_a_multipart_upload(seaweedfs: SeaweedFS, tmp_path: Path) -> None:
    driver = make(seaweedfs, tmp_path)
    key = driver.key("/u/data")
    writer = await driver.writer("/u/data")
    await writer.write(b"a" * (MIN_PART + 3))
    await writer.close()
    upload_id = await driver.pending_upload(key)
    assert upload_id is not None
    parts = await driver.parts(key, upload_id)
    assert [p["Size"] for p in parts] == [MIN_PART, 3]
    # a short last part followed by more data: completed, restarted, merged
    writer = await driver.writer("/u/data", append=True)
    assert writer.size == MIN_PART + 3
    await writer.write(b"b" * 10)
    await writer.commit()
    await writer.close()
    assert await driver.get_content("/u/data") == b"a" * (MIN_PART + 3) + b"b" * 10
    assert await driver.pending_upload(key) is None


async def test_large_move_is_a_server_side_copy(seaweedfs: SeaweedFS, tmp_path: Path) -> None:
    driver = make(seaweedfs, tmp_path)
    size = COPY_SINGLE_MAX + (3 << 20)
    block = hashlib.sha256(b"block").digest() * (1 << 15)  # 1 MiB
    writer = await driver.writer("/src/data")
    for _ in range(size // len(block)):
        await writer.write(block)
    await writer.commit()
    await writer.close()
    calls: list[str] = []
    original = driver.client.get_object

    def spy(**kwargs):  # type: ignore[no-untyped-def]
        calls.append(kwargs["Key"])
        return original(**kwargs)

    driver.client.get_object = spy  # type: ignore[method-assign]
    await driver.move("/src/data", "/dst/data")
    assert calls == []  # nothing was downloaded
    driver.client.get_object = original  # type: ignore[method-assign]
    assert (await driver.stat("/dst/data")).size == size
    got = hashlib.sha256()
    async for chunk in driver.read_all("/dst/data"):
        got.update(chunk)
    assert got.hexdigest() == hashlib.sha256(block * (size // len(block))).hexdigest()


async def test_delete_aborts_pending_uploads(seaweedfs: SeaweedFS, tmp_path: Path) -> None:
    driver = make(seaweedfs, tmp_path)
    writer = await driver.writer("/up/x/data")
    await writer.write(b"pending")
    await writer.close()
    await driver.put_content("/up/x/startedat", b"now")
    await driver.put_content("/upx/keep", b"sibling")
    await driver.delete("/up")
    assert await driver.pending_upload(driver.key("/up/x/data")) is None
    assert await driver.list("/") == ["/upx"]


async def test_small_objects_are_revalidated_not_fetched_again(
    seaweedfs: SeaweedFS, tmp_path: Path
) -> None:
    """What the driver put or got is read again with If-None-Match: no body while the
    object is unchanged, the new bytes when another client changed it, and not found
    when another client deleted it."""
    driver = make(seaweedfs, tmp_path)
    other = seaweedfs.client()
    await driver.put_content("/a/link", b"sha256:" + b"1" * 64)
    conditions: list[str | None] = []
    original = driver.client.get_object

    def spy(**kwargs):  # type: ignore[no-untyped-def]
        conditions.append(kwargs.get("IfNoneMatch"))
        return original(**kwargs)

    driver.client.get_object = spy  # type: ignore[method-assign]
    assert await driver.get_content("/a/link") == b"sha256:" + b"1" * 64
    assert driver.bytes_read == 0 and conditions[-1] is not None

    other.put_object(Bucket=S3_BUCKET, Key=driver.key("/a/link"), Body=b"sha256:" + b"2" * 64)
    assert await driver.get_content("/a/link") == b"sha256:" + b"2" * 64
    assert driver.bytes_read == 71
    assert await driver.get_content("/a/link") == b"sha256:" + b"2" * 64  # got, so known
    assert driver.bytes_read == 71

    other.delete_object(Bucket=S3_BUCKET, Key=driver.key("/a/link"))
    with pytest.raises(PathNotFoundError):  # not served from memory
        await driver.get_content("/a/link")
    await driver.put_content("/a/link", b"again")
    assert await driver.get_content("/a/link") == b"again"

    big = b"x" * (SMALL_OBJECT + 1)  # too big to keep: fetched in full every time
    await driver.put_content("/a/big", big)
    assert await driver.get_content("/a/big") == big
    assert conditions[-1] is None and driver.bytes_read == 71 + len(big)


def test_part_body_reads_across_pieces_and_rewinds() -> None:
    """What botocore does with a body: read it in blocks to sign it, rewind, read it
    in other blocks to send it, and rewind again for a retry."""
    pieces = [b"abc", b"", memoryview(b"defgh")[1:], b"ij" * 10]
    whole = b"abc" + b"efgh" + b"ij" * 10
    body = PartBody(pieces)
    assert len(body) == len(whole) and body.seekable() and body.readable()
    for block in (1, 2, 5, 1 << 20):
        assert body.seek(0) == 0
        blocks = list(iter(lambda size=block: bytes(body.read(size)), b""))
        assert b"".join(blocks) == whole
        assert all(0 < len(b) <= block for b in blocks)
        assert body.tell() == len(whole) and body.read(1) == b""
    assert body.seek(5) == 5 and bytes(body.read(3)) == b"gh"  # short: a piece ends there
    assert bytes(body.read(3)) == b"iji"
    assert body.seek(-4, 2) == len(whole) - 4 and bytes(body.read()) == whole[-4:]
    assert body.seek(2, 0) == 2 and body.seek(3, 1) == 5 and bytes(body.read(100)) == b"gh"
    assert len(PartBody([])) == 0 and PartBody([]).read(10) == b""


async def test_a_part_cut_off_in_transit_is_sent_again_whole(
    seaweedfs: SeaweedFS, tmp_path: Path
) -> None:
    """botocore retries a part whose connection dropped halfway: it rewinds the part's
    body, signs it again and sends it whole (a body that could not rewind would be
    refused for its checksum, or would store the wrong bytes)."""
    with behind_proxy(seaweedfs, tmp_path, drop="&partNumber=2") as (driver, proxy):
        pieces = [hashlib.sha256(bytes([i])).digest() * (MIN_PART // 32 // 4) for i in range(10)]
        writer = await driver.writer("/cut/data")
        await writer.write_pieces(pieces[:5])
        await writer.write_pieces(pieces[5:])
        await writer.commit()
        await writer.close()
        assert await driver.get_content("/cut/data") == b"".join(pieces)
        part_puts = [p for m, p, _ in proxy.requests if m == "PUT" and p.endswith("&partNumber=2")]
        assert len(part_puts) == 2  # dropped once, then sent again


@pytest.mark.parametrize(
    "status, code", [(503, "SlowDown"), (500, "InternalError"), (502, "BadGateway")]
)
async def test_throttling_and_server_errors_are_retried(
    seaweedfs: SeaweedFS, tmp_path: Path, status: int, code: str
) -> None:
    """Two refusals in a row of every request to one directory (small puts, parts,
    the completion, reads): each is retried with backoff and the data arrives whole."""
    with behind_proxy(seaweedfs, tmp_path, fail=("/busy/", status, code, 2)) as (driver, proxy):
        await driver.put_content("/busy/small", b"link")
        big = hashlib.sha256(b"big").digest() * (3 * MIN_PART // 32)
        writer = await driver.writer("/busy/big")
        await writer.write(big)
        await writer.commit()
        await writer.close()
        proxy.fail = ("/busy/", status, code, 2)
        assert await driver.get_content("/busy/small") == b"link"
        proxy.fail = ("/busy/", status, code, 2)
        assert await driver.get_content("/busy/big") == big
        assert sum("/busy/small" in p for m, p, _ in proxy.requests if m == "PUT") == 3


async def test_list_follows_every_page_and_delete_goes_in_batches(
    seaweedfs: SeaweedFS, tmp_path: Path
) -> None:
    """1,100 files and 30 directories in one directory: more than one page of a
    listing and more than one DeleteObjects batch; a sibling whose name extends the
    deleted one stays."""
    with behind_proxy(seaweedfs, tmp_path) as (driver, proxy):
        names = [f"/many/f{i:04}" for i in range(1100)] + [f"/many/d{i}/x" for i in range(30)]
        limit = trio.CapacityLimiter(16)

        async def put(name: str) -> None:
            async with limit:
                await driver.put_content(name, b"x")

        async with trio.open_nursery() as nursery:
            for name in [*names, "/manyother/keep"]:
                nursery.start_soon(put, name)
        listed = await driver.list("/many")
        assert sorted(listed) == sorted(n.removesuffix("/x") for n in names)
        pages = [p for m, p, _ in proxy.requests if m == "GET" and "continuation-token" in p]
        assert pages  # the listing went past its first page
        await driver.delete("/many")
        batches = [p for m, p, _ in proxy.requests if m == "POST" and "delete" in p]
        assert len(batches) >= 2
        assert await driver.list("/") == ["/manyother"]
        with pytest.raises(PathNotFoundError):
            await driver.list("/many")


def test_small_objects_stay_within_their_budget() -> None:
    known = SmallObjects()
    piece = b"s" * SMALL_OBJECT
    count = SMALL_OBJECTS_TOTAL // SMALL_OBJECT
    for i in range(count + 3):
        known.remember(f"k{i}", f'"{i}"', piece)
    assert known.get("k0") is None and known.get("k2") is None  # the oldest went
    assert known.get(f"k{count + 2}") == (f'"{count + 2}"', piece)
    assert sum(known.get(f"k{i}") is not None for i in range(count + 3)) == count
    known.remember("k3", None, b"no etag")  # nothing to revalidate with: not kept
    assert known.get("k3") is None


async def test_a_part_missing_in_the_middle_ends_the_file(
    seaweedfs: SeaweedFS, tmp_path: Path
) -> None:
    """Parts go up several at once; a writer killed mid-way can leave parts 1, 2 and 4.
    The file is parts 1 and 2: part 4 must never be read as the bytes after part 2,
    even once part 3 is written again by the writer that takes the upload over."""
    driver = make(seaweedfs, tmp_path)
    key = driver.key("/u/data")
    client = seaweedfs.client()
    upload_id = client.create_multipart_upload(Bucket=S3_BUCKET, Key=key)["UploadId"]
    blocks = {n: bytes([n]) * MIN_PART for n in (1, 2, 4)}
    for number, block in blocks.items():
        client.upload_part(
            Bucket=S3_BUCKET, Key=key, UploadId=upload_id, PartNumber=number, Body=block
        )
    assert (await driver.stat("/u/data")).size == 2 * MIN_PART
    # a look changes nothing: a writer elsewhere may still be filling part 3
    assert len(await driver.parts(key, upload_id)) == 3
    writer = await driver.writer("/u/data", append=True)  # takes the upload over
    assert writer.size == 2 * MIN_PART
    await writer.write(b"\x03" * 10)  # a short part 3, then close: part 4 must not follow
    await writer.close()
    assert (await driver.stat("/u/data")).size == 2 * MIN_PART + 10
    read = b"".join([chunk async for chunk in driver.read_all("/u/data")])
    assert read == blocks[1] + blocks[2] + b"\x03" * 10


async def test_refusals_are_driver_errors(seaweedfs: SeaweedFS, tmp_path: Path) -> None:
    """A 403 or a bucket that does not exist is the driver's own error, never
    botocore's ClientError (which the mount and fsck would show as a traceback)."""
    with behind_proxy(seaweedfs, tmp_path, fail=("/denied", 403, "AccessDenied", 10)) as (
        driver,
        _,
    ):
        for call in (
            driver.get_content("/denied"),
            driver.put_content("/denied", b"x"),
            driver.stat("/denied"),
        ):
            with pytest.raises(BackendRequestError, match="AccessDenied|403"):
                await call
    missing = S3Driver(
        "no-such-bucket", "", endpoint=seaweedfs.endpoint, access_key="any", secret_key="any"
    )
    with pytest.raises(StorageDriverError) as info:
        await missing.put_content("/x", b"x")
    assert not isinstance(info.value, PathNotFoundError)


async def test_aborting_an_upload_that_is_gone_is_no_error(
    seaweedfs: SeaweedFS, tmp_path: Path
) -> None:
    """NoSuchUpload from an abort (another client completed or aborted it first)."""
    driver = make(seaweedfs, tmp_path)
    writer = await driver.writer("/gone/data")
    await writer.write(b"a" * 10)
    await writer.close()
    (pending,) = await driver.pending_writes("/gone")
    await driver.abort_write(pending)
    await driver.abort_write(pending)  # gone already: nothing to do, nothing raised
    assert await driver.pending_writes("/gone") == []


def test_fsck_of_a_refusing_endpoint_fails_with_a_message(
    seaweedfs: SeaweedFS, tmp_path: Path
) -> None:
    proxy = Proxy(seaweedfs.endpoint.removeprefix("http://"), fail=("/", 403, "AccessDenied", 1000))
    try:
        env = {**os.environ, **seaweedfs.aws_env(), "AWS_ENDPOINT_URL": f"http://{proxy.host}"}
        result = subprocess.run(
            [LAYERFS, "fsck", f"s3://{S3_BUCKET}/denied"],
            capture_output=True, text=True, env=env, timeout=120,
        )  # fmt: skip
    finally:
        proxy.stop()
    assert result.returncode == 8, result.stdout + result.stderr
    assert "AccessDenied" in result.stderr and "Traceback" not in result.stderr


async def test_a_pending_write_completed_by_another_writer_meanwhile_is_looked_for_again(
    seaweedfs: SeaweedFS, tmp_path: Path
) -> None:
    """Two mounts opening one upload whose bytes are a pending write: the second lists
    the write, and the first completes it (a read, a take-over) before the second asks
    for its parts, which S3 answers NoSuchUpload. That was ENOENT for an upload that
    exists; the second now looks again and finds the object (or, should the write keep
    vanishing, refuses with FileChangedError: EBUSY)."""
    first, second = make(seaweedfs, tmp_path), make(seaweedfs, tmp_path)
    writer = await first.writer("/u/data")
    await writer.write(b"a" * 10)
    await writer.close()  # pending: the bytes are an uncompleted multipart upload
    asked = second.parts

    async def completed_meanwhile(key: str, upload_id: str) -> list[dict]:
        reader = await first.reader("/u/data")  # a read completes the pending write
        await reader.aclose()
        return await asked(key, upload_id)

    second.parts = completed_meanwhile  # type: ignore[method-assign]
    assert (await second.stat("/u/data")).size == 10
    second.parts = asked  # type: ignore[method-assign]
    writer = await first.writer("/u/data", append=True)  # pending again
    await writer.write(b"b" * 5)
    await writer.close()
    second.parts = completed_meanwhile  # type: ignore[method-assign]
    appending = await second.writer("/u/data", append=True)
    assert appending.size == 15
    await appending.write(b"c")
    await appending.commit()
    await appending.close()
    assert await second.get_content("/u/data") == b"a" * 10 + b"b" * 5 + b"c"

    async def always_gone(key: str, upload_id: str) -> list[dict]:
        raise PathNotFoundError(key, "s3")

    writer = await first.writer("/u/data", append=True)
    await writer.write(b"d")
    await writer.close()
    second.parts = always_gone  # type: ignore[method-assign]
    with pytest.raises(FileChangedError):
        await second.writer("/u/data", append=True)


async def test_a_writer_whose_write_another_completed_is_refused_not_missing(
    seaweedfs: SeaweedFS, tmp_path: Path
) -> None:
    """A read on another mount completes a pending write; the writer still appending
    to it then meets NoSuchUpload. Its bytes can no longer follow its own: that is
    FileChangedError (EBUSY), not a missing path (ENOENT), and what it had written
    stays readable. A write whose file another mount removed meets the same answer
    from S3, and there the path is missing: ENOENT."""
    writer_driver, reader_driver = make(seaweedfs, tmp_path), make(seaweedfs, tmp_path)
    writer = await writer_driver.writer("/u/data")
    await writer.write(b"a" * MIN_PART)
    await writer.write(b"b")  # part 1 sent, one byte buffered
    key = reader_driver.key("/u/data")
    with trio.fail_after(30):  # until part 1 has arrived
        while not (pending := await reader_driver.current_upload(key)) or not pending[1]:
            await trio.sleep(0.05)
    reader = await reader_driver.reader("/u/data")  # completes part 1 into the object
    await reader.aclose()
    with pytest.raises(FileChangedError):
        await writer.close()  # part 2 goes to an upload that is no more
    assert await reader_driver.get_content("/u/data") == b"a" * MIN_PART
    # removed by another (rm on another mount): the missing path it is, ENOENT
    writer = await writer_driver.writer("/u/data")
    await writer.write(b"c" * MIN_PART)
    await writer.write(b"d")
    with trio.fail_after(30):
        while not (pending := await reader_driver.current_upload(key)) or not pending[1]:
            await trio.sleep(0.05)
    await reader_driver.delete("/u")
    with pytest.raises(PathNotFoundError):
        await writer.close()
