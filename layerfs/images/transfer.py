"""Scheduling blob transfers: a bounded number at once, one transfer per key however
many ask for it, retries with exponential backoff, and progress events per blob
(what ``docker pull`` shows line by line)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import trio

from .errors import TransientError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Event:
    key: str
    status: str  # "Waiting", "Downloading", "Already exists", "Retrying", "Complete", "Failed"
    done: int = 0
    total: int = 0
    detail: str = ""


Progress = Callable[[Event], None]
# A job gets a callback for the bytes it has so far and returns its final status.
Job = Callable[[Callable[[int], None]], Awaitable[str]]


class _Transfer:
    def __init__(self) -> None:
        self.finished = trio.Event()
        self.error: BaseException | None = None


class TransferManager:
    def __init__(
        self,
        concurrency: int = 4,
        retries: int = 5,
        backoff: float = 1.0,
        progress: Progress | None = None,
    ) -> None:
        self.limiter = trio.CapacityLimiter(concurrency)
        self.retries, self.backoff = retries, backoff
        self.progress = progress or (lambda event: None)
        self._transfers: dict[str, _Transfer] = {}

    async def transfer(self, key: str, total: int, job: Job) -> None:
        """Run ``job`` for ``key`` once; later callers wait for that run's outcome."""
        existing = self._transfers.get(key)
        if existing is not None:
            await existing.finished.wait()
            if existing.error is not None:
                raise existing.error
            return
        transfer = self._transfers[key] = _Transfer()
        try:
            self.progress(Event(key, "Waiting", 0, total))
            async with self.limiter:
                status = await self._with_retries(key, total, job)
            self.progress(Event(key, status, total, total))
        except BaseException as exc:
            transfer.error = exc
            if not isinstance(exc, trio.Cancelled):
                self.progress(Event(key, "Failed", 0, total, str(exc)))
            raise
        finally:
            transfer.finished.set()

    async def _with_retries(self, key: str, total: int, job: Job) -> str:
        done = 0

        def count(so_far: int) -> None:
            nonlocal done
            done = so_far
            self.progress(Event(key, "Downloading", done, total))

        for attempt in range(self.retries + 1):
            try:
                return await job(count)
            except TransientError as exc:
                if attempt == self.retries:
                    raise
                delay = self.backoff * 2**attempt
                log.warning("%s: %s; retry %d in %.1f s", key, exc, attempt + 1, delay)
                self.progress(Event(key, "Retrying", done, total, f"in {delay:.0f}s: {exc}"))
                await trio.sleep(delay)
        raise AssertionError("unreachable")
