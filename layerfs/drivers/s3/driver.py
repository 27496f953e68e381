"""S3-compatible object storage, laid out as distribution's s3-aws driver lays it out,
so a registry and layerfs can share one bucket.

Keys are ``[rootdirectory/]docker/registry/v2/...``; directories are key prefixes
(listing.py). A writer is an S3 multipart upload on its key (multipart.py): ``close``
leaves the upload pending, ``commit`` completes it, ``cancel`` aborts it; this module
finds a pending upload again and reads, moves and deletes objects. Every request runs
in a worker thread within a deadline (requests.py).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import trio

from ...faults import crash_point
from ..base import (
    BackendRequestError,
    Descend,
    FileChangedError,
    FileInfo,
    FileWriter,
    InvalidOffsetError,
    PathNotFoundError,
    PendingWrite,
    Reader,
    StorageDriver,
    TreeEntry,
)
from .listing import Listing, level_infos
from .multipart import DEFAULT_PART, MIN_PART, MultipartWriter, parts_stamp
from .reader import RangeReader
from .requests import DEFAULT_TIMEOUT, NotModified, Requests
from .smallobjects import SmallObjects

COPY_SINGLE_MAX = 32 << 20  # CopyObject up to here, UploadPartCopy above
COPY_PART = 32 << 20
DELETE_BATCH = 1000
# A pending write found by a listing and gone when its parts are asked for (another
# writer completed or aborted it meanwhile) is looked for again, this many times.
VANISHED_RETRIES = 3

log = logging.getLogger(__name__)


class S3Driver(StorageDriver):
    name = "s3"
    reads_open_writes = False
    writes_in_place = False
    lists_cheaply = False

    def __init__(
        self,
        bucket: str,
        rootdirectory: str = "",
        *,
        endpoint: str | None = None,
        region: str | None = None,
        access_key: str | None = None,
        secret_key: str | None = None,
        profile: str | None = None,
        part_size: int = DEFAULT_PART,
        connections: int = 16,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        if part_size < MIN_PART:
            raise ValueError(f"part size {part_size} is below S3's minimum of {MIN_PART}")
        self.requests = Requests(
            endpoint=endpoint,
            region=region,
            access_key=access_key,
            secret_key=secret_key,
            profile=profile,
            connections=connections,
            timeout=timeout,
        )
        self.client, self.pool = self.requests.client, self.requests.pool
        self.bucket = bucket
        self.prefix = rootdirectory.strip("/") + "/" if rootdirectory.strip("/") else ""
        self.part_size = part_size
        self.root = f"s3://{bucket}/{self.prefix}"
        self.listing = Listing(self)
        self.bytes_read = 0  # object bytes fetched, for `layerfs status` and the bench
        self._small = SmallObjects()

    @property
    def write_batch(self) -> int:  # type: ignore[override]
        return self.part_size

    @property
    def location(self) -> str:
        return self.root

    def counters(self) -> dict[str, int]:
        return {"bytes-read": self.bytes_read}

    async def aclose(self) -> None:
        self.pool.shutdown(wait=False)

    # plumbing ----------------------------------------------------------------
    def key(self, path: str, allow_root: bool = False) -> str:
        """The object key of ``path`` (checked by the contract on the way in)."""
        return self.prefix + path.lstrip("/")

    async def head(self, key: str) -> dict | None:
        try:
            return await self.requests.call(self.client.head_object, Bucket=self.bucket, Key=key)
        except PathNotFoundError:
            return None

    async def abort(self, key: str, upload_id: str) -> None:
        """Abort a multipart upload; one that is gone already (completed or aborted by
        another client: NoSuchUpload) is what an abort wants."""
        try:
            await self.requests.call(
                self.client.abort_multipart_upload, Bucket=self.bucket, Key=key, UploadId=upload_id
            )
        except PathNotFoundError:
            log.info("s3: multipart upload %s of %s was gone already", upload_id, key)

    async def pending_upload(self, key: str) -> str | None:
        """The newest multipart upload in progress on exactly ``key``."""
        uploads = [u for u in await self._uploads_below(key) if u["Key"] == key]
        if not uploads:
            return None
        return max(uploads, key=lambda u: u["Initiated"])["UploadId"]

    async def _uploads_below(self, key: str) -> list[dict]:
        """Multipart uploads in progress at ``key`` or below ``key/`` (never ``keyX``),
        every page of them."""
        found: list[dict] = []
        markers: dict[str, str] = {}
        while True:
            resp = await self.requests.call(
                self.client.list_multipart_uploads, Bucket=self.bucket, Prefix=key, **markers
            )
            below = key.rstrip("/") + "/"
            found += [
                u for u in resp.get("Uploads", []) if u["Key"] == key or u["Key"].startswith(below)
            ]
            if not resp.get("IsTruncated"):
                return found
            markers = {
                "KeyMarker": resp["NextKeyMarker"],
                "UploadIdMarker": resp["NextUploadIdMarker"],
            }

    async def parts(self, key: str, upload_id: str) -> list[dict]:
        found: list[dict] = []
        marker = 0
        while True:
            resp = await self.requests.call(
                self.client.list_parts,
                Bucket=self.bucket,
                Key=key,
                UploadId=upload_id,
                PartNumberMarker=marker,
            )
            found += resp.get("Parts", [])
            if not resp.get("IsTruncated"):
                return found
            marker = resp["NextPartNumberMarker"]

    # content -----------------------------------------------------------------
    async def get_content(self, path: str) -> bytes:
        key = self.key(path)
        known = self._small.get(key)
        condition = {"IfNoneMatch": known[0]} if known else {}
        try:
            resp, data = await self.requests.call(
                self._get_whole, Bucket=self.bucket, Key=key, **condition
            )
        except NotModified:
            if known is None:
                raise BackendRequestError(f"s3: {key}: 304 to a GET without a condition") from None
            return known[1]
        except PathNotFoundError:
            self._small.forget(key)
            raise PathNotFoundError(path, self.name) from None
        self.bytes_read += len(data)
        self._small.remember(key, resp.get("ETag"), data)
        return data

    def _get_whole(self, **request: Any) -> tuple[dict, bytes]:
        """GET an object and read its body in the same worker thread (one hop)."""
        resp = self.client.get_object(**request)
        return resp, resp["Body"].read()

    async def put_content(self, path: str, content: bytes) -> None:
        key, content = self.key(path), bytes(content)
        self._small.forget(key)  # whatever happens to the put, the old bytes are stale
        resp = await self.requests.call(
            self.client.put_object, Bucket=self.bucket, Key=key, Body=content
        )
        self._small.remember(key, resp.get("ETag"), content)

    async def reader(self, path: str, offset: int = 0) -> Reader:
        if offset < 0:
            raise InvalidOffsetError(path, offset)
        await self._materialize(self.key(path))  # a pending upload holds the newest bytes
        return await self.committed_reader(path, offset)

    async def committed_size(self, path: str) -> int:
        head = await self.head(self.key(path))
        return 0 if head is None else head["ContentLength"]

    async def stamp(self, path: str) -> object:
        key = self.key(path)
        pending = await self.current_upload(key)
        if pending is not None:
            return parts_stamp(pending[0], pending[1])
        head = await self.head(key)
        if head is None:
            raise PathNotFoundError(path, self.name)
        return ("object", head["ETag"], head["ContentLength"])

    async def committed_stamp(self, path: str) -> object:
        head = await self.head(self.key(path))
        if head is None:
            raise PathNotFoundError(path, self.name)
        return ("object", head["ETag"], head["ContentLength"])

    async def stat_committed(self, path: str) -> FileInfo:
        head = await self.head(self.key(path))
        if head is None:
            raise PathNotFoundError(path, self.name)
        return FileInfo(path, head["ContentLength"], head["LastModified"], False)

    async def committed_reader(self, path: str, offset: int = 0) -> Reader:
        if offset < 0:
            raise InvalidOffsetError(path, offset)
        key = self.key(path)
        head = await self.head(key)
        if head is None:
            raise PathNotFoundError(path, self.name)
        return RangeReader(self, key, offset, head["ContentLength"])

    async def _materialize(self, key: str) -> bool:
        """Complete a pending upload so its bytes can be read; an append later starts
        a new upload from the object (see ``MultipartWriter.adopt_object``)."""
        pending = await self.current_upload(key)
        if pending is None:
            return False
        try:
            await MultipartWriter(self, key, *pending).complete()
        except FileChangedError:  # its writer completed it meanwhile: the object holds it
            log.info("s3: %s: a pending write was completed by its writer meanwhile", key)
        return True

    async def writer(self, path: str, append: bool = False) -> FileWriter:
        key = self.key(path)
        if append:
            pending = await self.current_upload(key, take_over=True)
            if pending is not None:
                return MultipartWriter(self, key, *pending)
            head = await self.head(key)
            if head is None:
                raise PathNotFoundError(path, self.name)
            resp = await self.requests.call(
                self.client.create_multipart_upload, Bucket=self.bucket, Key=key
            )
            writer = MultipartWriter(self, key, resp["UploadId"], [])
            await writer.adopt_object(head["ContentLength"])
            return writer
        await self._abort_pending(key)
        if await self.head(key) is not None:  # a truncate leaves no older bytes behind
            await self.requests.call(self.client.delete_object, Bucket=self.bucket, Key=key)
        resp = await self.requests.call(
            self.client.create_multipart_upload, Bucket=self.bucket, Key=key
        )
        return MultipartWriter(self, key, resp["UploadId"], [])

    async def current_upload(
        self, key: str, take_over: bool = False
    ) -> tuple[str, list[dict]] | None:
        """The pending upload that holds the key's bytes, with its parts, or None when
        the object does. An append completes the upload, starts another and adopts the
        object as its first part; a failure in between leaves an object and a newer
        upload with fewer bytes, which is garbage: the object holds the bytes, and a
        writer taking over aborts the garbage.

        Parts go up several at once, so a writer killed mid-way can leave part n+1
        without part n: the file is the parts before the first gap. A writer taking the
        upload over (``take_over``) first completes it with those alone, so no part
        after the gap can later pass for the bytes that follow them; a mere look
        changes nothing, since a writer elsewhere may still be filling the gap."""
        vanished = 0
        while True:
            upload_id = await self.pending_upload(key)
            if upload_id is None:
                return None
            try:
                parts = sorted(await self.parts(key, upload_id), key=lambda p: p["PartNumber"])
            except PathNotFoundError:  # completed or aborted by another writer since listed
                vanished += 1
                if vanished > VANISHED_RETRIES:
                    raise FileChangedError(
                        f"{key}: another writer keeps completing or replacing its pending write"
                    ) from None
                continue
            head = await self.head(key)
            if head is not None and sum(p["Size"] for p in parts) < head["ContentLength"]:
                if not take_over:
                    return None  # garbage the next writer aborts; a look changes nothing
                await self.abort(key, upload_id)
                continue
            whole = next((i for i, p in enumerate(parts) if p["PartNumber"] != i + 1), len(parts))
            if take_over and whole < len(parts):
                await self._cut_at_gap(key, upload_id, parts[:whole])
                return None
            return upload_id, parts[:whole]

    async def _cut_at_gap(self, key: str, upload_id: str, whole: list[dict]) -> None:
        log.warning(
            "s3: %s: parts after part %d were stored without it; the file ends there",
            key,
            len(whole),
        )
        await MultipartWriter(self, key, upload_id, whole).complete()  # none: an empty file

    async def _abort_pending(self, key: str) -> None:
        while (upload_id := await self.pending_upload(key)) is not None:
            await self.abort(key, upload_id)

    # metadata ----------------------------------------------------------------
    async def stat(self, path: str) -> FileInfo:
        key = self.key(path, allow_root=True)
        if path != "/":
            pending = await self.current_upload(key)
            if pending is not None:  # a writer closed but not committed: it has the bytes
                size = sum(p["Size"] for p in pending[1])
                when = max((p["LastModified"] for p in pending[1]), default=datetime.now(UTC))
                return FileInfo(path, size, when, False)
            head = await self.head(key)
            if head is not None:
                return FileInfo(path, head["ContentLength"], head["LastModified"], False)
        if path == "/" or await self.listing.holds_keys(key.rstrip("/") + "/"):
            return FileInfo(path, 0, datetime.now(UTC), True)
        raise PathNotFoundError(path, self.name)

    async def stat_dir(self, path: str) -> FileInfo:
        """A prefix holding a key is a directory (one listing); else what ``stat``
        says (a file, or nothing)."""
        key = self.key(path, allow_root=True)
        if path == "/" or await self.listing.holds_keys(key.rstrip("/") + "/"):
            return FileInfo(path, 0, datetime.now(UTC), True)
        return await self.stat(path)

    async def list(self, path: str) -> list[str]:
        files, dirs = await self.listing.level(path)
        return sorted({*files, *dirs})

    async def list_infos(self, path: str) -> list[FileInfo]:
        """One paginated listing gives every file's size and time (no HEAD each); a
        directory has no time of its own on S3, so it gets the listing's."""
        return level_infos(*await self.listing.level(path))

    list_tree_prunes = False  # every key below a prefix comes in the same pages

    async def list_tree(self, path: str, descend: Descend) -> dict[str, list[TreeEntry]]:
        """In parallel by prefix (``Listing.tree``); ``descend`` prunes nothing, since
        every key below a prefix comes in the same pages."""
        return await self.listing.tree(path)

    async def list_tree_infos(self, path: str, limit: int) -> dict[str, list[FileInfo]]:
        return await self.listing.tree_infos(path, limit)

    async def move(self, source: str, dest: str, expect: object | None = None) -> None:
        """A server-side copy of the object (never a pending write) and a delete. With
        ``expect``, every copy request is conditional on the object's ETag, so an
        object replaced meanwhile is not what lands at ``dest``."""
        src, dst = self.key(source), self.key(dest)
        head = await self.head(src)
        if head is None:
            raise PathNotFoundError(source, self.name)
        if expect is not None and ("object", head["ETag"], head["ContentLength"]) != expect:
            raise FileChangedError(f"{source}: changed since it was validated")
        condition = {"CopySourceIfMatch": head["ETag"]} if expect is not None else {}
        if head["ContentLength"] <= COPY_SINGLE_MAX:
            await self.requests.call(
                self.client.copy_object,
                Bucket=self.bucket,
                Key=dst,
                CopySource={"Bucket": self.bucket, "Key": src},
                **condition,
            )
        else:
            await self._multipart_copy(src, dst, head["ContentLength"], condition)
        crash_point("move:copied")
        await self.requests.call(self.client.delete_object, Bucket=self.bucket, Key=src)

    async def _multipart_copy(
        self, src: str, dst: str, size: int, condition: dict[str, str]
    ) -> None:
        """Server-side copy in parallel parts: nothing is downloaded."""
        resp = await self.requests.call(
            self.client.create_multipart_upload, Bucket=self.bucket, Key=dst
        )
        upload_id = resp["UploadId"]
        ranges = [
            (i + 1, start, min(start + COPY_PART, size) - 1)
            for i, start in enumerate(range(0, size, COPY_PART))
        ]
        etags: dict[int, str] = {}

        async def copy_part(number: int, first: int, last: int) -> None:
            part = await self.requests.call(
                self.client.upload_part_copy,
                Bucket=self.bucket,
                Key=dst,
                UploadId=upload_id,
                PartNumber=number,
                CopySource={"Bucket": self.bucket, "Key": src},
                CopySourceRange=f"bytes={first}-{last}",
                **condition,
            )
            etags[number] = part["CopyPartResult"]["ETag"]

        try:
            async with trio.open_nursery() as nursery:
                for number, first, last in ranges:
                    nursery.start_soon(copy_part, number, first, last)
            crash_point("move:copy-under-way")
            await self.requests.call(
                self.client.complete_multipart_upload,
                Bucket=self.bucket,
                Key=dst,
                UploadId=upload_id,
                MultipartUpload={
                    "Parts": [{"PartNumber": n, "ETag": etags[n]} for n in sorted(etags)]
                },
            )
        except BaseException:
            with trio.CancelScope(shield=True):
                await self.abort(dst, upload_id)
            raise

    async def delete(self, path: str) -> None:
        """The object at ``path`` and every key below ``path/`` (never ``pathX``)."""
        key = self.key(path)
        doomed = [key] if await self.head(key) is not None else []
        token = None
        while True:
            kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": key + "/"}
            if token:
                kwargs["ContinuationToken"] = token
            resp = await self.requests.call(self.client.list_objects_v2, **kwargs)
            doomed += [item["Key"] for item in resp.get("Contents", [])]
            if not resp.get("IsTruncated"):
                break
            token = resp["NextContinuationToken"]
        aborted = await self._abort_below(key)
        if not doomed and not aborted:
            raise PathNotFoundError(path, self.name)
        folders = {key + "/"} | {
            k[: i + 1] for k in doomed for i in range(len(key), len(k)) if k[i] == "/"
        }
        # deepest first: the objects, then the folder entries some servers keep
        doomed += sorted(folders, key=len, reverse=True)
        for i in range(0, len(doomed), DELETE_BATCH):
            batch = [{"Key": k} for k in doomed[i : i + DELETE_BATCH]]
            await self.requests.call(
                self.client.delete_objects,
                Bucket=self.bucket,
                Delete={"Objects": batch, "Quiet": True},
            )

    async def pending_writes(self, path: str) -> list[PendingWrite]:
        return [
            PendingWrite("/" + u["Key"][len(self.prefix) :], u["Initiated"], u["UploadId"])
            for u in await self._uploads_below(self.key(path, allow_root=True))
        ]

    async def abort_write(self, pending: PendingWrite) -> None:
        await self.abort(self.key(pending.path), pending.handle)

    async def _abort_below(self, key: str) -> int:
        """Abort pending multipart uploads at ``key`` or below it (no leaks on delete)."""
        uploads = await self._uploads_below(key)
        for upload in uploads:
            await self.abort(upload["Key"], upload["UploadId"])
        return len(uploads)
