"""``user.layerfs.*``: the mount's status on its root, an upload's state on its file and
the last refusal of a link write on the link and on its deepest directory that shows.

One extended attribute holds at most 64 KiB, so the list of open uploads is split
into pages: ``user.layerfs.uploads`` holds the first, ``user.layerfs.uploads.1`` and
on the rest (``layerfs status`` reads them until one is missing).
"""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Awaitable, Callable

import pyfuse3

from .errors import Refusal
from .state import MountState
from .view import Place

PREFIX = "user.layerfs."
PAGE_BYTES = 60_000  # below XATTR_SIZE_MAX (65,536), whatever one entry adds


class Xattrs:
    """``user.layerfs.*`` of any place, from ``values`` (its kind's handler)."""

    def __init__(self, values: Callable[[Place], Awaitable[dict[str, bytes]]]) -> None:
        self.values = values

    async def get(self, place: Place, name: bytes) -> bytes:
        key = name.decode("utf-8", "surrogateescape")
        if not key.startswith(PREFIX):
            # The kernel asks for security.capability before every write: answer at once.
            raise pyfuse3.FUSEError(pyfuse3.ENOATTR)
        values = await self.values(place)
        if key[len(PREFIX) :] not in values:
            raise pyfuse3.FUSEError(pyfuse3.ENOATTR)
        return values[key[len(PREFIX) :]]

    async def names(self, place: Place) -> list[bytes]:
        return [(PREFIX + key).encode() for key in await self.values(place)]

    @staticmethod
    def refuse_change() -> None:
        raise Refusal(errno.ENOTSUP, "the store keeps no extended attributes")


def root_values(state: MountState) -> dict[str, bytes]:
    """The mount's status: its process, its store, its open uploads and its counters."""
    store = state.store
    values = {"pid": str(os.getpid()).encode(), "store": store.location.encode()}
    for number, page in enumerate(status_pages(state.uploads.status())):
        values["uploads" if number == 0 else f"uploads.{number}"] = page
    values.update((key, str(count).encode()) for key, count in store.counters().items())
    return values


def status_pages(entries: list[dict[str, object]]) -> list[bytes]:
    """JSON lists of the entries, each under PAGE_BYTES; at least one (maybe empty)."""
    pages: list[bytes] = []
    page: list[bytes] = []
    size = 2
    for entry in entries:
        encoded = json.dumps(entry).encode()
        if page and size + len(encoded) + 1 > PAGE_BYTES:
            pages.append(b"[" + b",".join(page) + b"]")
            page, size = [], 2
        page.append(encoded)
        size += len(encoded) + 1
    pages.append(b"[" + b",".join(page) + b"]")
    return pages
