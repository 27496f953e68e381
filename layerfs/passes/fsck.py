"""Checking a store: blob contents, link files, manifests and uploads.

Every finding names the store path it is about and, when the thing is provably
broken, the path whose removal repairs it. What is only odd (an unknown manifest
type, a manifest whose blobs exist but are not linked into its repository) is
reported and never removed. Blobs are checked first, so that links and manifests
are judged against the blobs that survive a repair.

What docker-registry itself leaves behind is no finding: it is counted in
``Report.registry_states`` (``REGISTRY_STATES`` says what each count means). A
check never changes the store: on S3, a file whose newest bytes are in a multipart
upload not yet completed (an upload being written, a copy under way) is counted and
not read, since reading it would complete it.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
from array import array
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import trio

from ..drivers import FileInfo, PathNotFoundError, StorageDriver, UnsafeEntryError
from ..drivers.base import HASH_CHUNK
from ..storage import paths, walk
from ..storage.digest import CANONICAL, Digest
from ..storage.errors import InvalidLinkError, ManifestInvalidError
from ..storage.hashstate import HashStateError, ResumableSha256
from ..storage.holders import uploads_holding
from ..storage.links import decode_link
from ..storage.manifests import Manifest, parse_manifest
from ..storage.registry import Registry
from ..storage.uploads import parse_started_at
from .blobtable import BlobStates, BlobTable, sizes_array
from .storepass import OverStore, StorePass

log = logging.getLogger(__name__)

Progress = Callable[[int], None]
Fix = Callable[[], Awaitable[None]]


class NotRepairable(Exception):
    """A repair that found nothing to repair from: the finding stays."""


SMALL_FILE = 256 << 10  # blobs and uploads up to this size are read in batches...
BATCH_BYTES = 16 << 20  # ...of at most this many bytes (and BATCH_FILES files)
BATCH_FILES = 512
CHUNK = 4096  # blobs stated, then hashed, together (their paths held at once)
GOOD, CORRUPT, UNSAFE = 1, 2, 3  # a blob's verdict (0: none yet, or no blob)

# Normal states of a store the registry writes, counted rather than reported.
REGISTRY_STATES = {
    "deleted-link": "link directories whose link an API DELETE removed",
    "link-to-collected-blob": "layer links to blobs a garbage-collect deleted",
    "old-tag-history": "tag history entries naming manifests no longer held",
    "write-in-progress": "files being written on S3 (multipart uploads not completed)",
    "cancelled-upload": "upload directories a cancel left with no data and no startedat",
    # the registry's s3 writer stores the state of bytes it still buffers, so a PATCH
    # cut short leaves one; a resume uses only the state at the data's exact size
    "state-beyond-data": "upload hash states beyond the data (unused by any resume)",
}


@dataclass
class Finding:
    kind: str
    path: str
    detail: str
    remove: str | None = None  # what a repair deletes (or completes); None: reported only
    removed: bool = False
    fix: Fix | None = field(default=None, repr=False)  # a repair that is more than a delete

    def as_dict(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "path": self.path,
            "detail": self.detail,
            "repair": self.remove,
            "removed": self.removed,
        }


@dataclass
class Report:
    findings: list[Finding] = field(default_factory=list)
    blobs: int = 0
    blob_bytes: int = 0
    repositories: int = 0
    manifests: int = 0
    links: int = 0
    uploads: int = 0
    registry_states: Counter[str] = field(default_factory=Counter)

    @property
    def clean(self) -> bool:
        return not self.findings

    @property
    def unrepaired(self) -> list[Finding]:
        return [f for f in self.findings if not f.removed]


@dataclass(frozen=True)
class _Blob:
    digest: Digest
    path: str
    size: int


@dataclass(frozen=True)
class _Upload:
    repository: str
    id: str
    size: int
    states: dict[int, str]  # offset -> hash state path
    has_data: bool
    readable: bool  # False: its bytes are in an S3 multipart upload not yet completed


class Fsck(OverStore):
    """One check of one store; ``run`` returns the report."""

    def __init__(
        self,
        driver: StorageDriver,
        repair: bool = False,
        workers: int = 2,
        progress: Progress | None = None,
        on_total: Callable[[int], None] | None = None,
        check_data: bool = True,
    ) -> None:
        self.driver = driver
        self.check_data = check_data  # False: a blob with data counts as good, unhashed
        self.store = StorePass(driver)  # the store's listings, a group at a time
        self.registry = Registry(driver)
        self.repair = repair
        self.workers = max(1, workers)
        self.progress = progress or (lambda n: None)
        self.on_total = on_total or (lambda n: None)
        self.report = Report()
        # each blob's verdict (GOOD, CORRUPT, UNSAFE: data is a symlink, neither good
        # nor missing), a byte a listed blob (blobtable.py)
        self.verdicts = BlobStates(BlobTable())
        self.pending: set[str] = set()  # paths whose bytes are in a write not completed
        self.held: set[tuple[str, Digest]] = set()  # (repository, manifest) with a revision link
        # every link file of the repository being checked read so far, valid or not:
        # its layer links are all read before its manifests, whose references are then
        # looked up here
        self.link_files: set[str] = set()

    async def run(self) -> Report:
        self.pending = {w.path for w in await self.driver.pending_writes(paths.ROOT)}
        await self.store.read_top()
        table = await self.store.blob_table(self._odd)
        self.verdicts = BlobStates(table)
        sizes = await self._stat_blobs(table)
        uploads = await self._list_uploads()
        hashed = sum(u.size for u in uploads if u.states and u.readable)
        self.on_total((sum(s for s in sizes if s > 0) if self.check_data else 0) + hashed)
        for chunk in table.chunks(CHUNK):
            await self._check_blobs(
                [_Blob(d, paths.blob_data(d), sizes[i]) for i, d in chunk if sizes[i] >= 0]
            )
        names = await self.store.repositories(self._odd)
        async for group in self.store.groups(names):
            await self._read_ahead(group)
            for name in group:
                self.report.repositories += 1
                await self._check_repository(name)
        limiter = trio.CapacityLimiter(self.workers)
        for start in range(0, len(uploads), BATCH_FILES):
            batch = uploads[start : start + BATCH_FILES]
            await self._read_uploads_ahead(batch)
            async with trio.open_nursery() as nursery:
                for upload in batch:
                    nursery.start_soon(self._check_upload, limiter, upload)
            self.ahead.forget()
        return self.report

    # bookkeeping -----------------------------------------------------------
    async def _found(
        self, kind: str, path: str, detail: str, remove: str | None = None, fix: Fix | None = None
    ) -> None:
        finding = Finding(kind, path, detail, remove, fix=fix)
        self.report.findings.append(finding)
        log.warning("%s: %s (%s)", path, detail, kind)
        if self.repair and remove is not None:
            try:
                if fix is not None:
                    await fix()
                else:
                    await self.driver.delete_if_present(remove)
            except UnsafeEntryError as exc:
                log.warning("not repaired: %s", exc)  # a symlink on the way: left alone
                return
            except NotRepairable as exc:
                log.warning("not repaired: %s: %s", path, exc)
                return
            finding.removed = True
            log.warning("repaired %s", remove)

    def _normal(self, state: str) -> None:
        self.report.registry_states[state] += 1

    async def _list(self, path: str) -> list[str]:
        return sorted(await self.snapshot.list_if_present(path))

    # blobs -----------------------------------------------------------------
    async def _odd(self, path: str, why: str) -> None:
        await self._found("odd-entry", path, why)

    async def _unsafe(self, exc: UnsafeEntryError) -> None:
        """A symbolic link or device where the layout has a file: reported, never
        followed, never removed (whoever put it there may still want it)."""
        await self._found("unsafe-entry", exc.path, exc.what)

    def _good(self, digest: Digest) -> bool:
        return self.verdicts.get(digest) == GOOD

    async def _stat_blobs(self, table: BlobTable) -> array[int]:
        """Each listed blob's size, a chunk at a time; -1 for a blob directory without
        data (reported), whose data is no file (reported, UNSAFE), or whose copy
        is still under way (no blob yet)."""
        sizes = sizes_array(table.size)
        for chunk in table.chunks(CHUNK):
            data = [paths.blob_data(digest) for _, digest in chunk]
            infos = await self.snapshot.stat_many(data)
            for (index, digest), path, info in zip(chunk, data, infos, strict=True):
                if path in self.pending:
                    self._normal("write-in-progress")  # a copy under way, or cut short
                    if not await self.registry.blobs.exists(digest):
                        continue  # no blob yet (one copied again since is a blob)
                if isinstance(info, FileInfo):
                    sizes[index] = info.size
                elif isinstance(info, UnsafeEntryError):
                    self.verdicts.set(digest, UNSAFE)
                    await self._unsafe(info)
                else:
                    blob_dir = paths.blob_dir(digest)
                    await self._found(
                        "blob-no-data", blob_dir, "blob directory without data", blob_dir
                    )
        return sizes

    async def _check_blobs(self, blobs: list[_Blob]) -> None:
        """Hash every blob: small ones read in batches and hashed in a worker thread,
        large ones one at a time by the driver (in place on a local disk);
        ``workers`` of either at once."""
        if not self.check_data:
            for blob in blobs:
                await self._judge(blob, blob.digest.hex)
            return
        limiter = trio.CapacityLimiter(self.workers)
        small = [b for b in blobs if b.size <= SMALL_FILE]

        async def check(blob: _Blob) -> None:
            async with limiter:
                actual = await self._hash(blob.path, blob.digest.algorithm)
            await self._judge(blob, actual)

        async def check_batch(batch: list[_Blob]) -> None:
            async with limiter:
                contents = await self.driver.get_contents([b.path for b in batch])
                hashes = await trio.to_thread.run_sync(_hash_each, batch, contents)
            for blob, actual in zip(batch, hashes, strict=True):
                if isinstance(actual, UnsafeEntryError):
                    self.verdicts.set(blob.digest, UNSAFE)
                    await self._unsafe(actual)
                elif isinstance(actual, str):
                    self.progress(blob.size)
                    await self._judge(blob, actual)
                # else gone since it was listed (a gc beside us): neither good nor corrupt

        async with trio.open_nursery() as nursery:
            for batch in _batches(small):
                nursery.start_soon(check_batch, batch)
            for blob in blobs:
                if blob.size > SMALL_FILE:
                    nursery.start_soon(check, blob)

    async def _judge(self, blob: _Blob, actual: str) -> None:
        self.report.blobs += 1
        self.report.blob_bytes += blob.size
        if actual == blob.digest.hex:
            self.verdicts.set(blob.digest, GOOD)
            return
        self.verdicts.set(blob.digest, CORRUPT)
        await self._found(
            "blob-corrupt",
            blob.path,
            f"content hashes to {blob.digest.algorithm}:{actual}, not {blob.digest}",
            paths.blob_dir(blob.digest),
        )

    async def _hash(self, path: str, algorithm: str) -> str:
        return await self.driver.digest_file(path, algorithm, self.progress)

    # repositories ------------------------------------------------------------
    async def _read_link(self, path: str, remove: str) -> Digest | None:
        """The digest a link names; None when an API DELETE removed the link (counted)
        or after reporting it as unreadable."""
        self.report.links += 1
        try:
            content = await self.ahead.get(path)
        except PathNotFoundError:
            self._normal("deleted-link")
            return None
        except UnsafeEntryError as exc:
            await self._unsafe(exc)
            return None
        self.link_files.add(path)
        try:
            return decode_link(path, content)
        except InvalidLinkError as exc:
            await self._found("link-invalid", path, str(exc), remove)
            return None

    async def _link_dirs(self, directory: str) -> list[tuple[Digest, str]]:
        """``<alg>/<hex>`` directories below ``directory`` (odd names reported)."""
        return await walk.digest_dirs(self.snapshot, directory, self._odd)

    async def _links(self, directory: str) -> list[tuple[Digest, str, Digest]]:
        """(digest, link directory, target) of each usable link below
        ``directory/<alg>/<hex>``. Reported: a sha256 link naming another digest, and
        a link to a corrupt blob (a repair removes it with the blob)."""
        found = []
        for digest, entry in await self._link_dirs(directory):
            target = await self._read_link(paths.link_in(entry), entry)
            if target is None:
                continue
            if digest.algorithm == CANONICAL and target != digest:
                await self._found(
                    "link-mismatch",
                    paths.link_in(entry),
                    f"the link of {digest} names {target}",
                    entry,
                )
            elif self.verdicts.get(target) == CORRUPT:
                await self._found(
                    "link-dangling", paths.link_in(entry), f"names corrupt blob {target}", entry
                )
            else:
                found.append((digest, entry, target))
        return found

    async def _read_ahead(self, names: list[str]) -> None:
        """Every link file of these repositories, then the manifests their revisions
        name: a few batched reads where the checks read one file at a time."""
        links, revisions = [], []
        for name in names:
            layers = await walk.digest_dirs(self.snapshot, paths.layers_dir(name))
            links += [paths.link_in(e) for _, e in layers]
            held = await walk.digest_dirs(self.snapshot, paths.manifest_revisions(name))
            revisions += [paths.link_in(e) for _, e in held]
            for tag_dir in await self._list(paths.tags_dir(name)):
                links.append(paths.current_link_in(tag_dir))
                index = await walk.digest_dirs(self.snapshot, f"{tag_dir}/index")
                links += [paths.link_in(e) for _, e in index]
        await self.ahead.fetch(links + revisions)
        await self.ahead.fetch_named(revisions)

    async def _check_repository(self, name: str) -> None:
        self.link_files.clear()  # a manifest's references are looked up in its own repository
        await self._check_layer_links(name)
        manifests = await self._check_revisions(name)
        await self._check_tags(name, manifests)

    async def _check_layer_links(self, name: str) -> None:
        links = await self._links(paths.layers_dir(name))
        missing = {t for _, _, t in links if not self.verdicts.get(t)}  # no verdict: no blob
        holders = await uploads_holding(self.registry, name, missing)
        for _, entry, target in links:
            if self._good(target):
                continue
            if target in holders:
                await self._found(
                    "blob-copy-unfinished",
                    paths.link_in(entry),
                    f"names {target}, which is not in blobs/ but whose bytes upload"
                    f" {holders[target]} holds (a finish cut short inside its move);"
                    " a repair finishes that upload",
                    paths.link_in(entry),
                    fix=functools.partial(self._finish_from_upload, name, target),
                )
            else:
                self._normal("link-to-collected-blob")  # the registry's gc leaves these

    async def _finish_from_upload(self, name: str, target: Digest) -> None:
        """Complete the finish a crash cut short inside its move: the upload of
        ``name`` holding exactly ``target``'s bytes is validated, moved, linked and
        removed, as its own finish would have done."""
        holders = await uploads_holding(self.registry, name, {target})
        if target not in holders:
            raise NotRepairable(f"no upload of {name} holds the bytes of {target} any more")
        upload = await self.registry.repository(name).uploads.resume(holders[target])
        await upload.finish(target)
        self.verdicts.set(target, GOOD)

    async def _check_revisions(self, name: str) -> dict[Digest, str]:
        """Check every revision; returns the usable ones with their link directories."""
        revisions: dict[Digest, str] = {}
        parsed: dict[Digest, Manifest] = {}
        for digest, entry, target in await self._links(paths.manifest_revisions(name)):
            self.held.add((name, digest))
            if not self._good(target):
                await self._found(
                    "link-dangling", paths.link_in(entry), f"manifest {digest} has no blob", entry
                )
                continue
            manifest = await self._parse_revision(name, target, entry)
            if manifest is None:
                continue
            revisions[digest] = entry
            if isinstance(manifest, Manifest):
                parsed[digest] = manifest
        for digest, manifest in parsed.items():
            self.report.manifests += 1
            if not await self._references_present(name, digest, manifest, revisions):
                revisions.pop(digest)
        return revisions

    async def _parse_revision(
        self, name: str, digest: Digest, entry: str
    ) -> Manifest | bool | None:
        """The parsed manifest; True for a kind we only carry (an unknown type); None
        when it was reported as broken."""
        try:
            payload = await self.ahead.get(paths.blob_data(digest))
        except UnsafeEntryError:
            return None  # reported with the blobs
        try:
            return parse_manifest(payload)
        except ManifestInvalidError as exc:
            if _json_object(payload) is None:
                await self._found(
                    "manifest-invalid",
                    paths.blob_data(digest),
                    f"revision {digest} of {name} is not a JSON document: {exc}",
                    entry,
                )
                return None
            await self._found(
                "manifest-unknown", paths.blob_data(digest), f"revision {digest} of {name}: {exc}"
            )
            return True

    async def _references_present(
        self, name: str, digest: Digest, manifest: Manifest, revisions: dict[Digest, str]
    ) -> bool:
        missing = [d.digest for d in manifest.blob_references() if not self._good(d.digest)]
        missing += [d.digest for d in manifest.manifests if not self._good(d.digest)]
        if missing:
            # a blob whose data is a symlink is not known to be gone: nothing is removed
            unsafe = any(self.verdicts.get(d) == UNSAFE for d in missing)
            remove = None if unsafe else revisions[digest]
            await self._found(
                "manifest-missing-blob",
                paths.manifest_revision_link(name, digest),
                f"manifest {digest} of {name} references missing blobs: "
                + ", ".join(map(str, missing)),
                remove,
            )
            return False
        unlinked = []
        for ref in manifest.blob_references():
            if paths.layer_link(name, ref.digest) not in self.link_files:
                unlinked.append(ref.digest)
        unlinked += [d.digest for d in manifest.manifests if d.digest not in revisions]
        if unlinked:
            await self._found(
                "manifest-unlinked-blob",
                paths.manifest_revision_link(name, digest),
                f"manifest {digest} of {name} references blobs not linked into {name}: "
                + ", ".join(map(str, unlinked)),
            )
        return True

    async def _check_tags(self, name: str, revisions: dict[Digest, str]) -> None:
        for tag_dir in await self._list(paths.tags_dir(name)):
            await self._check_current(name, tag_dir, revisions)
            for digest, _, _ in await self._links(f"{tag_dir}/index"):
                if (name, digest) not in self.held:
                    self._normal("old-tag-history")  # a manifest deleted or collected since

    async def _check_current(self, name: str, tag_dir: str, revisions: dict[Digest, str]) -> None:
        """A tag the registry lists must name a manifest it can serve."""
        path = paths.current_link_in(tag_dir)
        self.report.links += 1
        try:
            current = decode_link(path, await self.ahead.get(path))
        except UnsafeEntryError as exc:
            await self._unsafe(exc)
        except PathNotFoundError:
            detail = "tag without its current link: listed, but it serves nothing"
            await self._found("tag-dangling", path, detail, tag_dir)
        except InvalidLinkError as exc:
            await self._found("link-invalid", path, str(exc), tag_dir)
        else:
            if current not in revisions:
                detail = f"tag names {current}, which is no usable manifest of {name}"
                await self._found("tag-dangling", path, detail, tag_dir)

    # uploads -----------------------------------------------------------------
    async def _list_uploads(self) -> list[_Upload]:
        found = []
        # odd repository directories are reported with the rest
        for name in await self.registry.repositories(walk.log_odd, self.snapshot):
            ids = await walk.upload_ids(self.snapshot, name, self._odd)
            infos = await self.driver.stat_many([paths.upload_data(name, i) for i in ids])
            for upload_id, info in zip(ids, infos, strict=True):
                data = paths.upload_data(name, upload_id)
                readable = data not in self.pending  # else reading would complete it
                if not readable:
                    self._normal("write-in-progress")
                if isinstance(info, UnsafeEntryError):
                    await self._unsafe(info)
                    continue
                size, has_data = (info.size, True) if isinstance(info, FileInfo) else (0, False)
                states = await self._hash_states(name, upload_id)
                found.append(_Upload(name, upload_id, size, states, has_data, readable))
        return found

    async def _read_uploads_ahead(self, uploads: list[_Upload]) -> None:
        """The start times and hash states of these uploads, and the data of the small
        ones with states (what their checks read)."""
        wanted = [paths.upload_started_at(u.repository, u.id) for u in uploads]
        wanted += [path for u in uploads if u.readable for path in u.states.values()]
        await self.ahead.fetch(wanted)
        small = [u for u in uploads if u.states and u.readable and 0 < u.size <= SMALL_FILE]
        for batch in _batches(small):
            await self.ahead.fetch(paths.upload_data(u.repository, u.id) for u in batch)

    async def _check_upload(self, limiter: trio.CapacityLimiter, upload: _Upload) -> None:
        self.report.uploads += 1
        where = paths.upload_dir(upload.repository, upload.id)
        try:
            started = await self.ahead.get(paths.upload_started_at(upload.repository, upload.id))
            parse_started_at(started)
        except UnsafeEntryError as exc:
            await self._unsafe(exc)
            return
        except PathNotFoundError:
            if not upload.has_data:  # what the registry's cancel (DELETE) leaves
                self._normal("cancelled-upload")
                return
            await self._found("upload-no-startedat", where, "upload without startedat", where)
            return
        except (ValueError, UnicodeDecodeError):
            await self._found("upload-no-startedat", where, "startedat is not a time", where)
            return
        if not upload.has_data and await self._finish_interrupted(upload):
            return
        if upload.states and not upload.readable:
            await self._check_states_unread(upload)
        elif upload.states:
            async with limiter:
                await self._check_states(upload)

    async def _finish_interrupted(self, upload: _Upload) -> bool:
        """Report (and with a repair, complete) a finish cut short between its move
        into ``blobs/`` and its link."""
        uploads = self.registry.repository(upload.repository).uploads
        digest = await uploads.interrupted_finish(upload.id)
        if digest is None:
            return False

        async def complete() -> None:
            await uploads.complete_interrupted_finish(upload.id, digest)

        where = paths.upload_dir(upload.repository, upload.id)
        detail = (
            f"a finish moved this upload into blob {digest} and stopped before linking it"
            f" into {upload.repository}; a repair links it and removes the upload"
        )
        await self._found("upload-finish-interrupted", where, detail, where, complete)
        return True

    async def _hash_states(self, name: str, upload_id: str) -> dict[int, str]:
        async def odd(path: str, why: str) -> None:
            await self._found("upload-bad-hashstate", path, why, path)

        return await walk.hash_states(self.snapshot, name, upload_id, odd)

    async def _check_states(self, upload: _Upload) -> None:
        """Hash the data once, comparing each stored state at its offset."""
        hasher = ResumableSha256()
        pending = sorted(upload.states.items())
        data = paths.upload_data(upload.repository, upload.id)
        try:
            async for chunk in self._chunks(data):
                self.progress(len(chunk))
                view = memoryview(chunk)
                while view:
                    offset = pending[0][0] if pending else hasher.size + len(view)
                    step = max(0, min(len(view), offset - hasher.size))
                    if step:
                        await trio.to_thread.run_sync(hasher.update, view[:step])
                        view = view[step:]
                    while pending and pending[0][0] == hasher.size:
                        await self._compare_state(hasher, *pending.pop(0))
        except PathNotFoundError:
            pass
        except UnsafeEntryError as exc:
            await self._unsafe(exc)
            return
        while pending and pending[0][0] == hasher.size:
            await self._compare_state(hasher, *pending.pop(0))
        for _ in pending:
            self._normal("state-beyond-data")

    async def _chunks(self, data: str) -> AsyncIterator[bytes]:
        """The upload's bytes: as read ahead (a small upload), or streamed."""
        ahead = self.ahead.peek(data)
        if ahead is not None:
            await self.ahead.get(data)
            yield ahead
            return
        async for chunk in self.driver.read_all(data, chunk=HASH_CHUNK):
            yield chunk

    async def _check_states_unread(self, upload: _Upload) -> None:
        """The states of data that cannot be read without changing the store (an S3
        multipart upload not completed): each must parse, name its own offset and lie
        within the data; whether it matches the bytes stays unknown."""
        for offset, path in sorted(upload.states.items()):
            if offset > upload.size:
                self._normal("state-beyond-data")
            else:
                await self._compare_state(None, offset, path)

    async def _compare_state(self, hasher: ResumableSha256 | None, offset: int, path: str) -> None:
        """A stored state against the hash of the first ``offset`` bytes (None: the
        bytes are not known, so only the state's own offset is checked)."""
        try:
            stored = ResumableSha256.unmarshal(await self.ahead.get(path))
        except UnsafeEntryError as exc:
            await self._unsafe(exc)
            return
        except (HashStateError, PathNotFoundError) as exc:
            await self._found("upload-bad-hashstate", path, f"unreadable state: {exc}", path)
            return
        if stored.size != offset:
            detail = f"state of {stored.size} bytes stored for offset {offset}"
            await self._found("upload-bad-hashstate", path, detail, path)
        elif hasher is not None and stored.marshal() != hasher.marshal():
            await self._found(
                "upload-bad-hashstate",
                path,
                f"state does not match the first {offset} bytes of the data",
                path,
            )


def _batches(blobs: list[_Blob] | list[_Upload]) -> list[list]:
    """Consecutive runs of at most BATCH_FILES files and BATCH_BYTES bytes."""
    batches: list[list] = []
    size = BATCH_BYTES
    for blob in blobs:
        if not batches or size + blob.size > BATCH_BYTES or len(batches[-1]) >= BATCH_FILES:
            batches.append([])
            size = 0
        batches[-1].append(blob)
        size += blob.size
    return batches


def _hash_each(blobs: list[_Blob], contents: list[bytes | Exception]) -> list[str | Exception]:
    """The hex digest of each blob's bytes (or the error that kept them from being
    read), in a worker thread."""
    return [
        hashlib.new(b.digest.algorithm, c).hexdigest() if isinstance(c, bytes) else c
        for b, c in zip(blobs, contents, strict=True)
    ]


def _json_object(payload: bytes) -> dict | None:
    try:
        doc = json.loads(payload)
    except (UnicodeDecodeError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


async def fsck(driver: StorageDriver, **options: Any) -> Report:
    """One check of ``driver``'s store with ``Fsck``'s options."""
    return await Fsck(driver, **options).run()
