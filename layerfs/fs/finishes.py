"""``mv _uploads/x _uploads/sha256:<hex>``: the finish, a kind of path of its own.

The view names a rename's target a finish when the new name is a digest in the
upload's own ``_uploads`` (``view.rename_target``); here the upload is validated
against it, moved into ``blobs/`` and linked (``Upload.finish``). What the store
holds at each step, and what a crash there leaves, is in
layerfs/storage/UPLOADS.md.
"""

from __future__ import annotations

import errno
import logging

from ..storage import Digest
from .errors import Refusal
from .kinds import PathKind
from .uploadfiles import UploadFiles, check_same_uploads
from .view import Place

log = logging.getLogger("layerfs.fs")


class Finishes(PathKind):
    def __init__(self, uploads: UploadFiles) -> None:
        self.uploads = uploads

    async def rename_into(self, source: Place, target: Place, flags: int) -> None:
        uploads = self.uploads
        upload_id = await uploads.upload_id(source)
        check_same_uploads(source, target)
        digest = Digest.parse(target.digest_text)
        table = uploads.table
        session = await table.open(source.repository, upload_id, source.upload_name)
        async with table.holding(session):
            session.check_usable()
            if session.finishing:
                raise Refusal(errno.EBUSY, f"upload {source.upload_name} is being finished")
            session.finishing = True  # writes and restarts are refused from here on
            try:
                await uploads.call(session, session.pipe.flush())
                await session.close_streams()  # no descriptor here survives the move
                info = await uploads.call(session, session.upload.finish(digest))
                session.removed = True  # the upload is a blob now: handles left get ESTALE
            finally:
                session.finishing = False
        table.gone(source.repository, upload_id)
        log.info(
            "upload %s finished as %s (%d bytes) in %s",
            upload_id,
            info.digest,
            info.size,
            source.repository,
        )
