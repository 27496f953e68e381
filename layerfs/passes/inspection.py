"""What ``layerfs inspect`` shows of a tag or a manifest: the manifest as stored, what
it references with the stored sizes, an index's platforms, and the tag's history.

A tag is resolved as the registry resolves it: its ``current`` link, naming a
revision of the repository; a digest must be a revision too. An index's children are
read from their blobs (as gc reads them), so an index whose children's revisions
were deleted still shows what it names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from ..drivers import FileInfo, StorageDriver
from ..storage import paths, walk
from ..storage.digest import Digest
from ..storage.errors import ManifestInvalidError, ManifestUnknownError
from ..storage.graph import ManifestGraph, read_image
from ..storage.manifests import Manifest
from ..storage.registry import Registry


@dataclass(frozen=True)
class Blob:
    digest: Digest
    media_type: str
    size: int  # as stored (-1: not in the store)


@dataclass
class ManifestView:
    digest: Digest
    media_type: str
    raw: bytes
    manifest: Manifest
    platform: dict[str, str] = field(default_factory=dict)  # as an index entry names it
    config: Blob | None = None
    layers: list[Blob] = field(default_factory=list)
    children: list[ManifestView] = field(default_factory=list)

    def blobs(self) -> dict[Digest, int]:
        """Every blob below, each once, with its stored size."""
        found = {self.digest: len(self.raw)}
        for blob in [*([self.config] if self.config else []), *self.layers]:
            found[blob.digest] = blob.size
        for child in self.children:
            found.update(child.blobs())
        return found

    @property
    def total_size(self) -> int:
        return sum(size for size in self.blobs().values() if size > 0)


@dataclass(frozen=True)
class HistoryEntry:
    digest: Digest
    written: datetime | None
    current: bool


@dataclass
class Inspection:
    repository: str
    tag: str
    top: ManifestView
    history: list[HistoryEntry] = field(default_factory=list)


def parse_reference(text: str) -> tuple[str, str, Digest | None]:
    """``REPO:TAG`` or ``REPO@DIGEST`` (a bare ``REPO`` means ``REPO:latest``)."""
    if "@" in text:
        name, _, digest = text.partition("@")
        return name, "", Digest.parse(digest)
    name, colon, tag = text.rpartition(":")
    if not colon or "/" in tag:
        return text, "latest", None
    return name, tag, None


async def inspect(driver: StorageDriver, reference: str) -> Inspection:
    name, tag, digest = parse_reference(reference)
    registry = Registry(driver)
    repository = registry.repository(name)
    if digest is None:
        digest = await repository.tags.resolve(tag)
    raw = await repository.manifests.get(digest)  # a revision of this repository, or unknown
    graph = await _image_graph(registry, digest, raw)
    sizes = await _sizes(driver, graph)
    top = _view(graph, sizes, graph.number(digest), {})
    history = await _history(driver, name, tag, digest) if tag else []
    return Inspection(name, tag, top, history)


async def _image_graph(registry: Registry, digest: Digest, raw: bytes) -> ManifestGraph:
    """``digest`` (read as ``raw``) and the manifests its indexes name, read from
    their blobs (``read_image``: nested at most ``MAX_INDEX_DEPTH`` deep)."""

    async def get(wanted: Digest) -> bytes:
        return raw if wanted == digest else await registry.blobs.get(wanted)

    async def refuse(wanted: Digest, exc: Exception) -> None:
        if isinstance(exc, ManifestInvalidError):
            raise exc
        raise ManifestUnknownError(wanted) from None

    graph, _ = await read_image(digest, get, refuse)
    return graph


async def _sizes(driver: StorageDriver, graph: ManifestGraph) -> dict[Digest, int]:
    """The stored size of every blob the graph's manifests reference (-1: none), in
    one batch."""
    digests = sorted(graph.blob_references())
    infos = await driver.stat_many([paths.blob_data(d) for d in digests])
    return {
        d: info.size if isinstance(info, FileInfo) else -1
        for d, info in zip(digests, infos, strict=True)
    }


def _view(
    graph: ManifestGraph, sizes: dict[Digest, int], number: int, platform: dict[str, str]
) -> ManifestView:
    """The view of one manifest of ``graph`` and, an index, of its children (a depth
    the graph has bounded)."""
    raw, manifest = graph.kept[number]
    blobs = [Blob(r.digest, r.media_type, sizes[r.digest]) for r in manifest.blob_references()]
    view = ManifestView(graph.digest(number), manifest.media_type, raw, manifest, platform)
    if manifest.config is not None and blobs and blobs[0].digest == manifest.config.digest:
        view.config, view.layers = blobs[0], blobs[1:]
    else:
        view.layers = blobs
    view.children = [_view(graph, sizes, c, p) for c, p in graph.entries(number)]
    return view


async def _history(
    driver: StorageDriver, name: str, tag: str, current: Digest
) -> list[HistoryEntry]:
    """Every manifest the tag has named (its index), oldest first."""
    entries = await walk.digest_dirs(driver, paths.tag_index_dir(name, tag))
    links = [paths.link_in(entry) for _, entry in entries]
    infos = await driver.stat_many(links)
    found = [
        HistoryEntry(
            digest, info.mod_time if isinstance(info, FileInfo) else None, digest == current
        )
        for (digest, _), info in zip(entries, infos, strict=True)
        if not isinstance(info, Exception) or digest == current
    ]
    return sorted(
        found, key=lambda e: (e.written is None, e.written or datetime.min, str(e.digest))
    )


def platform_name(platform: dict[str, str]) -> str:
    parts = [platform.get("os", "?"), platform.get("architecture", "?")]
    if platform.get("variant"):
        parts.append(platform["variant"])
    return "/".join(parts)


__all__ = ["Blob", "HistoryEntry", "Inspection", "ManifestView", "inspect", "parse_reference"]
