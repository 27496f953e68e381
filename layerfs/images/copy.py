"""Import an image into a store and export one out of it, through the storage core
(so filesystem and S3 stores alike).

Import writes each blob into an upload named ``import <digest>`` and finishes it
with that digest: a blob is in the store only once its content was verified, and an
interrupted import (Ctrl-C, a dropped connection) leaves the upload, which the next
run finds by name and continues from its stored size. Blobs already in the store
are only linked. The image's manifests are read first, a level at a time (the
manifest graph, ``storage/graph.py``), each checked against its digest; then its
blobs are copied, each once; then its manifests, every child before the index that
names it; the tag last.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterator
from typing import TypeVar

import trio

from ..storage import (
    Digest,
    DigestMismatchError,
    ManifestInvalidError,
    Registry,
    parse_manifest,
)
from ..storage.errors import RegistryError, SizeMismatchError
from ..storage.graph import ManifestGraph, read_image
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
T = TypeVar("T")


def _copyable(payload: bytes, digest: Digest) -> bytes:
    """``payload``, unless it is a manifest no image copy can carry whole, or one
    beyond the bounds a source is held to (its size, its references)."""
    bounded(payload, f"manifest {digest}")
    manifest = parse_manifest(payload)
    if len(manifest.blob_references()) + len(manifest.manifests) > MAX_REFERENCES:
        raise SourceError(f"manifest {digest} names over {MAX_REFERENCES} blobs: refused")
    if manifest.is_schema1:
        raise ManifestInvalidError(
            f"manifest {digest} is Docker schema1 ({manifest.media_type}), which names no"
            " config and no layer sizes: it is not copied (a registry serving the store"
            " converts it: skopeo copy --format v2s2 docker://…)"
        )
    return payload


async def _image_graph(
    top: Digest, get: Callable[[Digest], Awaitable[bytes]]
) -> tuple[ManifestGraph, list[int]]:
    """``read_image`` with each manifest checked as a copy needs it (``_copyable``)."""

    async def checked(digest: Digest) -> bytes:
        return _copyable(await get(digest), digest)

    return await read_image(top, checked, kept=(RegistryError, SourceError))


async def _each_blob(graph: ManifestGraph, blob: Callable[[Digest, int], Awaitable[None]]) -> None:
    """Run ``blob(digest, size)`` for every blob the image's manifests reference, each
    once, all at once (the transfer manager bounds them)."""
    async with trio.open_nursery() as nursery:
        for digest, ref in graph.blob_references().items():
            nursery.start_soon(blob, digest, ref.size or 0)


async def _from_source(fn: Callable[..., T], *args: object) -> T:
    """A call into the source (blocking files and HTTP) in a worker thread that a
    cancel or Ctrl-C does not wait for: a stalled source would hold the import until
    its read timed out. The thread is left to end on its own, its answer dropped; what
    arrived before is in the upload, which the next run continues."""
    return await trio.to_thread.run_sync(fn, *args, abandon_on_cancel=True)


async def _next_chunk(chunks: Iterator[bytes]) -> bytes | None:
    return await _from_source(next, chunks, None)


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
        top = await _from_source(self.source.top_manifest)

        async def get(digest: Digest) -> bytes:
            if digest == top.digest:
                return top.payload
            payload = await _from_source(self.source.manifest, digest)
            return verified(payload, digest).payload

        graph, order = await _image_graph(top.digest, get)
        await _each_blob(graph, self._blob)
        for number in order:  # children first: a manifest is stored after what it names
            payload, _ = graph.kept[number]
            stored = await self.repo.manifests.put(payload)
            if stored != graph.digest(number):  # a source naming manifests by another algorithm
                log.info("manifest %s stored as %s", graph.digest(number), stored)
        await self.repo.tags.tag(tag, top.digest)
        return top.digest

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
            chunks = await _from_source(self.source.blob, digest, upload.size)
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
        top = await self.repo.tags.resolve(tag)

        async def get(digest: Digest) -> bytes:  # a revision of the repository
            return verified(await self.repo.manifests.get(digest), digest).payload

        graph, order = await _image_graph(top, get)
        await _each_blob(graph, self._blob)
        for number in order:
            payload, manifest = graph.kept[number]
            await trio.to_thread.run_sync(
                self.destination.put_manifest, payload, graph.digest(number), manifest.media_type
            )
        payload, manifest = graph.kept[graph.number(top)]
        await trio.to_thread.run_sync(
            self.destination.finish, dest_tag, top, manifest.media_type, payload
        )
        return top

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
