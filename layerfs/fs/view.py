"""Where a path of the mounted view points: the store's layout, with uploads shown
as plain files (``_uploads/<name>``) instead of ``_uploads/<uuid>/...`` directories."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from ..storage import Digest, paths

Parts = tuple[str, ...]
SPECIAL_DIRS = ("_layers", "_manifests", "_uploads")


class Kind(enum.Enum):
    ROOT = "root"
    BLOB_DIR = "blob directory"  # blobs/, blobs/<alg>/, .../<hh>/, .../<hex>/
    BLOB_DATA = "blob"
    NAMESPACE = "repository directory"  # repositories/ and the directories of names
    UPLOADS = "uploads directory"
    UPLOAD = "upload"
    LINK_DIR = "link directory"  # below _layers and _manifests
    LAYER_LINK = "layer link"
    REVISION_LINK = "manifest revision link"
    TAG_LINK = "tag link"
    TAG_INDEX_LINK = "tag index link"
    OTHER = "store entry"  # anything else the store holds: shown read-only


LINK_KINDS = {Kind.LAYER_LINK, Kind.REVISION_LINK, Kind.TAG_LINK, Kind.TAG_INDEX_LINK}
DIR_KINDS = {Kind.ROOT, Kind.BLOB_DIR, Kind.NAMESPACE, Kind.UPLOADS, Kind.LINK_DIR}


@dataclass(frozen=True)
class Place:
    kind: Kind
    parts: Parts
    repository: str = ""  # the repository name, for places inside one
    sub: Parts = ()  # components after _layers / _manifests / _uploads

    @property
    def store_path(self) -> str:
        return "/".join((paths.ROOT, *self.parts)) if self.parts else paths.ROOT

    @property
    def is_dir(self) -> bool:
        return self.kind in DIR_KINDS

    @property
    def upload_name(self) -> str:
        return self.sub[0]

    @property
    def link_digest(self) -> Digest:
        """The digest a link's path names (the tag link names none)."""
        if self.kind == Kind.LAYER_LINK:
            return Digest.from_parts(self.sub[0], self.sub[1])
        if self.kind == Kind.REVISION_LINK:
            return Digest.from_parts(self.sub[1], self.sub[2])
        if self.kind == Kind.TAG_INDEX_LINK:
            return Digest.from_parts(self.sub[3], self.sub[4])
        raise ValueError(f"{self.kind.value} names no digest in its path")

    @property
    def tag(self) -> str:
        return self.sub[1]

    @property
    def is_special_root(self) -> bool:
        """``_layers``, ``_manifests``, ``_uploads`` and the fixed directories below
        ``_manifests``: present in every repository, stored or not."""
        return (self.kind == Kind.UPLOADS) or (
            self.kind == Kind.LINK_DIR
            and (self.sub == () or (self.parts[-2] == "_manifests" and len(self.sub) == 1))
        )


def classify(parts: Parts) -> Place:
    if not parts:
        return Place(Kind.ROOT, parts)
    if parts[0] == "blobs":
        if len(parts) == 5 and parts[4] == "data":
            return Place(Kind.BLOB_DATA, parts)
        return Place(Kind.BLOB_DIR if len(parts) <= 4 else Kind.OTHER, parts)
    if parts[0] != "repositories":
        return Place(Kind.OTHER, parts)
    rest = parts[1:]
    for i, part in enumerate(rest):
        if part in SPECIAL_DIRS:
            return _inside_repository(parts, "/".join(rest[:i]), part, rest[i + 1 :])
    return Place(Kind.NAMESPACE, parts, "/".join(rest))


def _inside_repository(parts: Parts, name: str, special: str, sub: Parts) -> Place:
    kind = Kind.OTHER
    if special == "_uploads":
        kind = {0: Kind.UPLOADS, 1: Kind.UPLOAD}.get(len(sub), Kind.OTHER)
    elif special == "_layers":
        if len(sub) <= 2:
            kind = Kind.LINK_DIR
        elif len(sub) == 3 and sub[2] == "link":
            kind = Kind.LAYER_LINK
    elif not sub:
        kind = Kind.LINK_DIR  # _manifests itself
    elif sub[0] == "revisions":
        if len(sub) <= 3:
            kind = Kind.LINK_DIR
        elif len(sub) == 4 and sub[3] == "link":
            kind = Kind.REVISION_LINK
    elif sub[0] == "tags":
        kind = _tag_kind(sub)
    if not name:  # _uploads etc. directly below repositories/: not a repository
        kind = Kind.OTHER
    return Place(kind, parts, name, sub)


def _tag_kind(sub: Parts) -> Kind:
    # tags, tags/<t>, tags/<t>/current, tags/<t>/index, tags/<t>/index/<alg>[/<hex>]
    if len(sub) <= 2:
        return Kind.LINK_DIR
    if sub[2] == "current":
        if len(sub) == 3:
            return Kind.LINK_DIR
        return Kind.TAG_LINK if len(sub) == 4 and sub[3] == "link" else Kind.OTHER
    if sub[2] == "index":
        if len(sub) <= 5:
            return Kind.LINK_DIR
        if len(sub) == 6 and sub[5] == "link":
            return Kind.TAG_INDEX_LINK
    return Kind.OTHER
