"""Manifest documents: every kind a registry store holds, and what each references.

A store that docker-registry 2.8 has written for years holds Docker schema1
manifests (the registry stores them without their signatures, as
``application/vnd.docker.distribution.manifest.v1+json``; older writers kept the
signed ``+prettyjws`` form), Docker schema2 manifests and manifest lists, and OCI
image manifests and indexes, artifacts among them (``artifactType``, ``subject``).
What each references is what the registry's collector marks: schema1's
``fsLayers[].blobSum``, a manifest's config and layers, an index's manifests. A
``subject`` is not a reference: the registry keeps no subject alive for its
referrers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import NamedTuple

from .digest import CANONICAL, SHA256_TEXT, Digest
from .errors import InvalidDigestError, ManifestInvalidError

# How deep indexes may nest in what layerfs reads whole (an import, ``inspect``).
MAX_INDEX_DEPTH = 8
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_SCHEMA1 = "application/vnd.docker.distribution.manifest.v1+json"
DOCKER_SCHEMA1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"

SCHEMA1_TYPES = {DOCKER_SCHEMA1, DOCKER_SCHEMA1_SIGNED}
SCHEMA1_LAYER = "application/vnd.docker.container.image.rootfs.diff+x-gtar"
MANIFEST_TYPES = {DOCKER_MANIFEST, OCI_MANIFEST}
INDEX_TYPES = {DOCKER_MANIFEST_LIST, OCI_INDEX}
# Layers a registry does not hold: they are fetched from their ``urls``.
FOREIGN_LAYER_TYPES = {
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
}


class Descriptor(NamedTuple):
    """A reference to content. A tuple, not a dataclass: a pass parses some ten of
    them per manifest, of tens of thousands of manifests."""

    media_type: str
    digest: Digest
    size: int | None  # None: schema1 names its layers without sizes
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
    subject: Descriptor | None = None  # the manifest an artifact refers to
    artifact_type: str = ""

    @property
    def is_index(self) -> bool:
        return self.media_type in INDEX_TYPES

    @property
    def is_schema1(self) -> bool:
        return self.media_type in SCHEMA1_TYPES

    def blob_references(self) -> list[Descriptor]:
        """Blobs the repository must hold (config and layers, foreign layers excepted)."""
        refs = ([self.config] if self.config else []) + list(self.layers)
        return [d for d in refs if not d.is_foreign]


def _descriptor(raw: object, where: str) -> Descriptor:
    if type(raw) is dict and "urls" not in raw:  # the usual layer or config, in one go
        media_type, digest, size = raw.get("mediaType", ""), raw.get("digest"), raw.get("size")
        if (
            type(media_type) is str and type(digest) is str and SHA256_TEXT.fullmatch(digest)
            and type(size) is int and size >= 0
        ):  # fmt: skip
            return Descriptor(media_type, Digest(CANONICAL, digest[7:]), size)
    return _checked_descriptor(raw, where)


def _checked_descriptor(raw: object, where: str) -> Descriptor:
    """``_descriptor`` by every rule, one at a time, naming the one broken."""
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
    try:
        return tuple(_descriptor(item, key) for item in raw)
    except ManifestInvalidError:  # again, to name the entry: only on the way to an error
        for i, item in enumerate(raw):
            _descriptor(item, f"{key}[{i}]")
        raise


def _schema1(doc: dict) -> Manifest:
    """A Docker schema1 manifest: its layers are ``fsLayers[].blobSum``, often the
    same empty layer many times (listed once here)."""
    raw, history = doc.get("fsLayers"), doc.get("history")
    if not isinstance(raw, list):
        raise ManifestInvalidError("schema1 manifest has no 'fsLayers' list")
    if not isinstance(history, list) or len(history) != len(raw):
        raise ManifestInvalidError("schema1 manifest needs one 'history' entry per fsLayers entry")
    layers: dict[Digest, Descriptor] = {}
    for i, entry in enumerate(raw):
        blob_sum = entry.get("blobSum") if isinstance(entry, dict) else None
        try:
            digest = Digest.parse(blob_sum)  # type: ignore[arg-type]
        except InvalidDigestError as exc:
            raise ManifestInvalidError(f"fsLayers[{i}].blobSum: {exc}") from None
        layers.setdefault(digest, Descriptor(SCHEMA1_LAYER, digest, None))
    signed = "signatures" in doc
    media_type = DOCKER_SCHEMA1_SIGNED if signed else DOCKER_SCHEMA1
    return Manifest(media_type, None, tuple(layers.values()), ())


def _optional_descriptor(doc: dict, key: str) -> Descriptor | None:
    return None if doc.get(key) is None else _descriptor(doc[key], key)


def parse_manifest(payload: bytes) -> Manifest:
    """Parse any manifest a registry store holds (see the module's docstring)."""
    try:
        doc = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ManifestInvalidError(f"manifest is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise ManifestInvalidError("manifest is not a JSON object")
    media_type = doc.get("mediaType")
    if doc.get("schemaVersion") == 1:
        return _schema1(doc)
    if doc.get("schemaVersion") != 2:
        raise ManifestInvalidError(
            f"unsupported schemaVersion {doc.get('schemaVersion')!r}; want 2"
        )
    if media_type is None:  # OCI documents may leave it out
        if "manifests" in doc:
            media_type = OCI_INDEX
        elif "config" in doc:
            media_type = OCI_MANIFEST
    artifact_type = doc.get("artifactType", "")
    if not isinstance(artifact_type, str):
        raise ManifestInvalidError("artifactType is not a string")
    subject = _optional_descriptor(doc, "subject")
    if media_type in MANIFEST_TYPES:
        config = _descriptor(doc.get("config"), "config")
        layers = _descriptors(doc, "layers")
        return Manifest(media_type, config, layers, (), subject, artifact_type)
    if media_type in INDEX_TYPES:
        entries = _descriptors(doc, "manifests")
        return Manifest(media_type, None, (), entries, subject, artifact_type)
    raise ManifestInvalidError(f"unsupported manifest media type {media_type!r}")
