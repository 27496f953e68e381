"""fsck's repository checks: layer links, revisions and the manifests they name,
tags.
"""

from __future__ import annotations

import functools

from ...drivers import PathNotFoundError, UnsafeEntryError
from ...storage import paths, walk
from ...storage.digest import CANONICAL, Digest
from ...storage.errors import InvalidLinkError, ManifestInvalidError
from ...storage.holders import uploads_holding
from ...storage.links import decode_link
from ...storage.manifests import Manifest, parse_manifest
from .base import CORRUPT, GOOD, UNSAFE, Checks, StillSo, json_object
from .report import NotRepairable


class RepositoryChecks(Checks):
    async def _read_link(
        self, path: str, remove: str, named: Digest | None = None
    ) -> tuple[bytes | None, Digest | None]:
        """The link file's bytes (None: not there) and the digest they name
        (``named``, its directory's, is the one expected): None when an API DELETE
        removed the link (counted) or after reporting it as unreadable."""
        self.report.links += 1
        try:
            content = await self.ahead.get(path)
        except PathNotFoundError:
            self._normal("deleted-link")
            return None, None
        except UnsafeEntryError as exc:
            await self._unsafe(exc)
            return None, None
        try:
            return content, decode_link(path, content, named)
        except InvalidLinkError as exc:
            still = self._unchanged(path, content)
            await self._found("link-invalid", path, str(exc), remove, still=still)
            return content, None

    async def _link_dirs(self, directory: str) -> list[tuple[Digest, str]]:
        """``<alg>/<hex>`` directories below ``directory`` (odd names reported)."""
        return await walk.digest_dirs(self.snapshot, directory, self._odd)

    async def _links(
        self, directory: str, files: set[Digest] | None = None
    ) -> list[tuple[Digest, str, Digest, int]]:
        """(digest, link directory, target, the target's verdict) of each usable link
        below ``directory/<alg>/<hex>``; the digest of each whose link file is there,
        usable or not, into ``files``. Reported: a sha256 link naming another digest,
        and a link to a corrupt blob (a repair removes it with the blob)."""
        found = []
        for digest, entry in await self._link_dirs(directory):
            path = paths.link_in(entry)
            content, target = await self._read_link(path, entry, digest)
            if content is not None and files is not None:
                files.add(digest)
            if target is None:
                continue
            verdict = self.verdicts.get(target)
            if digest.algorithm == CANONICAL and target != digest:
                detail = f"the link of {digest} names {target}"
                still = self._unchanged(path, content)
                await self._found("link-mismatch", path, detail, entry, still=still)
            elif verdict == CORRUPT:
                detail = f"names corrupt blob {target}"
                still = self._unchanged(path, content)
                await self._found("link-dangling", path, detail, entry, still=still)
            else:
                found.append((digest, entry, target, verdict))
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
                index = await walk.digest_dirs(self.snapshot, paths.index_in(tag_dir))
                links += [paths.link_in(e) for _, e in index]
        await self.ahead.fetch(links + revisions)
        await self.ahead.fetch_named(revisions)

    async def _check_repository(self, name: str) -> None:
        self.layer_link_files.clear()  # a manifest's references are looked up in its own repo
        self.missing_of.clear()
        await self._check_layer_links(name)
        manifests = await self._check_revisions(name)
        await self._check_tags(name, manifests)

    async def _check_layer_links(self, name: str) -> None:
        links = await self._links(paths.layers_dir(name), self.layer_link_files)
        missing = {t for _, _, t, verdict in links if not verdict}  # no verdict: no blob
        holders = await uploads_holding(self.registry, name, missing)
        for _, entry, target, verdict in links:
            if verdict == GOOD:
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
        for digest, entry, target, verdict in await self._links(paths.manifest_revisions(name)):
            self.held.add((name, digest))
            if verdict != GOOD:
                detail = f"manifest {digest} has no blob"
                still = self._absent_blobs([target])  # none was listed: pushed since?
                await self._found("link-dangling", paths.link_in(entry), detail, entry, still=still)
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
            if json_object(payload) is None:
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
            # unless pushed since the blobs were listed (a corrupt one stays so)
            self.missing_of[digest] = [d for d in missing if self.verdicts.get(d) != CORRUPT]
            await self._found(
                "manifest-missing-blob",
                paths.manifest_revision_link(name, digest),
                f"manifest {digest} of {name} references missing blobs: "
                + ", ".join(map(str, missing)),
                remove,
                still=self._absent_blobs(self.missing_of[digest]),
            )
            return False
        unlinked = [
            ref.digest
            for ref in manifest.blob_references()
            if ref.digest not in self.layer_link_files
        ]
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
            for digest, _, _, _ in await self._links(paths.index_in(tag_dir)):
                if (name, digest) not in self.held:
                    self._normal("old-tag-history")  # a manifest deleted or collected since

    async def _check_current(self, name: str, tag_dir: str, revisions: dict[Digest, str]) -> None:
        """A tag the registry lists must name a manifest it can serve."""
        path = paths.current_link_in(tag_dir)
        self.report.links += 1
        content = None
        try:
            content = await self.ahead.get(path)
            current = decode_link(path, content)
        except UnsafeEntryError as exc:
            await self._unsafe(exc)
        except PathNotFoundError:
            detail = "tag without its current link: listed, but it serves nothing"
            still = self._unchanged(path, None)
            await self._found("tag-dangling", path, detail, tag_dir, still=still)
        except InvalidLinkError as exc:
            still = self._unchanged(path, content)
            await self._found("link-invalid", path, str(exc), tag_dir, still=still)
        else:
            if current not in revisions:
                detail = f"tag names {current}, which is no usable manifest of {name}"
                still = self._all(self._unchanged(path, content), *self._unusable(name, current))
                await self._found("tag-dangling", path, detail, tag_dir, still=still)

    def _unusable(self, name: str, digest: Digest) -> list[StillSo]:
        """Second looks: manifest ``digest`` of ``name`` is still no usable one, for
        the reason this check found (a push since may have stored what it lacked)."""
        if digest in self.missing_of:  # held, but blobs it references are missing
            return [self._absent_blobs(self.missing_of[digest])]
        if (name, digest) in self.held and self.verdicts.get(digest) == GOOD:
            return []  # held, not a manifest: its bytes never change
        return [self._unheld(name, digest)]

    def _unheld(self, name: str, digest: Digest) -> StillSo:
        """A second look: ``name`` still lacks a revision of ``digest`` with its blob (a
        push stores the blob and the revision before it tags; the blobs were listed
        before that push)."""

        async def still() -> bool:
            try:
                link = await self.driver.get_content(paths.manifest_revision_link(name, digest))
                held = decode_link(paths.manifest_revision_link(name, digest), link, digest)
                await self.driver.stat(paths.blob_data(held))
            except (PathNotFoundError, InvalidLinkError):
                return True
            return False

        return still
