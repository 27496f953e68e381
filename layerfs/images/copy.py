"""Import an image into a store and export one out of it, through the storage core
(so filesystem and S3 stores alike).

Import writes each blob into an upload named ``import <digest>`` and finishes it
with that digest: a blob is in the store only once its content was verified, and an
interrupted import (Ctrl-C, a dropped connection) leaves the upload, which the next
run finds by name and continues from its stored size. Blobs already in the store
are only linked. Manifests are checked against their digests, children before the
index that names them, and the tag is written last.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import trio

from ..storage import (
    Digest,
    DigestMismatchError,
    ManifestInvalidError,
    Registry,
    parse_manifest,
)
from ..storage.errors import SizeMismatchError
from ..storage.manifests import MAX_INDEX_DEPTH, Manifest
from .destinations import ImageDestination
from .sources import (
    CHUNK,
    MAX_REFERENCES,
    ImageSource,
    SourceError,
    bounded,
    verified,
)
from .transfer import TransferManager

log = logging.getLogger(__name__)

UPLOAD_PREFIX = "import "


def _copyable(payload: bytes, digest: Digest, depth: int = 0) -> Manifest:
    """The parsed manifest, unless it is one no image copy can carry whole, or one
    beyond the bounds a source is held to (its size, its references, its depth)."""
    bounded(payload, f"manifest {digest}")
    if depth > MAX_INDEX_DEPTH:
        raise SourceError(f"manifest {digest}: indexes nested over {MAX_INDEX_DEPTH} deep")
    manifest = parse_manifest(payload)
    if len(manifest.blob_references()) + len(manifest.manifests) > MAX_REFERENCES:
        raise SourceError(f"manifest {digest} names over {MAX_REFERENCES} blobs: refused")
    if manifest.is_schema1:
        raise ManifestInvalidError(
            f"manifest {digest} is Docker schema1 ({manifest.media_type}), which names no"
            " config and no layer sizes: it is not copied (a registry serving the store"
            " converts it: skopeo copy --format v2s2 docker://…)"
        )
    return manifest


async def _each_reference(manifest: Manifest, blob, child, depth: int = 0) -> None:  # type: ignore[no-untyped-def]
    """Run ``blob(digest, size)`` for every blob and ``child(digest, depth)`` for every
    child manifest of ``manifest``, all at once (the transfer manager bounds them)."""
    async with trio.open_nursery() as nursery:
        for ref in manifest.blob_references():
            nursery.start_soon(blob, ref.digest, ref.size)
        for entry in manifest.manifests:
            nursery.start_soon(child, entry.digest, depth + 1)


async def _next_chunk(chunks: Iterator[bytes]) -> bytes | None:
    return await trio.to_thread.run_sync(next, chunks, None)


class Importer:
    def __init__(
        self, source: ImageSource, registry: Registry, repository: str, transfers: TransferManager
    ) -> None:
        self.source, self.registry = source, registry
        self.repo = registry.repository(repository)
        self.transfers = transfers
        # "import <digest>" uploads by name: those earlier runs left, and this run's
        self._named_uploads: dict[str, str] = {}

    async def run(self, tag: str) -> Digest:
        uploads = self.repo.uploads  # their stored names, read once, not per blob
        self._named_uploads = {await uploads.name_of(i): i for i in await uploads.ids()}
        top = await trio.to_thread.run_sync(self.source.top_manifest)
        await self._manifest(top.payload, top.digest)
        await self.repo.tags.tag(tag, top.digest)
        return top.digest

    async def _manifest(self, payload: bytes, digest: Digest, depth: int = 0) -> None:
        manifest = _copyable(payload, digest, depth)
        await _each_reference(manifest, self._blob, self._child, depth)
        stored = await self.repo.manifests.put(payload)
        if stored != digest:  # only when the source names manifests by another algorithm
            log.info("manifest %s stored as %s", digest, stored)

    async def _child(self, digest: Digest, depth: int) -> None:
        payload = await trio.to_thread.run_sync(self.source.manifest, digest)
        await self._manifest(verified(payload, digest).payload, digest, depth)

    async def _blob(self, digest: Digest, size: int) -> None:
        async def job(report) -> str:  # type: ignore[no-untyped-def]
            if await self.registry.blobs.exists(digest):
                await self.repo.layers.link(digest)
                await self._drop_leftover_upload(digest)
                return "Already exists"
            await self._fetch(digest, size, report)
            return "Complete"

        await self.transfers.transfer(str(digest), size, job)

    def _leftover_upload_id(self, digest: Digest) -> str | None:
        """The upload an earlier run, or an earlier attempt of this one, left for
        ``digest``, if any (the table read once at the start, kept by this run)."""
        return self._named_uploads.get(UPLOAD_PREFIX + str(digest))

    async def _drop_leftover_upload(self, digest: Digest) -> None:
        """An import killed inside a finish, after the move, leaves its upload beside
        the blob (layerfs/storage/UPLOADS.md, finish 4 and 5); the stored blob holds
        every byte it was for."""
        if (upload_id := self._named_uploads.pop(UPLOAD_PREFIX + str(digest), None)) is not None:
            log.info("%s: removing upload %s left by an interrupted import", digest, upload_id)
            await self.repo.uploads.cancel(upload_id)

    async def _upload_for(self, digest: Digest):  # type: ignore[no-untyped-def]
        """The upload an earlier, interrupted import left for ``digest``, or a new one."""
        if (upload_id := self._leftover_upload_id(digest)) is not None:
            upload = await self.repo.uploads.resume(upload_id)
            log.info("%s: resuming at byte %d", digest, upload.size)
            return upload
        upload = await self.repo.uploads.create()
        await self.repo.uploads.set_name(upload.id, UPLOAD_PREFIX + str(digest))
        self._named_uploads[UPLOAD_PREFIX + str(digest)] = upload.id  # a retry resumes it
        return upload

    async def _fetch(self, digest: Digest, size: int, report) -> None:  # type: ignore[no-untyped-def]
        upload = await self._upload_for(digest)
        try:
            if upload.size > size:
                await upload.restart()
            chunks = await trio.to_thread.run_sync(self.source.blob, digest, upload.size)
            report(upload.size)
            while (chunk := await _next_chunk(chunks)) is not None:
                if upload.size + len(chunk) > size:
                    raise SizeMismatchError(size, upload.size + len(chunk))  # and more to come
                await upload.write(chunk)
                report(upload.size)
            await upload.finish(digest, size)
        except (DigestMismatchError, SizeMismatchError) as exc:
            await upload.cancel()  # what arrived is not the blob: no copy of it is kept
            self._named_uploads.pop(UPLOAD_PREFIX + str(digest), None)
            raise SourceError(f"blob {digest} from {self.source.description}: {exc}") from None
        except BaseException:
            with trio.CancelScope(shield=True):  # keep what arrived, for the next attempt
                try:
                    await upload.close()
                except Exception as exc:
                    log.warning("%s: upload %s not closed: %s", digest, upload.id, exc)
            raise


class Exporter:
    def __init__(
        self,
        registry: Registry,
        repository: str,
        destination: ImageDestination,
        transfers: TransferManager,
    ) -> None:
        self.repo = registry.repository(repository)
        self.destination = destination
        self.transfers = transfers

    async def run(self, tag: str, dest_tag: str) -> Digest:
        digest = await self.repo.tags.resolve(tag)
        payload = await self.repo.manifests.get(digest)
        manifest = await self._manifest(payload, digest)
        await trio.to_thread.run_sync(
            self.destination.finish, dest_tag, digest, manifest.media_type, payload
        )
        return digest

    async def _manifest(self, payload: bytes, digest: Digest, depth: int = 0) -> Manifest:
        verified(payload, digest)
        manifest = _copyable(payload, digest, depth)
        await _each_reference(manifest, self._blob, self._child, depth)
        await trio.to_thread.run_sync(
            self.destination.put_manifest, payload, digest, manifest.media_type
        )
        return manifest

    async def _child(self, digest: Digest, depth: int) -> None:
        await self._manifest(await self.repo.manifests.get(digest), digest, depth)

    async def _blob(self, digest: Digest, size: int) -> None:
        async def job(report) -> str:  # type: ignore[no-untyped-def]
            if await trio.to_thread.run_sync(self.destination.has_blob, digest, size):
                return "Already exists"
            reader = await self.repo.layers.open(digest)

            async def next_chunk() -> bytes:
                chunk = await reader.read(CHUNK)
                report(reader.tell())
                return chunk

            def body() -> Iterator[bytes]:  # runs in the destination's thread
                while chunk := trio.from_thread.run(next_chunk):
                    yield chunk

            try:
                await trio.to_thread.run_sync(self.destination.put_blob, digest, size, body())
            finally:
                await reader.aclose()
            return "Complete"

        await self.transfers.transfer(str(digest), size, job)
