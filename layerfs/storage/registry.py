"""A registry over a driver: repositories with their layers, uploads, manifests and tags."""

from __future__ import annotations

import logging

from ..drivers import PathNotFoundError, StorageDriver
from . import paths, walk
from .blobs import BlobInfo, BlobReader, BlobStore
from .digest import CANONICAL, Digest
from .errors import (
    BlobUnknownError,
    InvalidLinkError,
    ManifestBlobsUnknownError,
    ManifestUnknownError,
    TagUnknownError,
)
from .links import read_link, write_link
from .manifests import Manifest, parse_manifest
from .reference import validate_name, validate_tag
from .uploads import UploadStore

log = logging.getLogger(__name__)


async def _linked_digests(driver: StorageDriver, directory: str) -> list[Digest]:
    """Digests of the ``<alg>/<hex>`` directories below ``directory``."""

    return sorted(digest for digest, _ in await walk.digest_dirs(driver, directory, walk.log_odd))


class LayerStore:
    """``_layers/<alg>/<hex>/link``: which blobs a repository may serve."""

    def __init__(self, driver: StorageDriver, blobs: BlobStore, name: str) -> None:
        self.driver = driver
        self.blobs = blobs
        self.repository = name

    async def target(self, digest: Digest) -> Digest:
        """The canonical digest a layer link names (BlobUnknownError if unlinked)."""
        try:
            return await read_link(self.driver, paths.layer_link(self.repository, digest))
        except PathNotFoundError:
            raise BlobUnknownError(digest) from None

    async def stat(self, digest: Digest) -> BlobInfo:
        info = await self.blobs.stat(await self.target(digest))
        return BlobInfo(digest, info.size)

    async def exists(self, digest: Digest) -> bool:
        try:
            await self.stat(digest)
        except (BlobUnknownError, InvalidLinkError):
            return False
        return True

    async def open(self, digest: Digest) -> BlobReader:
        return await self.blobs.open(await self.target(digest))

    async def link(self, canonical: Digest, aliases: list[Digest] | None = None) -> None:
        """Link an existing blob (and its alias digests) into this repository."""
        await self.blobs.stat(canonical)
        for digest in dict.fromkeys([canonical, *(aliases or [])]):
            await write_link(self.driver, paths.layer_link(self.repository, digest), canonical)

    async def unlink(self, digest: Digest) -> None:
        path = paths.parent(paths.layer_link(self.repository, digest))
        if not await self.driver.delete_if_present(path):
            raise BlobUnknownError(digest)

    async def digests(self) -> list[Digest]:
        return await _linked_digests(self.driver, paths.layers_dir(self.repository))


class ManifestStore:
    """``_manifests/revisions``: the manifests of a repository, checked on the way in."""

    def __init__(
        self, driver: StorageDriver, blobs: BlobStore, layers: LayerStore, name: str
    ) -> None:
        self.driver = driver
        self.blobs = blobs
        self.layers = layers
        self.repository = name

    async def exists(self, digest: Digest) -> bool:
        try:
            target = await read_link(
                self.driver, paths.manifest_revision_link(self.repository, digest)
            )
        except (PathNotFoundError, InvalidLinkError):
            return False
        return await self.blobs.exists(target)

    async def get(self, digest: Digest) -> bytes:
        try:
            target = await read_link(
                self.driver, paths.manifest_revision_link(self.repository, digest)
            )
            return await self.blobs.get(target)
        except (PathNotFoundError, BlobUnknownError):
            raise ManifestUnknownError(digest) from None

    async def get_parsed(self, digest: Digest) -> Manifest:
        return parse_manifest(await self.get(digest))

    async def verify(self, manifest: Manifest) -> None:
        """Every blob and child manifest must be in this repository; list all that are not."""
        missing: list[Digest] = []
        for ref in manifest.blob_references():
            if not await self.layers.exists(ref.digest):
                missing.append(ref.digest)
        for ref in manifest.manifests:
            if not await self.exists(ref.digest):
                missing.append(ref.digest)
        if missing:
            raise ManifestBlobsUnknownError(list(dict.fromkeys(missing)))

    async def put(self, payload: bytes) -> Digest:
        """Store a manifest document and register it as a revision."""
        manifest = parse_manifest(payload)
        await self.verify(manifest)
        digest = await self.blobs.put(payload)
        await write_link(self.driver, paths.manifest_revision_link(self.repository, digest), digest)
        return digest

    async def register(self, digest: Digest) -> Manifest:
        """Register a blob already in the store as a manifest revision."""
        if digest.algorithm != CANONICAL:
            digest = await self.layers.target(digest)
        manifest = parse_manifest(await self.blobs.get(digest))
        await self.verify(manifest)
        await write_link(self.driver, paths.manifest_revision_link(self.repository, digest), digest)
        return manifest

    async def delete(self, digest: Digest, tags: TagStore) -> None:
        """Delete a revision and untag every tag whose current link names it."""
        for tag in await tags.tags_of(digest):
            await tags.untag(tag)
        path = paths.parent(paths.manifest_revision_link(self.repository, digest))
        if not await self.driver.delete_if_present(path):
            raise ManifestUnknownError(digest)

    async def digests(self) -> list[Digest]:
        return await _linked_digests(self.driver, paths.manifest_revisions(self.repository))


class TagStore:
    """``_manifests/tags/<tag>``: a current link and an index of every digest it named."""

    def __init__(self, driver: StorageDriver, manifests: ManifestStore, name: str) -> None:
        self.driver = driver
        self.manifests = manifests
        self.repository = name

    async def tag(self, tag: str, digest: Digest) -> None:
        validate_tag(tag)
        if not await self.manifests.exists(digest):
            raise ManifestUnknownError(digest)
        # The current link first: a write cut short after it leaves a tag that serves,
        # missing one history entry; the other order would leave a tag the registry
        # lists and cannot resolve.
        await write_link(self.driver, paths.tag_current_link(self.repository, tag), digest)
        await write_link(self.driver, paths.tag_index_link(self.repository, tag, digest), digest)

    async def resolve(self, tag: str) -> Digest:
        validate_tag(tag)
        try:
            return await read_link(self.driver, paths.tag_current_link(self.repository, tag))
        except PathNotFoundError:
            raise TagUnknownError(tag) from None

    async def untag(self, tag: str) -> None:
        validate_tag(tag)
        if not await self.driver.delete_if_present(paths.tag_dir(self.repository, tag)):
            raise TagUnknownError(tag)

    async def list(self) -> list[str]:
        return sorted(await walk.names(self.driver, paths.tags_dir(self.repository), walk.log_odd))

    async def tags_of(self, digest: Digest) -> list[str]:
        found = []
        for tag in await self.list():
            try:
                if await self.resolve(tag) == digest:
                    found.append(tag)
            except (TagUnknownError, InvalidLinkError):
                continue
        return found


class Repository:
    def __init__(self, driver: StorageDriver, blobs: BlobStore, name: str) -> None:
        self.name = validate_name(name)
        self.driver = driver
        self.blobs = blobs
        self.layers = LayerStore(driver, blobs, name)
        self.uploads = UploadStore(driver, blobs, self.layers.link, name)
        self.manifests = ManifestStore(driver, blobs, self.layers, name)
        self.tags = TagStore(driver, self.manifests, name)

    async def write_link(
        self, kind: str, target: Digest, named: Digest | None = None, tag: str = ""
    ) -> None:
        """Write the link of ``kind`` (a ``paths.LINK_KINDS`` name) at the path that
        ``named`` (or ``tag``) gives, holding ``target``, as the registry's rules allow:

        - every link holds a sha256 digest, the one the registry names blobs by;
        - a revision link holds the digest its path names, and registers a manifest
          whose blobs are all linked here;
        - a layer link holds the digest its path names, or, at another algorithm's
          path, the sha256 of a blob that hashes to that digest (an alias);
        - a tag link names a revision of this repository; the index link beside it
          is written by tagging, never on its own.
        """
        if kind == "tag_link":
            await self.tags.tag(tag, target)
            return
        if kind not in ("layer_link", "revision_link") or named is None:
            raise InvalidLinkError(f"{kind.replace('_', ' ')}s are written by tagging")
        if target.algorithm != CANONICAL:
            raise InvalidLinkError(f"a link names a blob by its sha256 digest, not {target}")
        if kind == "revision_link":
            if named != target:
                raise InvalidLinkError(f"revision link of {named} must hold {named}, not {target}")
            await self.manifests.register(target)
        elif named.algorithm == CANONICAL:
            if named != target:
                raise InvalidLinkError(f"layer link of {named} must hold {named}, not {target}")
            await self.layers.link(target)
        else:
            await self.blobs.stat(target)
            actual = await self.driver.hash_file(paths.blob_data(target), [named.algorithm])
            if actual[named.algorithm] != named.hex:
                raise InvalidLinkError(f"blob {target} does not hash to {named}")
            await self.layers.link(target, [named])

    async def remove_link(self, kind: str, named: Digest | None = None, tag: str = "") -> None:
        """Remove a link as the registry's API does: a revision goes with the tags
        that name it; a tag's current link goes with the whole tag (a tag without it
        is one the registry lists and cannot serve); other links alone."""
        if kind == "revision_link" and named is not None:
            await self.manifests.delete(named, self.tags)
        elif kind == "tag_link":
            await self.tags.untag(tag)
        elif kind == "layer_link" and named is not None:
            await self.driver.delete(paths.layer_link(self.name, named))
        elif kind == "tag_index_link" and named is not None:
            await self.driver.delete(paths.tag_index_link(self.name, tag, named))
        else:
            raise InvalidLinkError(f"no {kind.replace('_', ' ')} to remove")


class Registry:
    """Entry point: the blob store and the repositories of one driver."""

    def __init__(self, driver: StorageDriver) -> None:
        self.driver = driver
        self.blobs = BlobStore(driver)

    def repository(self, name: str) -> Repository:
        return Repository(self.driver, self.blobs, name)

    async def repositories(
        self, on_odd: walk.OnOdd = walk.log_odd, lister: walk.Lister | None = None
    ) -> list[str]:
        """Names of directories holding ``_layers``, ``_manifests`` or ``_uploads``.
        A directory that cannot be entered (a symbolic link) goes to ``on_odd``."""
        found: list[str] = []
        source = lister or self.driver

        async def visit(prefix: str) -> None:
            children = await walk.names(source, f"{paths.REPOSITORIES}{prefix}", on_odd)
            if any(c.startswith("_") for c in children):
                found.append(prefix.lstrip("/"))
            for child in children:
                if not child.startswith("_"):
                    await visit(f"{prefix}/{child}")

        await visit("")
        return sorted(found)
