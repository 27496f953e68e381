"""S3-compatible object storage, laid out as distribution's s3-aws driver lays it out,
so a registry and layerfs can share one bucket.

Keys are ``[rootdirectory/]docker/registry/v2/...``; directories are key prefixes. A
writer is an S3 multipart upload on its key: ``close`` leaves the upload pending (its
size is the sum of its parts, found again with ListMultipartUploads and ListParts),
``commit`` completes it, ``cancel`` aborts it. boto3 is blocking, so every call runs in
a worker thread with explicit timeouts and botocore's standard retries.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from datetime import UTC, datetime
from typing import Any, TypeVar

import boto3
import trio
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, ProfileNotFound
from botocore.utils import parse_timestamp

from ..faults import crash_point
from .base import (
    LISTINGS_AT_ONCE,
    BackendRequestError,
    BackendUnavailableError,
    Descend,
    FileChangedError,
    FileInfo,
    FileWriter,
    InvalidOffsetError,
    PathNotFoundError,
    PendingWrite,
    Reader,
    StorageDriver,
    StorageDriverError,
    TreeEntry,
    WriterClosedError,
    check_path,
)
from .deadline import call_deadline

MIN_PART = 5 << 20  # S3's smallest part but the last
DEFAULT_PART = 10 << 20
COPY_SINGLE_MAX = 32 << 20  # CopyObject up to here, UploadPartCopy above
COPY_PART = 32 << 20
READ_CHUNK = 8 << 20
PARTS_IN_FLIGHT = 4
READ_AHEAD = 4
DELETE_BATCH = 1000
SMALL_OBJECT = 64 << 10  # get_content remembers objects up to this size...
SMALL_OBJECTS_TOTAL = 4 << 20  # ...and this many bytes of them in all
FLAT_PAGES = 1  # list_tree_infos: pages of keys tried before listing level by level
FLAT_CHECK_FROM = 8  # children of a listing checked for keys by one listing of them all
FLAT_CHECK_KEYS = 8  # keys a child is given in that listing before it is checked alone
SPLIT_LEVELS = 3  # list_tree: levels listed with a delimiter to find prefixes to list at once
NOT_FOUND = {"NoSuchKey", "404", "NotFound", "NoSuchUpload"}
# Seconds one request may take in all, its retries included: a FUSE request on a
# store that stopped answering gets EIO within about this long (-o timeout=).
DEFAULT_TIMEOUT = 30.0

T = TypeVar("T")
log = logging.getLogger(__name__)


class _SmallObjects:
    """Small objects this driver put or got, with their ETags, newest last. A read
    revalidates with a conditional GET (``If-None-Match``): the server answers 304
    without a body while the object is unchanged, so link files, hash states and
    ``startedat`` are read again without their bytes, and a change made by any other
    client (or a delete) is still seen, because the server compares."""

    def __init__(self) -> None:
        self._entries: OrderedDict[str, tuple[str, bytes]] = OrderedDict()
        self._total = 0

    def get(self, key: str) -> tuple[str, bytes] | None:
        found = self._entries.get(key)
        if found is not None:
            self._entries.move_to_end(key)
        return found

    def remember(self, key: str, etag: str | None, content: bytes) -> None:
        self.forget(key)
        if not etag or len(content) > SMALL_OBJECT:
            return
        self._entries[key] = (etag, content)
        self._total += len(content)
        while self._total > SMALL_OBJECTS_TOTAL:
            _, (_, dropped) = self._entries.popitem(last=False)
            self._total -= len(dropped)

    def forget(self, key: str) -> None:
        found = self._entries.pop(key, None)
        if found is not None:
            self._total -= len(found[1])


def _timestamp(value: str) -> datetime:
    """A listing's ISO 8601 time read by the standard library: botocore's general
    parser (dateutil) costs a sixth of a big listing's time. Other forms (an HTTP
    date of a HEAD) go to botocore's."""
    if isinstance(value, str) and "T" in value:
        with contextlib.suppress(ValueError):
            return datetime.fromisoformat(value)
    return parse_timestamp(value)


class _NotModified(StorageDriverError):
    """A conditional GET found the object unchanged (never leaves the driver)."""


def _driver_error(exc: ClientError, key: str) -> StorageDriverError:
    """The driver's own error for what S3 answered: botocore's never leave the driver
    (the filesystem and memory drivers raise nothing else either)."""
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    code = exc.response.get("Error", {}).get("Code", "")
    if status == 304:
        return _NotModified(key)
    if code in NOT_FOUND:
        return PathNotFoundError(key, "s3")
    if status == 412 or code == "PreconditionFailed":  # a conditional copy's source changed
        return FileChangedError(f"s3: {key}: changed since it was validated")
    if status >= 500 or status == 429:
        return BackendUnavailableError(f"s3: {exc}")
    return BackendRequestError(f"s3: {exc}")


class S3Driver(StorageDriver):
    name = "s3"
    reads_open_writes = False
    writes_in_place = False

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
        if timeout <= 0:
            raise ValueError(f"timeout {timeout} is not a positive number of seconds")
        self.timeout = timeout
        if part_size < MIN_PART:
            raise ValueError(f"part size {part_size} is below S3's minimum of {MIN_PART}")
        self.bucket = bucket
        self.prefix = rootdirectory.strip("/") + "/" if rootdirectory.strip("/") else ""
        self.part_size = part_size
        self.root = f"s3://{bucket}/{self.prefix}"
        config = Config(
            # S3-compatible servers reject boto3's default CRC checksums
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            max_pool_connections=connections,
            connect_timeout=min(5.0, timeout),
            read_timeout=timeout,
            retries={"mode": "standard", "max_attempts": 5},
            s3={"addressing_style": "path"},
        )
        try:
            session = boto3.session.Session(profile_name=profile)
        except ProfileNotFound as exc:
            raise ValueError(f"{exc} (AWS_CONFIG_FILE, AWS_SHARED_CREDENTIALS_FILE)") from None
        parsers = session._session.get_component("response_parser_factory")
        parsers.set_parser_defaults(timestamp_parser=_timestamp)
        self.client = session.client(
            "s3",
            endpoint_url=endpoint,
            region_name=region or "us-east-1",
            aws_access_key_id=access_key,
            aws_secret_access_key=secret_key,
            config=config,
        )
        self.endpoint = self.client.meta.endpoint_url  # as given, or from AWS_ENDPOINT_URL
        self._threads = trio.CapacityLimiter(connections)
        self.pool = ThreadPoolExecutor(connections, thread_name_prefix="s3-part")
        self.bytes_read = 0  # object bytes fetched, for `layerfs status` and the bench
        self._silent_until = -math.inf  # calls fail at once until then (no_answer)
        self._small = _SmallObjects()

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
        check_path(path, self.name, allow_root)
        return self.prefix + path.lstrip("/")

    async def call(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """Run one blocking client call in a worker thread; a backend that keeps
        failing after botocore's retries becomes BackendUnavailableError."""

        def run() -> T:
            return fn(*args, **kwargs)

        self._check_answering()
        try:
            # A cancelled call (the deadline, or an unmount giving up on a store that
            # does not answer) returns at once; its thread ends on its own (botocore's
            # timeouts), its answer unread.
            with trio.move_on_at(call_deadline(self.timeout)):
                return await trio.to_thread.run_sync(
                    run, limiter=self._threads, abandon_on_cancel=True
                )
            raise self.no_answer()
        except ClientError as exc:
            raise _driver_error(exc, kwargs.get("Key", kwargs.get("Prefix", ""))) from exc
        except BotoCoreError as exc:
            raise BackendUnavailableError(f"s3: {exc}") from exc

    def no_answer(self) -> BackendUnavailableError:
        """The error of a call the store did not answer in time. For the next
        ``timeout`` seconds calls fail at once (``_check_answering``): a program's
        next request (the kernel looks a name up again after a failed revalidation)
        is not made to wait another whole timeout on a store that has stopped."""
        self._silent_until = trio.current_time() + self.timeout
        return BackendUnavailableError(
            f"s3: {self.endpoint} did not answer within {self.timeout:g} s"
        )

    def _check_answering(self) -> None:
        if trio.current_time() < self._silent_until:
            raise BackendUnavailableError(
                f"s3: {self.endpoint} did not answer within {self.timeout:g} s a moment ago;"
                " asking again shortly"
            )

    async def wait(self, future: Future[T]) -> T:
        """The result of a call started in the pool, within the deadline."""
        self._check_answering()
        left = max(0.0, call_deadline(self.timeout) - trio.current_time())
        try:
            return await trio.to_thread.run_sync(future.result, left, abandon_on_cancel=True)
        except FutureTimeout:
            raise self.no_answer() from None

    async def _head(self, key: str) -> dict | None:
        try:
            return await self.call(self.client.head_object, Bucket=self.bucket, Key=key)
        except PathNotFoundError:
            return None

    async def abort(self, key: str, upload_id: str) -> None:
        """Abort a multipart upload; one that is gone already (completed or aborted by
        another client: NoSuchUpload) is what an abort wants."""
        try:
            await self.call(
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
            resp = await self.call(
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
            resp = await self.call(
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
            resp, data = await self.call(self._get_whole, Bucket=self.bucket, Key=key, **condition)
        except _NotModified:
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
        resp = await self.call(self.client.put_object, Bucket=self.bucket, Key=key, Body=content)
        self._small.remember(key, resp.get("ETag"), content)

    async def reader(self, path: str, offset: int = 0) -> Reader:
        if offset < 0:
            raise InvalidOffsetError(path, offset)
        await self._materialize(self.key(path))  # a pending upload holds the newest bytes
        return await self.committed_reader(path, offset)

    async def committed_size(self, path: str) -> int:
        head = await self._head(self.key(path))
        return 0 if head is None else head["ContentLength"]

    async def stamp(self, path: str) -> object:
        key = self.key(path)
        pending = await self.current_upload(key)
        if pending is not None:
            return _parts_stamp(pending[0], pending[1])
        head = await self._head(key)
        if head is None:
            raise PathNotFoundError(path, self.name)
        return ("object", head["ETag"], head["ContentLength"])

    async def committed_stamp(self, path: str) -> object:
        head = await self._head(self.key(path))
        if head is None:
            raise PathNotFoundError(path, self.name)
        return ("object", head["ETag"], head["ContentLength"])

    async def stat_committed(self, path: str) -> FileInfo:
        head = await self._head(self.key(path))
        if head is None:
            raise PathNotFoundError(path, self.name)
        return FileInfo(path, head["ContentLength"], head["LastModified"], False)

    async def committed_reader(self, path: str, offset: int = 0) -> Reader:
        if offset < 0:
            raise InvalidOffsetError(path, offset)
        key = self.key(path)
        head = await self._head(key)
        if head is None:
            raise PathNotFoundError(path, self.name)
        return _RangeReader(self, key, offset, head["ContentLength"])

    async def _materialize(self, key: str) -> bool:
        """Complete a pending upload so its bytes can be read; an append later starts
        a new upload from the object (see ``_MultipartWriter.adopt_object``)."""
        pending = await self.current_upload(key)
        if pending is None:
            return False
        await _MultipartWriter(self, key, *pending).complete()
        return True

    async def writer(self, path: str, append: bool = False) -> FileWriter:
        key = self.key(path)
        if append:
            pending = await self.current_upload(key, take_over=True)
            if pending is not None:
                return _MultipartWriter(self, key, *pending)
            head = await self._head(key)
            if head is None:
                raise PathNotFoundError(path, self.name)
            resp = await self.call(self.client.create_multipart_upload, Bucket=self.bucket, Key=key)
            writer = _MultipartWriter(self, key, resp["UploadId"], [])
            await writer.adopt_object(head["ContentLength"])
            return writer
        await self._abort_pending(key)
        if await self._head(key) is not None:  # a truncate leaves no older bytes behind
            await self.call(self.client.delete_object, Bucket=self.bucket, Key=key)
        resp = await self.call(self.client.create_multipart_upload, Bucket=self.bucket, Key=key)
        return _MultipartWriter(self, key, resp["UploadId"], [])

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
        upload_id = await self.pending_upload(key)
        if upload_id is None:
            return None
        parts = sorted(await self.parts(key, upload_id), key=lambda p: p["PartNumber"])
        head = await self._head(key)
        if head is not None and sum(p["Size"] for p in parts) < head["ContentLength"]:
            if not take_over:
                return None  # garbage the next writer aborts; a look changes nothing
            await self.abort(key, upload_id)
            return await self.current_upload(key, take_over)
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
        await _MultipartWriter(self, key, upload_id, whole).complete()  # none: an empty file

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
            head = await self._head(key)
            if head is not None:
                return FileInfo(path, head["ContentLength"], head["LastModified"], False)
        if path == "/" or await self._holds_keys(key.rstrip("/") + "/"):
            return FileInfo(path, 0, datetime.now(UTC), True)
        raise PathNotFoundError(path, self.name)

    async def stat_dir(self, path: str) -> FileInfo:
        """A prefix holding a key is a directory (one listing); else what ``stat``
        says (a file, or nothing)."""
        key = self.key(path, allow_root=True)
        if path == "/" or await self._holds_keys(key.rstrip("/") + "/"):
            return FileInfo(path, 0, datetime.now(UTC), True)
        return await self.stat(path)

    async def list(self, path: str) -> list[str]:
        files, dirs = await self._level(path)
        return sorted({*files, *dirs})

    async def list_infos(self, path: str) -> list[FileInfo]:
        """One paginated listing gives every file's size and time (no HEAD each); a
        directory has no time of its own on S3, so it gets the listing's."""
        return _level_infos(*await self._level(path))

    async def _level(self, path: str) -> tuple[dict[str, dict], set[str]]:
        """The files (with their listing entries) and directories directly below
        ``path``, every page of them."""
        files, children, _ = await self._page_through(path, "/")
        base = "" if path == "/" else path
        key = self.key(path, allow_root=True)
        prefix = key.rstrip("/") + "/" if key else ""
        dirs = await self._drop_empty_dirs(set(children) - set(files), base, prefix)
        if not dirs and not files and path != "/":
            raise PathNotFoundError(path, self.name)
        return files, dirs

    list_tree_prunes = False  # every key below a prefix comes in the same pages

    async def list_tree(self, path: str, descend: Descend) -> dict[str, list[TreeEntry]]:
        """In parallel by prefix: the first levels are listed with a delimiter until
        there are LISTINGS_AT_ONCE prefixes (or SPLIT_LEVELS levels), then each
        prefix's keys in one paginated listing without one, LISTINGS_AT_ONCE at a time.
        Directories are made from the keys found, so an emptied prefix (which SeaweedFS
        keeps listing) shows nowhere; ``descend`` prunes nothing, since every key
        below a prefix comes in the same pages."""
        files: dict[str, tuple[int, str]] = {}  # every file found: size, small ETag
        frontier = [path]
        limiter = trio.CapacityLimiter(LISTINGS_AT_ONCE)
        for _ in range(SPLIT_LEVELS):
            if len(frontier) >= LISTINGS_AT_ONCE:
                break
            deeper: list[str] = []

            async def split(directory: str, deeper: list[str] = deeper) -> None:
                async with limiter:
                    found, prefixes, _ = await self._page_through(directory, "/")
                files.update((p, _size_and_etag(item)) for p, item in found.items())
                deeper += prefixes

            async with trio.open_nursery() as nursery:
                for directory in frontier:
                    nursery.start_soon(split, directory)
            frontier = deeper

        async def flat(directory: str) -> None:
            async with limiter:
                found = (await self._page_through(directory, ""))[0]
            files.update((p, _size_and_etag(item)) for p, item in found.items())

        async with trio.open_nursery() as nursery:
            for directory in frontier:
                nursery.start_soon(flat, directory)
        tree = _tree_of(path, files)
        if path not in tree and path != "/":
            raise PathNotFoundError(path, self.name)
        return tree

    async def list_tree_infos(self, path: str, limit: int) -> dict[str, list[FileInfo]]:
        """The directories below ``path`` made from their keys, as few requests as
        that takes: when the keys below ``path`` fit in FLAT_PAGES pages (and
        ``limit``), one listing without a delimiter. Otherwise ``path``'s own level,
        then each child directory's keys in one listing without a delimiter, in
        parallel, while they fit in ``limit``: a browser entering the children and
        their children next (``find``, ``ls -R``) finds them read. A child whose keys
        outrun its share is left to be listed when entered. Directories made from
        keys hide an emptied prefix (which SeaweedFS keeps listing) with no request to
        check it."""
        if limit > 0:
            flat = await self._flat_tree(path, min(limit, FLAT_PAGES * 1000))
            if flat is not None:
                if path not in flat and path != "/":
                    raise PathNotFoundError(path, self.name)
                return flat or {path: []}
        files, prefixes, _ = await self._page_through(path, "/")
        children = set(prefixes) - set(files)
        tree: dict[str, list[FileInfo]] = {}
        empty: set[str] = set()
        unread: set[str] = set()
        share = max(1000, limit // max(1, len(children)))
        limiter = trio.CapacityLimiter(LISTINGS_AT_ONCE)
        seen = len(files) + len(children)

        async def read(child: str) -> None:
            nonlocal seen
            async with limiter:
                if seen >= limit:
                    unread.add(child)
                    return
                below = await self._flat_tree(child, share)
            if below is None:
                return  # more keys than its share: listed when entered
            if child not in below:
                empty.add(child)
                return
            tree.update(below)
            seen += sum(len(entries) for entries in below.values())

        async with trio.open_nursery() as nursery:
            for child in children:
                nursery.start_soon(read, child)
        key = self.key(path, allow_root=True)
        prefix = key.rstrip("/") + "/" if key else ""
        base = "" if path == "/" else path
        dirs = children - empty - unread | await self._drop_empty_dirs(unread, base, prefix)
        if not dirs and not files and path != "/":
            raise PathNotFoundError(path, self.name)
        tree[path] = _level_infos(files, dirs)
        return tree

    async def _flat_tree(self, path: str, most: int) -> dict[str, list[FileInfo]] | None:
        """Every directory below ``path`` with its entries, from one listing without a
        delimiter of at most ``most`` keys; None when there are more."""
        files, _, complete = await self._page_through(path, "", stop_after=most)
        if not complete:
            return None
        now = datetime.now(UTC)
        return {
            directory: [
                FileInfo(p, 0, now, True)
                if is_dir
                else FileInfo(p, files[p]["Size"], files[p]["LastModified"], False)
                for p, is_dir in entries
            ]
            for directory, entries in _dirs_of(path, list(files)).items()
        }

    async def _page_through(
        self, path: str, delimiter: str, stop_after: int = 0
    ) -> tuple[dict[str, dict], list[str], bool]:
        """The files below ``path`` (with their listing entries) and, with a
        delimiter, the prefixes, every page of them, or (with ``stop_after``) the
        pages up to that many keys; whether every page was read."""
        key = self.key(path, allow_root=True)
        prefix = key.rstrip("/") + "/" if key else ""
        base = "" if path == "/" else path
        files: dict[str, dict] = {}
        prefixes: list[str] = []
        token = None
        while True:
            kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix}
            if delimiter:
                kwargs["Delimiter"] = delimiter
            if stop_after:
                kwargs["MaxKeys"] = min(1000, stop_after)
            if token:
                kwargs["ContinuationToken"] = token
            resp = await self.call(self.client.list_objects_v2, **kwargs)
            for item in resp.get("Contents", []):
                name = item["Key"][len(prefix) :]
                if name and not name.endswith("/"):  # not a folder entry (SeaweedFS)
                    files[f"{base}/{name}"] = item
            for common in resp.get("CommonPrefixes", []):
                prefixes.append(f"{base}/{common['Prefix'][len(prefix):].rstrip('/')}")
            if not resp.get("IsTruncated"):
                return files, prefixes, True
            if stop_after and len(files) + len(prefixes) >= stop_after:
                return files, prefixes, False
            token = resp["NextContinuationToken"]

    async def _holds_keys(self, prefix: str) -> bool:
        """Whether an object lives below ``prefix``; folder entries (keys ending in
        ``/``, which SeaweedFS lists for emptied directories) do not count."""
        token = None
        while True:
            kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix, "MaxKeys": 10}
            if token:
                kwargs["ContinuationToken"] = token
            resp = await self.call(self.client.list_objects_v2, **kwargs)
            if any(not o["Key"].endswith("/") for o in resp.get("Contents", [])):
                return True
            if not resp.get("IsTruncated"):
                return False
            token = resp["NextContinuationToken"]

    async def _drop_empty_dirs(self, children: set[str], base: str, prefix: str) -> set[str]:
        """Some S3-compatible servers (SeaweedFS) keep listing a prefix whose keys are
        all gone; a directory here is a prefix that still holds a key. Many children
        are checked with one listing of their parent's keys (a directory of uploads:
        one request, not one per upload), as far as it goes; the rest one by one."""
        holding: set[str] = set()
        if len(children) > FLAT_CHECK_FROM:
            holding, complete = await self._children_holding_keys(base, len(children))
            holding &= children
            if complete:
                return holding
            children = children - holding
        empty: set[str] = set()

        async def check(child: str) -> None:
            if not await self._holds_keys(prefix + child[len(base) + 1 :] + "/"):
                empty.add(child)

        async with trio.open_nursery() as nursery:
            for child in children:
                nursery.start_soon(check, child)
        return holding | (children - empty)

    async def _children_holding_keys(self, base: str, count: int) -> tuple[set[str], bool]:
        """The child directories of ``base`` that hold a key, from one listing without
        a delimiter of up to ``FLAT_CHECK_KEYS`` keys a child; whether it saw them all."""
        files, _, complete = await self._page_through(
            base or "/", "", stop_after=min(count * FLAT_CHECK_KEYS, 10_000)
        )
        holding = {f"{base}/{p[len(base) + 1 :].split('/', 1)[0]}" for p in files}
        return holding, complete

    async def move(self, source: str, dest: str, expect: object | None = None) -> None:
        """A server-side copy of the object (never a pending write) and a delete. With
        ``expect``, every copy request is conditional on the object's ETag, so an
        object replaced meanwhile is not what lands at ``dest``."""
        src, dst = self.key(source), self.key(dest)
        head = await self._head(src)
        if head is None:
            raise PathNotFoundError(source, self.name)
        if expect is not None and ("object", head["ETag"], head["ContentLength"]) != expect:
            raise FileChangedError(f"{source}: changed since it was validated")
        condition = {"CopySourceIfMatch": head["ETag"]} if expect is not None else {}
        if head["ContentLength"] <= COPY_SINGLE_MAX:
            await self.call(
                self.client.copy_object,
                Bucket=self.bucket,
                Key=dst,
                CopySource={"Bucket": self.bucket, "Key": src},
                **condition,
            )
        else:
            await self._multipart_copy(src, dst, head["ContentLength"], condition)
        crash_point("move:copied")
        await self.call(self.client.delete_object, Bucket=self.bucket, Key=src)

    async def _multipart_copy(
        self, src: str, dst: str, size: int, condition: dict[str, str]
    ) -> None:
        """Server-side copy in parallel parts: nothing is downloaded."""
        resp = await self.call(self.client.create_multipart_upload, Bucket=self.bucket, Key=dst)
        upload_id = resp["UploadId"]
        ranges = [
            (i + 1, start, min(start + COPY_PART, size) - 1)
            for i, start in enumerate(range(0, size, COPY_PART))
        ]
        etags: dict[int, str] = {}

        async def copy_part(number: int, first: int, last: int) -> None:
            part = await self.call(
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
            await self.call(
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
        doomed = [key] if await self._head(key) is not None else []
        token = None
        while True:
            kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": key + "/"}
            if token:
                kwargs["ContinuationToken"] = token
            resp = await self.call(self.client.list_objects_v2, **kwargs)
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
            await self.call(
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


class _RangeReader(Reader):
    """Ranged GETs of READ_CHUNK bytes; READ_AHEAD of them fetched in the driver's pool
    while the current one is read."""

    def __init__(self, driver: S3Driver, key: str, offset: int, size: int) -> None:
        self.driver, self.key, self.offset, self.size = driver, key, offset, size
        self._chunk = b""
        self._pos = 0
        self._next = offset  # where the next fetch starts
        self._ahead: deque[Future[bytes]] = deque()

    def _get(self, start: int) -> bytes:
        last = min(start + READ_CHUNK, self.size) - 1
        d = self.driver
        resp = d.client.get_object(Bucket=d.bucket, Key=self.key, Range=f"bytes={start}-{last}")
        return resp["Body"].read()

    def _schedule(self) -> None:
        while len(self._ahead) < READ_AHEAD and self._next < self.size:
            self._ahead.append(self.driver.pool.submit(self._get, self._next))
            self._next += READ_CHUNK

    async def read(self, size: int) -> bytes:
        if self._pos >= len(self._chunk):
            if self.offset >= self.size:
                return b""
            self._schedule()
            future = self._ahead.popleft()
            try:
                self._chunk = await self.driver.wait(future)
            except ClientError as exc:
                await self.aclose()
                raise _driver_error(exc, self.key) from exc
            except BotoCoreError as exc:
                await self.aclose()
                raise BackendUnavailableError(f"s3: reading {self.key}: {exc}") from exc
            self._pos = 0
            self.driver.bytes_read += len(self._chunk)
            self._schedule()
            if not self._chunk:
                return b""
        data = self._chunk[self._pos : self._pos + size]
        self._pos += len(data)
        self.offset += len(data)
        return data

    async def aclose(self) -> None:
        for future in self._ahead:
            future.cancel()
        self._ahead.clear()
        self._chunk = b""


def _parts_stamp(upload_id: str, parts: Sequence[dict]) -> object:
    return ("parts", upload_id, tuple((p["PartNumber"], p["ETag"], p["Size"]) for p in parts))


class _MultipartWriter(FileWriter):
    def __init__(self, driver: S3Driver, key: str, upload_id: str, parts: list[dict]) -> None:
        self.driver, self.key, self.upload_id = driver, key, upload_id
        self._parts = [
            {"PartNumber": p["PartNumber"], "ETag": p["ETag"], "Size": p["Size"]} for p in parts
        ]
        # bytes not yet in a part, as written (no copy until a part is cut from them)
        self._buffer: deque[bytes | memoryview] = deque()
        self._buffered = 0
        self._state = "open"
        self._committed: object | None = None  # the object's stamp once completed
        self._lock = trio.Lock()
        # parts on their way: (number, size, future); the next fills while they upload
        self._inflight: list[tuple[int, int, Future[dict]]] = []

    @property
    def size(self) -> int:
        stored = sum(p["Size"] for p in self._parts)
        return stored + sum(n for _, n, _ in self._inflight) + self._buffered

    def _check_open(self) -> None:
        if self._state != "open":
            raise WriterClosedError(f"writer for {self.key} is {self._state}")

    async def merge_short_last_part(self) -> None:
        """Only the last part may be short; before appending after one, complete the
        upload, start a new one and bring the object back as its first bytes (as the
        registry's driver does)."""
        if not self._parts or self._parts[-1]["Size"] >= MIN_PART:
            return
        d, size = self.driver, self.size
        await self.complete()
        resp = await d.call(d.client.create_multipart_upload, Bucket=d.bucket, Key=self.key)
        self.upload_id, self._parts = resp["UploadId"], []
        await self.adopt_object(size)

    async def adopt_object(self, size: int) -> None:
        """Make the object now at the key the first ``size`` bytes of this upload:
        copied on the server when it can be a part, else read into the buffer."""
        d = self.driver
        if size >= MIN_PART:
            part = await d.call(
                d.client.upload_part_copy,
                Bucket=d.bucket,
                Key=self.key,
                UploadId=self.upload_id,
                PartNumber=1,
                CopySource={"Bucket": d.bucket, "Key": self.key},
            )
            self._parts = [{"PartNumber": 1, "ETag": part["CopyPartResult"]["ETag"], "Size": size}]
        elif size:
            self._hold(await d.get_content("/" + self.key[len(d.prefix) :]))

    async def write_pieces(self, pieces: Sequence[bytes]) -> int:
        self._check_open()
        async with self._lock:
            await self.merge_short_last_part()  # only once there is more to add
            for piece in pieces:
                self._hold(piece)
            while self._buffered >= self.driver.part_size:
                await self._upload_part(self._take(self.driver.part_size))
        return sum(map(len, pieces))

    def _hold(self, data: bytes | bytearray | memoryview) -> None:
        if data:  # kept by reference: only immutable bytes may be
            self._buffer.append(data if isinstance(data, bytes) else bytes(data))
            self._buffered += len(data)

    def _take(self, size: int) -> list[bytes | memoryview]:
        """The first ``size`` buffered bytes as pieces; a piece that straddles the end
        is split by views, not copied."""
        pieces: list[bytes | memoryview] = []
        while size:
            piece = self._buffer.popleft()
            if len(piece) > size:
                view = memoryview(piece)
                piece, rest = view[:size], view[size:]
                self._buffer.appendleft(rest)
            pieces.append(piece)
            size -= len(piece)
            self._buffered -= len(piece)
        return pieces

    async def _upload_part(self, pieces: list[bytes | memoryview]) -> None:
        """Start uploading a part in the driver's pool; wait only when too many are on
        their way. A failure is raised here or by close/commit."""
        d = self.driver
        if len(self._inflight) >= PARTS_IN_FLIGHT:
            await self._finish_oldest()
        number = len(self._parts) + len(self._inflight) + 1
        body = PartBody(pieces)
        future = d.pool.submit(
            d.client.upload_part,
            Bucket=d.bucket,
            Key=self.key,
            UploadId=self.upload_id,
            PartNumber=number,
            Body=body,
            ContentLength=len(body),
        )
        self._inflight.append((number, len(body), future))

    async def _finish_oldest(self) -> None:
        number, size, future = self._inflight.pop(0)
        try:
            resp = await self.driver.wait(future)
        except ClientError as exc:
            await self._drain(quiet=True)
            raise _driver_error(exc, self.key) from exc
        except BotoCoreError as exc:
            await self._drain(quiet=True)
            raise BackendUnavailableError(f"s3: part {number} of {self.key}: {exc}") from exc
        self._parts.append({"PartNumber": number, "ETag": resp["ETag"], "Size": size})

    async def _drain(self, quiet: bool = False) -> None:
        """Wait for the parts on their way; ``quiet`` (after a failure): give them up,
        so a store that stopped answering costs one timeout, not one per part."""
        while self._inflight:
            if quiet:
                _, _, future = self._inflight.pop(0)
                future.cancel()  # one not yet started never starts; one running is left
            else:
                await self._finish_oldest()

    async def _flush(self) -> None:
        if self._buffered:
            await self._upload_part(self._take(self._buffered))
        await self._drain()

    async def complete(self) -> object:
        """Complete the upload into the object; returns the object's stamp."""
        d = self.driver
        if not self._parts:  # S3 cannot complete an empty upload
            await d.abort(self.key, self.upload_id)
            resp = await d.call(d.client.put_object, Bucket=d.bucket, Key=self.key, Body=b"")
            return ("object", resp["ETag"], 0)
        resp = await d.call(
            d.client.complete_multipart_upload,
            Bucket=d.bucket,
            Key=self.key,
            UploadId=self.upload_id,
            MultipartUpload={
                "Parts": [{"PartNumber": p["PartNumber"], "ETag": p["ETag"]} for p in self._parts]
            },
        )
        return ("object", resp.get("ETag"), sum(p["Size"] for p in self._parts))

    async def close(self) -> None:
        if self._state == "closed":
            raise WriterClosedError(f"writer for {self.key} is already closed")
        async with self._lock:
            if self._state == "open":
                await self._flush()
                if not self._parts:  # keep an empty file findable: one empty part
                    await self._upload_part([])
                    await self._drain()
            self._state = "closed"

    @property
    def stamp(self) -> object | None:
        """Committed: the object it made (``committed_stamp``); closed: its parts."""
        if self._committed is not None:
            return self._committed
        return _parts_stamp(self.upload_id, self._parts) if self._state == "closed" else None

    async def cancel(self) -> None:
        self._check_open()
        d = self.driver
        async with self._lock:
            self._state = "cancelled"
            self._buffer.clear()
            self._buffered = 0
            await self._drain(quiet=True)
            await d.abort(self.key, self.upload_id)
            await d.call(d.client.delete_object, Bucket=d.bucket, Key=self.key)

    async def commit(self) -> None:
        self._check_open()
        async with self._lock:
            await self._flush()
            self._committed = await self.complete()
            self._state = "committed"


class PartBody(io.RawIOBase):
    """A part's bytes for botocore, read across the pieces that were written. Given
    bytes, botocore would wrap them in a BytesIO and copy them twice more (signing
    reads 1 MiB blocks, sending 16 KiB blocks); reads here hand out views, and the
    pieces never need joining. Seekable, so botocore can rewind it for a retry."""

    def __init__(self, pieces: Sequence[bytes | memoryview]) -> None:
        super().__init__()
        self._pieces = [memoryview(piece) for piece in pieces if len(piece)]
        self._size = sum(len(piece) for piece in self._pieces)
        self._pos = self._index = self._offset = 0

    def __len__(self) -> int:
        return self._size

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = min(max(0, base + offset), self._size)
        self._index, self._offset = 0, self._pos
        while self._index < len(self._pieces) and self._offset >= len(self._pieces[self._index]):
            self._offset -= len(self._pieces[self._index])
            self._index += 1
        return self._pos

    def read(self, size: int | None = -1) -> bytes | memoryview:  # type: ignore[override]
        """At most ``size`` bytes, never crossing a piece (a short read, as raw files
        give); ``b""`` at the end."""
        if size is None or size < 0:
            rest = b"".join(self._pieces[self._index :])[self._offset :]
            self.seek(0, io.SEEK_END)
            return rest
        if self._index >= len(self._pieces) or size == 0:
            return b""
        piece = self._pieces[self._index]
        end = min(len(piece), self._offset + size)
        out = piece[self._offset : end]
        self._pos += end - self._offset
        self._offset = end
        if end == len(piece):
            self._index, self._offset = self._index + 1, 0
        return out


def _level_infos(files: dict[str, dict], dirs: set[str]) -> list[FileInfo]:
    """One directory's entries from its listing, in path order: each file's size and
    time from its entry; a directory has no time of its own on S3, so it gets now."""
    now = datetime.now(UTC)
    infos = [FileInfo(p, item["Size"], item["LastModified"], False) for p, item in files.items()]
    return sorted(infos + [FileInfo(p, 0, now, True) for p in dirs], key=lambda i: i.path)


SMALL_ETAG = 1024  # objects up to this size keep their listing's ETag in list_tree


def _size_and_etag(item: dict) -> tuple[int, str]:
    """A listed object's size, and its ETag (no quotes) when it is small."""
    size = item["Size"]
    return size, item.get("ETag", "").strip('"') if size <= SMALL_ETAG else ""


def _tree_of(top: str, files: dict[str, tuple[int, str]]) -> dict[str, list[TreeEntry]]:
    """The directories (with their entries) that the files below ``top`` (with their
    sizes and small ETags) make."""
    return {
        directory: [TreeEntry(p, True) if is_dir else TreeEntry(p, False, "", *files[p])
                    for p, is_dir in entries]
        for directory, entries in _dirs_of(top, list(files)).items()
    }  # fmt: skip


def _dirs_of(top: str, files: list[str]) -> dict[str, list[tuple[str, bool]]]:
    """Each directory the file paths below ``top`` make, with its entries (path, is a
    directory) in name order."""
    below: dict[str, dict[str, bool]] = {}  # "" is the root
    base = "" if top == "/" else top
    for path in files:
        parent = path.rpartition("/")[0]
        known = parent in below  # then so is the chain above it
        below.setdefault(parent, {})[path] = False
        while not known and len(parent) > len(base):
            up = parent.rpartition("/")[0]
            known = up in below
            below.setdefault(up, {})[parent] = True
            parent = up
    return {directory or "/": sorted(entries.items()) for directory, entries in below.items()}
