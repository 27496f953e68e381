"""Link files (``_layers``, ``_manifests/revisions``, ``_manifests/tags``): bytes in a
handle until they are a whole digest, then written under the registry's rules
(``Repository.write_link``). This module only parses bytes and keeps the errors.

A link is checked as soon as its content is whole (a digest, a line, or longer than
any digest), because shells ignore errors of close(): ``printf … > link`` sees the
refusal at write (docs/DESIGN.md, "Link files").
"""

from __future__ import annotations

import errno
import logging
import os
import stat
import time

import pyfuse3

from ..storage import Digest, paths
from ..storage.errors import RegistryError
from ..storage.links import decode_link
from .errors import Refusal, errno_of
from .kinds import PathKind
from .state import LinkHandle, MountState
from .view import LAYOUT_KIND, Kind, Parts, Place

log = logging.getLogger("layerfs.fs")
LONGEST_DIGEST = len("sha512:") + 128


class LinkFiles(PathKind):
    def __init__(self, state: MountState) -> None:
        self.state = state

    async def getattr(self, place: Place) -> pyfuse3.EntryAttributes:
        state = self.state
        pending = state.pending_links.get(place.parts)
        if pending is not None:
            mode = stat.S_IFREG | 0o644
            return state.attrs(place.parts, mode, len(pending.content), time.time_ns(), 0)
        found = await state.stat(place)
        if found is None:
            raise Refusal(errno.ENOENT, f"no file {place.where}")
        size, mtime, is_dir = found
        if is_dir:  # a directory where the layout has a link: shown read-only
            return state.dir_attrs(place.parts, mtime, writable=False)
        writable = place.kind != Kind.TAG_INDEX_LINK and not state.read_only
        mode = stat.S_IFREG | (0o644 if writable else 0o444)
        return state.attrs(place.parts, mode, size, mtime, state.kept_for(place))

    # opening -----------------------------------------------------------------------
    async def create(self, place: Place, flags: int) -> pyfuse3.FileInfo:
        if await self.state.stat(place) is not None or place.parts in self.state.pending_links:
            if flags & os.O_EXCL:
                raise Refusal(errno.EEXIST, f"{place.where} exists")
            return await self.open(place, flags | os.O_WRONLY)
        self._check_writable_kind(place)
        handle = LinkHandle(place, bytearray(), writable=True)
        self.state.pending_links[place.parts] = handle
        return self._file_info(handle)

    async def open(self, place: Place, flags: int) -> pyfuse3.FileInfo:
        writable = (flags & os.O_ACCMODE) != os.O_RDONLY
        if writable or flags & os.O_TRUNC:
            self.state.check_writable("open for writing")
            self._check_writable_kind(place)
        pending = self.state.pending_links.get(place.parts)
        if flags & os.O_TRUNC:
            content = bytearray()
        elif pending is not None:
            content = bytearray(pending.content)
        else:
            content = bytearray(await self.state.store.read_file(place.store_path))
        # O_TRUNC alone changes nothing stored: a shell's `> link` opens, flushes its
        # duplicated descriptor, and only then writes; an empty link is no link
        handle = LinkHandle(place, content, writable)
        return self._file_info(handle)

    @staticmethod
    def _check_writable_kind(place: Place) -> None:
        if place.kind == Kind.TAG_INDEX_LINK:
            raise Refusal(errno.EPERM, "tag index links are written by tagging")

    def _file_info(self, handle: LinkHandle) -> pyfuse3.FileInfo:
        return pyfuse3.FileInfo(fh=self.state.handles.add(handle), direct_io=True)

    # data --------------------------------------------------------------------------
    async def read(self, handle: LinkHandle, offset: int, size: int) -> bytes:
        return bytes(handle.content[offset : offset + size])

    async def write(self, handle: LinkHandle, offset: int, data: bytes) -> int:
        if not handle.writable:
            raise Refusal(errno.EBADF, "file is not open for writing")
        if handle.removed:
            raise Refusal(errno.ESTALE, f"{handle.place.where} was removed while open")
        if offset > len(handle.content):
            handle.content.extend(b"\0" * (offset - len(handle.content)))
        handle.content[offset : offset + len(data)] = data
        handle.dirty = True
        if is_whole(handle.content):
            await self.apply(handle)  # shells ignore close() errors: refuse here
        return len(data)

    async def flush(self, handle: LinkHandle) -> None:
        if handle.dirty and not handle.removed:
            await self.apply(handle)

    async def release(self, handle: LinkHandle) -> None:
        if self.state.pending_links.get(handle.place.parts) is handle:
            del self.state.pending_links[handle.place.parts]
        if handle.dirty and not handle.removed:  # nobody flushed: apply now, log errors
            try:
                await self.apply(handle)
            except Exception as exc:
                log.warning("link %s not written: %s", handle.place.where, exc)

    async def setattr(self, place: Place, size: int | None, handle: object) -> None:
        if size is not None:
            self.truncate(place, size, handle if isinstance(handle, LinkHandle) else None)

    def truncate(self, place: Place, size: int, handle: LinkHandle | None) -> None:
        """Truncate the content of the handle given (an ``ftruncate`` or an open with
        ``O_TRUNC``) or of the link being created; a stored link is replaced by
        writing, never shortened in place."""
        if handle is None:
            handle = self.state.pending_links.get(place.parts)
        if handle is None or not handle.writable:
            raise Refusal(errno.EPERM, f"cannot resize {place.where}: open it for writing")
        del handle.content[size:]
        handle.dirty = True

    # storing -----------------------------------------------------------------------
    async def apply(self, handle: LinkHandle) -> None:
        state, place = self.state, handle.place
        try:
            target = decode_link(place.where, bytes(handle.content).rstrip(b"\n"))
            repository = state.registry.repository(place.repository)
            named = None if place.kind == Kind.TAG_LINK else place.link_digest
            tag = place.fields.get("tag", "")
            state.changed()
            try:
                await repository.write_link(LAYOUT_KIND[place.kind], target, named, tag)
            finally:
                state.changed()  # a listing read meanwhile may miss the link
        except Exception as exc:
            error = f"{errno.errorcode[errno_of(exc)]}: {exc}"
            state.link_errors[place.parts] = error
            self._refused(place, error)
            raise
        handle.dirty = False
        state.link_errors.pop(place.parts, None)
        for depth in range(len(place.parts)):
            state.dir_errors.pop(place.parts[:depth], None)
        if state.pending_links.get(place.parts) is handle:
            del state.pending_links[place.parts]
        state.stored_below(place.parts)
        log.info("%s %s -> %s", place.kind.value, place.where, target)

    def _refused(self, place: Place, error: str) -> None:
        """A refused link leaves none of the directories that ``mkdir -p`` made for
        it alone, and its reason on the deepest one that still shows."""
        state = self.state
        parts = place.parts[:-1]
        # _layers, _manifests/revisions and _manifests/tags always show: stop there
        top = paths.link_tree_depth(place.parts, len(place.repository_parts))
        while (
            len(parts) > top
            and parts in state.created_dirs
            and not self._holds_others(parts, place.parts)
        ):
            state.created_dirs.discard(parts)
            state.forget_entry(parts)
            parts = parts[:-1]
        state.dir_errors[parts] = f"{place.where}: {error}"

    def _holds_others(self, directory: Parts, link: Parts) -> bool:
        """Whether a directory made by mkdir holds another made one or another link
        being written."""
        below = [*self.state.created_dirs, *self.state.pending_links]
        return any(p[: len(directory)] == directory and p != directory and p != link for p in below)

    async def unlink(self, place: Place) -> None:
        state = self.state
        pending = state.pending_links.pop(place.parts, None)
        if pending is not None:  # created, never stored: its handle stores nothing now
            pending.removed = True
            return
        repository = state.registry.repository(place.repository)
        named = None if place.kind == Kind.TAG_LINK else place.link_digest
        tag = place.fields.get("tag", "")
        await repository.remove_link(LAYOUT_KIND[place.kind], named, tag)
        state.keep_visible(place.parts, place.repository_parts)
        if place.kind == Kind.TAG_LINK:  # the whole tag went: its index/ stays in view too
            state.created_dirs.add(paths.tag_index_of_current(place.parts))

    async def xattrs(self, place: Place) -> dict[str, bytes]:
        error = self.state.link_errors.get(place.parts)
        return {} if error is None else {"error": error.encode()}


def is_whole(content: bytearray) -> bool:
    """A link's content is whole once it parses, ends a line or is longer than any digest."""
    if b"\n" in content or len(content) > LONGEST_DIGEST:
        return True
    try:
        Digest.parse(content.decode("ascii"))
    except (UnicodeDecodeError, RegistryError):
        return False
    return True
