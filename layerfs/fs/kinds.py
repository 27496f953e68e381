"""The one protocol every kind of path in the view answers.

:class:`~.operations.Operations` keeps a table from each :class:`~.view.Kind` to one
handler (directories, blobs, other stored files, uploads, links, the finish) and
forwards each request to the handler of its path, or of its open handle. What a kind
does not support, it refuses here (the defaults) or in its own override, with the
errno and the sentence the log shows. See docs/DESIGN.md, "The view".
"""

from __future__ import annotations

import errno
from typing import Any

import pyfuse3

from .errors import Refusal
from .view import Place


class PathKind:
    """A kind of path: the defaults refuse every change and answer no attributes."""

    async def getattr(self, place: Place) -> pyfuse3.EntryAttributes:
        raise NotImplementedError

    async def setattr(self, place: Place, size: int | None, handle: Any) -> None:
        """``size`` is a truncate (``handle``: the open file it came through, if any).
        Modes, owners and times are not stored by the registry's layout; accepting
        them lets ``cp -p``, ``rsync`` and ``touch`` work."""
        if size is not None:
            raise Refusal(errno.EPERM, f"cannot resize {place.where}")

    async def create(self, place: Place, flags: int) -> pyfuse3.FileInfo:
        raise Refusal(errno.EPERM, f"create {place.where}: no file belongs here")

    async def open(self, place: Place, flags: int) -> pyfuse3.FileInfo:
        raise Refusal(errno.EPERM, f"open {place.where}: no file belongs here")

    async def unlink(self, place: Place) -> None:
        raise Refusal(errno.EPERM, f"rm {place.where}: not removable")

    async def check_movable(self, source: Place) -> None:
        """A rename of ``source`` may go ahead (then its target's kind decides)."""
        raise Refusal(errno.EPERM, f"rename {source.where}: only uploads move")

    async def rename_into(self, source: Place, target: Place, flags: int) -> None:
        """Move the upload ``source`` to ``target``, a path of this kind
        (``view.rename_target``)."""
        raise Refusal(errno.EXDEV, "an upload moves only within its _uploads directory")

    async def xattrs(self, place: Place) -> dict[str, bytes]:
        """``user.layerfs.<key>`` values of ``place``."""
        return {}

    # an open handle of this kind --------------------------------------------------------
    async def read(self, handle: Any, offset: int, size: int) -> bytes:
        raise Refusal(errno.EBADF, "file is not open for reading")

    async def write(self, handle: Any, offset: int, data: bytes) -> int:
        raise Refusal(errno.EBADF, "file is not open for writing")

    async def flush(self, handle: Any) -> None:
        """Nothing to store by default."""

    async def release(self, handle: Any) -> None:
        """Nothing held by default."""


class Immutable(PathKind):
    """Blobs and the directories leading to them: nothing in them changes by a request
    (a blob is written by finishing an upload, deleted by gc)."""

    async def setattr(self, place: Place, size: int | None, handle: Any) -> None:
        raise Refusal(errno.EPERM, f"blobs are immutable: {place.where}")

    async def create(self, place: Place, flags: int) -> pyfuse3.FileInfo:
        raise Refusal(errno.EPERM, "blobs are written by finishing an upload, not directly")
