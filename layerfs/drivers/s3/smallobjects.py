"""Small objects an S3 driver put or got, kept to revalidate instead of fetching."""

from __future__ import annotations

from collections import OrderedDict

SMALL_OBJECT = 64 << 10  # get_content remembers objects up to this size...
SMALL_OBJECTS_TOTAL = 4 << 20  # ...and this many bytes of them in all


class SmallObjects:
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
