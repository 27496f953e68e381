"""Who holds the bytes a layer link names when its blob is not stored: the last copy
may be an upload whose finish was cut short inside the move (on S3, a server-side copy
into ``blobs/`` that never completed). fsck completes such a finish from the upload;
gc keeps the link and purge-uploads keeps the upload (UPLOADS.md, "The last copy").
"""

from __future__ import annotations

import logging

from ..drivers import PathNotFoundError, StorageDriver, StorageDriverError
from . import paths, walk
from .digest import Digest
from .errors import InvalidLinkError, RegistryError
from .links import decode_link
from .registry import Registry

log = logging.getLogger(__name__)


async def unstored_link_targets(driver: StorageDriver, repository: str) -> set[Digest]:
    """The blobs ``repository``'s layer links name that are not stored (committed)."""
    entries = await walk.digest_dirs(driver, paths.layers_dir(repository))
    links = [paths.link_in(entry) for _, entry in entries]
    targets: set[Digest] = set()
    for path, content in zip(links, await driver.get_contents(links), strict=True):
        if isinstance(content, bytes):
            try:
                targets.add(decode_link(path, content))
            except InvalidLinkError:
                continue  # fsck's business
    ordered = sorted(targets, key=str)
    found = await driver.stat_committed_many([paths.blob_data(d) for d in ordered])
    return {
        d for d, info in zip(ordered, found, strict=True) if isinstance(info, PathNotFoundError)
    }


class Holders(dict[Digest, str]):
    """Upload ids by the blob digest their bytes have; ``unread`` names the uploads
    that could not be read (a deleting command keeps what they might hold)."""

    def __init__(self) -> None:
        super().__init__()
        self.unread: set[str] = set()


async def uploads_holding(registry: Registry, repository: str, wanted: set[Digest]) -> Holders:
    """Upload ids of ``repository`` whose stored bytes are one of ``wanted``, by
    digest: each upload's digest from a hash state that vouches for its data, else by
    reading it (never completing a pending write). Nothing is read when nothing is
    wanted."""
    found = Holders()
    if not wanted:
        return found
    uploads = registry.repository(repository).uploads
    for upload_id in await uploads.ids():
        if not wanted - found.keys():
            break
        try:
            digest = await (await uploads.resume(upload_id)).stored_digest()
        except (StorageDriverError, RegistryError) as exc:
            log.warning("upload %s of %s: not read: %s", upload_id, repository, exc)
            found.unread.add(upload_id)
            continue
        if digest in wanted:
            found.setdefault(digest, upload_id)
    return found
