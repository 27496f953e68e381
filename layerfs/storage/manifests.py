"""Manifest documents: which kinds are accepted and what each one references."""

from __future__ import annotations

import json
from dataclasses import dataclass

from .digest import Digest
from .errors import InvalidDigestError, ManifestInvalidError

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_SCHEMA1 = "application/vnd.docker.distribution.manifest.v1+json"
DOCKER_SCHEMA1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"

MANIFEST_TYPES = {DOCKER_MANIFEST, OCI_MANIFEST}
INDEX_TYPES = {DOCKER_MANIFEST_LIST, OCI_INDEX}
# Layers a registry does not hold: they are fetched from their ``urls``.
FOREIGN_LAYER_TYPES = {
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
}


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: Digest
    size: int
    urls: tuple[str, ...] = ()

    @property
    def is_foreign(self) -> bool:
        return self.media_type in FOREIGN_LAYER_TYPES and bool(self.urls)


@dataclass(frozen=True)
class Manifest:
    media_type: str
    config: Descriptor | None
    layers: tuple[Descriptor, ...]
    manifests: tuple[Descriptor, ...]  # the entries of an index or manifest list

    @property
    def is_index(self) -> bool:
        return self.media_type in INDEX_TYPES

    def blob_references(self) -> list[Descriptor]:
        """Blobs the repository must hold (config and layers, foreign layers excepted)."""
        refs = ([self.config] if self.config else []) + list(self.layers)
        return [d for d in refs if not d.is_foreign]


def _descriptor(raw: object, where: str) -> Descriptor:
    if not isinstance(raw, dict):
        raise ManifestInvalidError(f"{where} is not an object")
    media_type = raw.get("mediaType", "")
    digest, size, urls = raw.get("digest"), raw.get("size"), raw.get("urls") or []
    if not isinstance(media_type, str):
        raise ManifestInvalidError(f"{where}.mediaType is not a string")
    try:
        parsed = Digest.parse(digest)  # type: ignore[arg-type]
    except InvalidDigestError as exc:
        raise ManifestInvalidError(f"{where}.digest: {exc}") from None
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise ManifestInvalidError(f"{where}.size must be a non-negative integer")
    if not isinstance(urls, list) or not all(isinstance(u, str) for u in urls):
        raise ManifestInvalidError(f"{where}.urls must be a list of strings")
    return Descriptor(media_type, parsed, size, tuple(urls))


def _descriptors(doc: dict, key: str) -> tuple[Descriptor, ...]:
    raw = doc.get(key)
    if not isinstance(raw, list):
        raise ManifestInvalidError(f"manifest has no {key!r} list")
    return tuple(_descriptor(item, f"{key}[{i}]") for i, item in enumerate(raw))


def parse_manifest(payload: bytes) -> Manifest:
    """Parse a Docker schema2 manifest or list, an OCI manifest or index."""
    try:
        doc = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ManifestInvalidError(f"manifest is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise ManifestInvalidError("manifest is not a JSON object")
    media_type = doc.get("mediaType")
    if doc.get("schemaVersion") == 1 or media_type in (DOCKER_SCHEMA1, DOCKER_SCHEMA1_SIGNED):
        raise ManifestInvalidError("schema1 manifests are not supported")
    if doc.get("schemaVersion") != 2:
        raise ManifestInvalidError(
            f"unsupported schemaVersion {doc.get('schemaVersion')!r}; want 2"
        )
    if media_type is None:  # OCI documents may leave it out
        if "manifests" in doc:
            media_type = OCI_INDEX
        elif "config" in doc:
            media_type = OCI_MANIFEST
    if media_type in MANIFEST_TYPES:
        return Manifest(
            media_type, _descriptor(doc.get("config"), "config"), _descriptors(doc, "layers"), ()
        )
    if media_type in INDEX_TYPES:
        return Manifest(media_type, None, (), _descriptors(doc, "manifests"))
    raise ManifestInvalidError(f"unsupported manifest media type {media_type!r}")
