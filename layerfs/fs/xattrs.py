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

import pyfuse3

from .errors import Refusal
from .linkfiles import LinkFiles
from .state import MountState
from .uploadfiles import UploadFiles
from .view import LINK_KINDS, Kind, Place

PREFIX = "user.layerfs."
PAGE_BYTES = 60_000  # below XATTR_SIZE_MAX (65,536), whatever one entry adds


class Xattrs:
    def __init__(self, state: MountState, uploads: UploadFiles, links: LinkFiles) -> None:
        self.state = state
        self.uploads = uploads
        self.links = links

    async def values(self, place: Place) -> dict[str, bytes]:
        if place.kind == Kind.ROOT:
            return self.root_values()
        if place.kind == Kind.UPLOAD:
            return await self.uploads.xattrs(place)
        if place.kind in LINK_KINDS:
            return self.links.xattrs(place)
        return self.links.dir_xattrs(place.parts) if place.is_dir else {}

    def root_values(self) -> dict[str, bytes]:
        store = self.state.store
        values = {"pid": str(os.getpid()).encode(), "store": store.location.encode()}
        for number, page in enumerate(status_pages(self.state.uploads.status())):
            values["uploads" if number == 0 else f"uploads.{number}"] = page
        values.update((key, str(count).encode()) for key, count in store.counters().items())
        return values

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
