"""Directories of the view: which exist, what they list, mkdir and rmdir.

A directory exists when the store has it, when the mount made it (``mkdir``, kept in
:class:`~.state.MountState`), or when it is one every repository has (``_layers``,
``_manifests``, ``_uploads``, ``revisions``, ``tags``). See docs/DESIGN.md, "The view".
"""

from __future__ import annotations

import contextlib
import errno
import logging
from collections.abc import Awaitable, Callable

import pyfuse3

from ..storage import Digest, paths
from ..storage.digest import check_algorithm
from ..storage.errors import PathNotFoundError, RegistryError, UnsafeEntryError
from ..storage.reference import validate_name, validate_tag
from .errors import Refusal
from .kinds import Immutable, PathKind
from .state import DirHandle, MountState
from .view import FIXED_DIRS, SPECIAL_DIRS, Kind, Place, classify
from .xattrs import root_values

log = logging.getLogger("layerfs.fs")

GetAttr = Callable[[Place], Awaitable[pyfuse3.EntryAttributes]]
ReaddirReply = Callable[[pyfuse3.ReaddirToken, bytes, pyfuse3.EntryAttributes, int], bool]


class Directories(PathKind):
    """Repository directories, ``_uploads`` and the link directories; every kind of
    directory answers the directory requests (opendir, readdir, mkdir, rmdir)."""

    def __init__(self, state: MountState, getattr_of: GetAttr) -> None:
        self.state = state
        self._getattr_of = getattr_of  # attributes of any kind, for readdirplus

    async def open(self, place: Place, flags: int) -> pyfuse3.FileInfo:
        raise Refusal(errno.EISDIR, f"{place.where} is a directory")

    async def unlink(self, place: Place) -> None:
        raise Refusal(errno.EISDIR, f"rm {place.where}: a directory")

    async def read(self, handle: DirHandle, offset: int, size: int) -> bytes:
        raise Refusal(errno.EISDIR, "read of a directory")

    async def xattrs(self, place: Place) -> dict[str, bytes]:
        """The last refusal of a link written below, on the deepest directory left."""
        error = self.state.dir_errors.get(place.parts)
        return {} if error is None else {"error": error.encode()}

    async def present(self, place: Place) -> bool:
        if place.parts in FIXED_DIRS or self._holds_made(place):
            return True
        found = await self.state.stat(place)
        if found is not None:
            return found[2]
        if place.is_special_root:
            return await self.present(classify(place.repository_parts))
        return False

    def _holds_made(self, place: Place) -> bool:
        """Whether the mount made ``place`` or keeps something below it: a directory
        that holds a made one stays, even when the store no longer has it."""
        depth, parts = len(place.parts), place.parts
        state = self.state
        return any(made[:depth] == parts for made in (*state.created_dirs, *state.pending_links))

    async def getattr(self, place: Place) -> pyfuse3.EntryAttributes:
        if place.parts in FIXED_DIRS:
            # always there, answered without the store (which may be unreachable)
            return self.state.dir_attrs(place.parts, self.state.started)
        found = await self.state.stat(place)
        if found is not None and found[2]:
            timeout = self.state.kept_for(place)
            return self.state.dir_attrs(place.parts, found[1], timeout=timeout)
        if await self.present(place):
            return self.state.dir_attrs(place.parts, self.state.started)
        raise Refusal(errno.ENOENT, f"no directory {place.where}")

    async def names(self, place: Place) -> set[str]:
        state = self.state
        if place.kind == Kind.ROOT:
            return {"blobs", "repositories"}
        if place.kind == Kind.UPLOADS:
            return set(await state.uploads.names(place.repository))
        names: set[str] = set()
        with contextlib.suppress(PathNotFoundError):
            names.update(await state.list_dir(place.store_path))
        depth = len(place.parts) + 1
        for made in (*state.created_dirs, *state.pending_links):
            if len(made) == depth and made[:-1] == place.parts:
                names.add(made[-1])
        if place.kind == Kind.NAMESPACE and (
            place.parts in state.repository_marks or names & set(SPECIAL_DIRS)
        ):
            names.update(SPECIAL_DIRS)
        if place.kind == Kind.LINK_DIR and place.at == "_manifests":
            names.update(("revisions", "tags"))
        return names

    async def opendir(self, place: Place) -> int:
        if not (place.is_dir and await self.present(place)):
            found = await self.state.stat(place)
            if found is None:  # gone since the kernel looked it up (a gc beside the mount)
                raise Refusal(errno.ENOENT, f"no directory {place.where}")
            if not found[2]:
                raise Refusal(errno.ENOTDIR, f"not a directory: {place.where}")
        return self.state.handles.add(DirHandle(place.parts))

    async def readdir(
        self, handle: DirHandle, start_id: int, token: pyfuse3.ReaddirToken, reply: ReaddirReply
    ) -> None:
        if handle.names is None:
            handle.names = sorted(await self.names(classify(handle.parts)))
        for index in range(start_id, len(handle.names)):
            name = handle.names[index]
            parts = (*handle.parts, name)
            try:
                attrs = await self._getattr_of(classify(parts))
            except UnsafeEntryError as exc:
                log.warning("listing %s as unreadable: %s", "/".join(parts), exc)
                attrs = self.state.unreadable_attrs(parts)
            except (Refusal, RegistryError, PathNotFoundError):
                continue  # gone since opendir
            if not reply(token, name.encode("utf-8", "surrogateescape"), attrs, index + 1):
                return
            self.state.inodes.remember(attrs.st_ino)

    # changes -----------------------------------------------------------------------
    async def mkdir(self, place: Place) -> None:
        state = self.state
        state.check_writable("mkdir")
        if not await self.present(classify(place.parts[:-1])):
            raise Refusal(errno.ENOENT, f"no directory {'/'.join(place.parts[:-1])}")
        if await self.present(place) or await state.stat(place) is not None:
            raise Refusal(errno.EEXIST, f"{place.where} exists")
        check_new_dir(place)
        state.created_dirs.add(place.parts)
        if place.kind == Kind.NAMESPACE:
            state.repository_marks.discard(place.parts[:-1])
            state.repository_marks.add(place.parts)

    async def rmdir(self, place: Place) -> None:
        state = self.state
        state.check_writable("rmdir")
        if place.kind in (Kind.ROOT, Kind.BLOB_DIR) or place.parts in FIXED_DIRS:
            raise Refusal(errno.EPERM, f"rmdir {place.where}: not removable")
        if not place.is_dir or place.kind == Kind.UPLOAD:
            raise Refusal(errno.ENOTDIR, f"not a directory: {place.where}")
        if not await self.present(place):
            raise Refusal(errno.ENOENT, f"no directory {place.where}")
        if await self._names_for_rmdir(place):
            raise Refusal(errno.ENOTEMPTY, f"{place.where} is not empty")
        # A directory may exist only implicitly (object stores) or only in this mount.
        await state.store.remove_dir(place.store_path)
        state.created_dirs.discard(place.parts)
        state.repository_marks.discard(place.parts)

    async def _names_for_rmdir(self, place: Place) -> set[str]:
        """What keeps ``place`` from being removed: the always-there directories count
        only when they hold something."""
        names = await self.names(place)
        implicit = {
            Kind.NAMESPACE: SPECIAL_DIRS,
            Kind.LINK_DIR: ("revisions", "tags") if place.at == "_manifests" else (),
        }.get(place.kind, ())
        for name in set(implicit) & names:
            child = classify((*place.parts, name))
            names.discard(name)
            if await self._names_for_rmdir(child):
                names.add(name)
        return names


def check_new_dir(place: Place) -> None:
    """Refuse a directory the layout has no place for, with the reason: EINVAL for a
    bad name where the layout has a name, EPERM where it has no directory at all."""
    where = place.where
    if place.kind == Kind.NAMESPACE:
        validate_name(place.repository)
        return
    if (top := paths.top_level_name(place.parts)) is not None:
        validate_name(top)  # repositories/_layers: a bad repository name
    if place.kind != Kind.LINK_DIR or place.is_special_root:
        raise Refusal(errno.EPERM, f"mkdir {where}: the layout has no directory here")
    fields = place.fields
    if place.at == "{alg}":
        check_algorithm(fields["alg"])
    elif place.at == "{hex}":
        Digest.from_parts(fields["alg"], fields["hex"])
    elif place.at == "{tag}":
        validate_tag(fields["tag"])


class BlobDirectories(Immutable, Directories):
    """``blobs/`` and the directories below it, down to a blob's own."""


class RootDirectory(BlobDirectories):
    """The mount's root: its extended attributes are the mount's status."""

    async def xattrs(self, place: Place) -> dict[str, bytes]:
        return root_values(self.state)
