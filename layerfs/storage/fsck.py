"""Checking a store: blob contents, link files, manifests and uploads.

Every finding names the store path it is about and, when the thing is provably
broken, the path whose removal repairs it. What is only odd (an unknown manifest
type, a manifest whose blobs exist but are not linked into its repository) is
reported and never removed. Blobs are checked first, so that links and manifests
are judged against the blobs that survive a repair.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import trio

from ..drivers import PathNotFoundError, StorageDriver
from ..drivers.base import HASH_CHUNK
from . import paths
from .digest import ALGORITHMS, CANONICAL, Digest
from .errors import InvalidDigestError, InvalidLinkError, ManifestInvalidError
from .hashstate import HashStateError, ResumableSha256
from .links import decode_link
from .manifests import DOCKER_SCHEMA1, DOCKER_SCHEMA1_SIGNED, Manifest, parse_manifest
from .registry import Registry
from .uploads import UUID_RE, parse_started_at

log = logging.getLogger(__name__)

Progress = Callable[[int], None]
SCHEMA1_TYPES = (DOCKER_SCHEMA1, DOCKER_SCHEMA1_SIGNED)  # carried, not checked


@dataclass
class Finding:
    kind: str
    path: str
    detail: str
    remove: str | None = None  # what a repair deletes; None: reported only
    removed: bool = False

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


class Fsck:
    """One check of one store; ``run`` returns the report."""

    def __init__(
        self,
        driver: StorageDriver,
        repair: bool = False,
        workers: int = 2,
        progress: Progress | None = None,
        on_total: Callable[[int], None] | None = None,
    ) -> None:
        self.driver = driver
        self.registry = Registry(driver)
        self.repair = repair
        self.workers = max(1, workers)
        self.progress = progress or (lambda n: None)
        self.on_total = on_total or (lambda n: None)
        self.report = Report()
        self.good_blobs: set[Digest] = set()

    async def run(self) -> Report:
        blobs = await self._list_blobs()
        uploads = await self._list_uploads()
        hashed = sum(u.size for u in uploads if u.states)
        self.on_total(sum(b.size for b in blobs) + hashed)
        await self._check_blobs(blobs)
        for name in await self.registry.repositories():
            self.report.repositories += 1
            await self._check_repository(name)
        limiter = trio.CapacityLimiter(self.workers)
        async with trio.open_nursery() as nursery:
            for upload in uploads:
                nursery.start_soon(self._check_upload, limiter, upload)
        return self.report

    # bookkeeping -----------------------------------------------------------
    async def _found(self, kind: str, path: str, detail: str, remove: str | None = None) -> None:
        finding = Finding(kind, path, detail, remove)
        self.report.findings.append(finding)
        log.warning("%s: %s (%s)", path, detail, kind)
        if self.repair and remove is not None:
            await self.driver.delete_if_present(remove)
            finding.removed = True
            log.warning("removed %s", remove)

    async def _list(self, path: str) -> list[str]:
        return sorted(await self.driver.list_if_present(path))

    # blobs -----------------------------------------------------------------
    async def _list_blobs(self) -> list[_Blob]:
        found = []
        for alg_dir in await self._list(paths.BLOBS):
            algorithm = alg_dir.rsplit("/", 1)[1]
            if algorithm not in ALGORITHMS:
                await self._found("odd-entry", alg_dir, "not a digest algorithm")
                continue
            for prefix in await self._list(alg_dir):
                for blob_dir in await self._list(prefix):
                    blob = await self._blob_at(algorithm, prefix, blob_dir)
                    if blob is not None:
                        found.append(blob)
        return found

    async def _blob_at(self, algorithm: str, prefix: str, blob_dir: str) -> _Blob | None:
        hexpart = blob_dir.rsplit("/", 1)[1]
        try:
            digest = Digest.from_parts(algorithm, hexpart)
        except InvalidDigestError:
            await self._found("odd-entry", blob_dir, "not a blob directory (name is no digest)")
            return None
        if prefix.rsplit("/", 1)[1] != hexpart[:2]:
            await self._found("odd-entry", blob_dir, "blob directory under the wrong prefix")
            return None
        try:
            info = await self.driver.stat(paths.blob_data(digest))
        except PathNotFoundError:
            await self._found("blob-no-data", blob_dir, "blob directory without data", blob_dir)
            return None
        return _Blob(digest, paths.blob_data(digest), info.size)

    async def _check_blobs(self, blobs: list[_Blob]) -> None:
        limiter = trio.CapacityLimiter(self.workers)

        async def check(blob: _Blob) -> None:
            async with limiter:
                actual = await self._hash(blob.path, blob.digest.algorithm)
            self.report.blobs += 1
            self.report.blob_bytes += blob.size
            if actual == blob.digest.hex:
                self.good_blobs.add(blob.digest)
                return
            await self._found(
                "blob-corrupt",
                blob.path,
                f"content hashes to {blob.digest.algorithm}:{actual}, not {blob.digest}",
                paths.blob_dir(blob.digest),
            )

        async with trio.open_nursery() as nursery:
            for blob in blobs:
                nursery.start_soon(check, blob)

    async def _hash(self, path: str, algorithm: str) -> str:
        return await self.driver.digest_file(path, algorithm, self.progress)

    # repositories ------------------------------------------------------------
    async def _read_link(self, path: str, remove: str) -> Digest | None:
        """The digest a link names, or None after reporting why it cannot be used."""
        self.report.links += 1
        try:
            content = await self.driver.get_content(path)
        except PathNotFoundError:
            await self._found("link-missing", path, "directory without its link file", remove)
            return None
        try:
            return decode_link(path, content)
        except InvalidLinkError as exc:
            await self._found("link-invalid", path, str(exc), remove)
            return None

    async def _link_dirs(self, directory: str) -> list[tuple[Digest, str]]:
        """``<alg>/<hex>`` directories below ``directory`` (odd names reported)."""
        found = []
        for alg_dir in await self._list(directory):
            for entry in await self._list(alg_dir):
                try:
                    digest = Digest.from_parts(alg_dir.rsplit("/", 1)[1], entry.rsplit("/", 1)[1])
                except InvalidDigestError:
                    await self._found("odd-entry", entry, "not a digest directory")
                    continue
                found.append((digest, entry))
        return found

    async def _check_repository(self, name: str) -> None:
        await self._check_layer_links(name)
        manifests = await self._check_revisions(name)
        await self._check_tags(name, manifests)

    async def _links_to_blobs(
        self, directory: str, missing: Callable[[Digest, Digest], str]
    ) -> dict[Digest, str]:
        """Read the link below each ``directory/<alg>/<hex>``; report those naming no
        sound blob (``missing`` says how); returns the others' link directories."""
        sound: dict[Digest, str] = {}
        for digest, entry in await self._link_dirs(directory):
            target = await self._read_link(f"{entry}/link", entry)
            if target is None:
                continue
            if target not in self.good_blobs:
                await self._found("link-dangling", f"{entry}/link", missing(digest, target), entry)
                continue
            sound[digest] = entry
        return sound

    async def _check_layer_links(self, name: str) -> None:
        await self._links_to_blobs(
            paths.layers_dir(name),
            lambda digest, target: f"links {digest} to missing blob {target}",
        )

    async def _check_revisions(self, name: str) -> dict[Digest, str]:
        """Check every revision; returns the usable ones with their link directories."""
        revisions = await self._links_to_blobs(
            paths.manifest_revisions(name), lambda digest, _: f"manifest {digest} has no blob"
        )
        parsed: dict[Digest, Manifest] = {}
        for digest, entry in list(revisions.items()):
            manifest = await self._parse_revision(name, digest, entry)
            if manifest is None:
                revisions.pop(digest)
            elif isinstance(manifest, Manifest):
                parsed[digest] = manifest
        for digest, manifest in parsed.items():
            self.report.manifests += 1
            if not await self._references_present(name, digest, manifest, revisions):
                revisions.pop(digest)
        return revisions

    async def _parse_revision(
        self, name: str, digest: Digest, entry: str
    ) -> Manifest | bool | None:
        """The parsed manifest; True for a kind we only carry (schema1, unknown types);
        None when it was reported as broken."""
        payload = await self.driver.get_content(paths.blob_data(digest))
        try:
            return parse_manifest(payload)
        except ManifestInvalidError as exc:
            doc = _json_object(payload)
            if doc is None:
                await self._found(
                    "manifest-invalid",
                    paths.blob_data(digest),
                    f"revision {digest} of {name} is not a JSON document: {exc}",
                    entry,
                )
                return None
            if doc.get("schemaVersion") == 1 or doc.get("mediaType") in SCHEMA1_TYPES:
                return True
            await self._found(
                "manifest-unknown", paths.blob_data(digest), f"revision {digest} of {name}: {exc}"
            )
            return True

    async def _references_present(
        self, name: str, digest: Digest, manifest: Manifest, revisions: dict[Digest, str]
    ) -> bool:
        missing = [d.digest for d in manifest.blob_references() if d.digest not in self.good_blobs]
        missing += [d.digest for d in manifest.manifests if d.digest not in self.good_blobs]
        if missing:
            await self._found(
                "manifest-missing-blob",
                paths.manifest_revision_link(name, digest),
                f"manifest {digest} of {name} references missing blobs: "
                + ", ".join(map(str, missing)),
                revisions[digest],
            )
            return False
        unlinked = []
        for ref in manifest.blob_references():
            if not await self.driver.exists(paths.layer_link(name, ref.digest)):
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
            current = await self._read_link(f"{tag_dir}/current/link", tag_dir)
            if current is not None and current not in revisions:
                await self._found(
                    "tag-dangling",
                    f"{tag_dir}/current/link",
                    f"tag names {current}, which is no usable manifest of {name}",
                    tag_dir,
                )
            await self._links_to_blobs(
                f"{tag_dir}/index",
                lambda digest, _: f"tag history names {digest}, which has no blob",
            )

    # uploads -----------------------------------------------------------------
    async def _list_uploads(self) -> list[_Upload]:
        found = []
        for name in await self.registry.repositories():
            for entry in await self._list(paths.uploads_dir(name)):
                upload_id = entry.rsplit("/", 1)[1]
                if not UUID_RE.fullmatch(upload_id):
                    await self._found("odd-entry", entry, "not an upload directory")
                    continue
                try:
                    size = (await self.driver.stat(paths.upload_data(name, upload_id))).size
                except PathNotFoundError:
                    size = 0
                states = await self._hash_states(name, upload_id)
                found.append(_Upload(name, upload_id, size, states))
        return found

    async def _check_upload(self, limiter: trio.CapacityLimiter, upload: _Upload) -> None:
        self.report.uploads += 1
        where = paths.upload_dir(upload.repository, upload.id)
        try:
            started = await self.driver.get_content(
                paths.upload_started_at(upload.repository, upload.id)
            )
            parse_started_at(started)
        except PathNotFoundError:
            await self._found("upload-no-startedat", where, "upload without startedat", where)
            return
        except (ValueError, UnicodeDecodeError):
            await self._found("upload-no-startedat", where, "startedat is not a time", where)
            return
        if upload.states:
            async with limiter:
                await self._check_states(upload)

    async def _hash_states(self, name: str, upload_id: str) -> dict[int, str]:
        states = {}
        for path in await self._list(paths.upload_hash_states(name, upload_id, CANONICAL)):
            try:
                states[int(path.rsplit("/", 1)[1])] = path
            except ValueError:
                await self._found("upload-bad-hashstate", path, "name is not an offset", path)
        return states

    async def _check_states(self, upload: _Upload) -> None:
        """Hash the data once, comparing each stored state at its offset."""
        hasher = ResumableSha256()
        pending = sorted(upload.states.items())
        data = paths.upload_data(upload.repository, upload.id)
        try:
            async for chunk in self.driver.read_all(data, chunk=HASH_CHUNK):
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
        while pending and pending[0][0] == hasher.size:
            await self._compare_state(hasher, *pending.pop(0))
        for offset, path in pending:
            await self._found(
                "upload-bad-hashstate",
                path,
                f"state for offset {offset} beyond the data ({upload.size})",
                path,
            )

    async def _compare_state(self, hasher: ResumableSha256, offset: int, path: str) -> None:
        try:
            stored = ResumableSha256.unmarshal(await self.driver.get_content(path))
        except (HashStateError, PathNotFoundError) as exc:
            await self._found("upload-bad-hashstate", path, f"unreadable state: {exc}", path)
            return
        if stored.size != offset or stored.marshal() != hasher.marshal():
            await self._found(
                "upload-bad-hashstate",
                path,
                f"state does not match the first {offset} bytes of the data",
                path,
            )


def _json_object(payload: bytes) -> dict | None:
    try:
        doc = json.loads(payload)
    except (UnicodeDecodeError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


async def fsck(
    driver: StorageDriver,
    repair: bool = False,
    workers: int = 2,
    progress: Progress | None = None,
    on_total: Callable[[int], None] | None = None,
) -> Report:
    return await Fsck(driver, repair, workers, progress, on_total).run()
