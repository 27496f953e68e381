"""The S3 client's requests: made in worker threads (boto3 blocks), each within a
deadline, and every answer that is an error turned into the driver's own errors."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from datetime import datetime
from typing import Any, TypeVar

import boto3
import trio
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, ProfileNotFound
from botocore.utils import parse_timestamp

from ...deadline import call_deadline
from ..base import (
    BackendRequestError,
    BackendUnavailableError,
    FileChangedError,
    PathNotFoundError,
    StorageDriverError,
)

NOT_FOUND = {"NoSuchKey", "404", "NotFound", "NoSuchUpload"}
# Seconds one request may take in all, its retries included: a FUSE request on a
# store that stopped answering gets EIO within about this long (-o timeout=).
DEFAULT_TIMEOUT = 30.0

T = TypeVar("T")


def listing_time(value: str) -> datetime:
    """A listing's ISO 8601 time read by the standard library: botocore's general
    parser (dateutil) costs a sixth of a big listing's time. Other forms (an HTTP
    date of a HEAD) go to botocore's."""
    if isinstance(value, str) and "T" in value:
        with contextlib.suppress(ValueError):
            return datetime.fromisoformat(value)
    return parse_timestamp(value)


class NotModified(StorageDriverError):
    """A conditional GET found the object unchanged (never leaves the driver)."""


def driver_error(exc: ClientError, key: str) -> StorageDriverError:
    """The driver's own error for what S3 answered: botocore's never leave the driver
    (the filesystem and memory drivers raise nothing else either)."""
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    code = exc.response.get("Error", {}).get("Code", "")
    if status == 304:
        return NotModified(key)
    if code in NOT_FOUND:
        return PathNotFoundError(key, "s3")
    if status == 412 or code == "PreconditionFailed":  # a conditional copy's source changed
        return FileChangedError(f"s3: {key}: changed since it was validated")
    if status >= 500 or status == 429:
        return BackendUnavailableError(f"s3: {exc}")
    return BackendRequestError(f"s3: {exc}")


class Requests:
    """One S3 client and the threads its calls run in. A store that does not answer
    within ``timeout`` fails its calls at once for the next ``timeout`` seconds."""

    def __init__(
        self,
        *,
        endpoint: str | None,
        region: str | None,
        access_key: str | None,
        secret_key: str | None,
        profile: str | None,
        connections: int,
        timeout: float,
    ) -> None:
        if timeout <= 0:
            raise ValueError(f"timeout {timeout} is not a positive number of seconds")
        self.timeout = timeout
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
        parsers.set_parser_defaults(timestamp_parser=listing_time)
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
        self._silent_until = -math.inf  # calls fail at once until then (no_answer)

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
            raise driver_error(exc, kwargs.get("Key", kwargs.get("Prefix", ""))) from exc
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
