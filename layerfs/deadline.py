"""One deadline for a whole request to the mount, shared by every store call it makes.

A driver with a ``timeout`` (S3) bounds each call by it; a request that makes several
calls one after another (a ``stat``: the pending uploads, their parts, the object)
would otherwise take several timeouts. Inside :func:`request_deadline`, a call ends
by the request's deadline too, so the program waits at most the timeout (README,
"What layerfs trusts"). The deadline lives in a context variable, which trio copies into
the tasks a request starts: a task that outlives its request (an upload's
write-behind) runs under :func:`no_request_deadline`.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from contextvars import ContextVar

import trio

from .drivers.base import BackendUnavailableError

_DEADLINE: ContextVar[float | None] = ContextVar("layerfs_request_deadline", default=None)


@contextlib.contextmanager
def request_deadline(seconds: float | None) -> Iterator[None]:
    """Every store call made inside ends within ``seconds`` from now (None: no bound
    beyond each call's own)."""
    if seconds is None:
        yield
        return
    deadline = trio.current_time() + seconds
    current = _DEADLINE.get()
    token = _DEADLINE.set(deadline if current is None else min(current, deadline))
    try:
        yield
    finally:
        _DEADLINE.reset(token)


@contextlib.contextmanager
def no_request_deadline() -> Iterator[None]:
    """For a task that outlives the request that started it."""
    token = _DEADLINE.set(None)
    try:
        yield
    finally:
        _DEADLINE.reset(token)


@contextlib.contextmanager
def within_request(what: str) -> Iterator[None]:
    """Wait inside this block no longer than the request's deadline (a wait on
    something other than a store call: the write-behind's queue); past it, raise
    BackendUnavailableError naming ``what``."""
    request = _DEADLINE.get()
    with trio.move_on_at(math.inf if request is None else request) as scope:
        yield
    if scope.cancelled_caught:
        raise BackendUnavailableError(f"{what}: the store did not answer within the timeout")


def call_deadline(timeout: float) -> float:
    """When a store call starting now must end: after its own ``timeout``, or at the
    request's deadline if that comes first."""
    own = trio.current_time() + timeout
    request = _DEADLINE.get()
    return own if request is None else min(own, request)
