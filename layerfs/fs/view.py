"""Where a path of the mounted view points: the store's layout (``storage.paths``),
with uploads shown as plain files (``_uploads/<name>``) instead of
``_uploads/<uuid>/...`` directories. See docs/DESIGN.md, "The view"."""

from __future__ import annotations

import enum
import errno
import functools
from dataclasses import dataclass, field

from ..storage import Digest, paths
from .errors import Refusal

Parts = tuple[str, ...]
SPECIAL_DIRS = paths.SPECIAL_DIRS
NAME_MAX = paths.NAME_MAX


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
    FINISH = "upload finish"  # the target of ``mv _uploads/x _uploads/sha256:<hex>``
    OTHER = "store entry"  # anything else the store holds: shown read-only


LINK_KINDS = {Kind.LAYER_LINK, Kind.REVISION_LINK, Kind.TAG_LINK, Kind.TAG_INDEX_LINK}
DIR_KINDS = {Kind.ROOT, Kind.BLOB_DIR, Kind.NAMESPACE, Kind.UPLOADS, Kind.LINK_DIR}
FIXED_DIRS = {(), ("blobs",), ("repositories",)}  # always there, answered without the store
_FILE_KINDS = {
    "blob_data": Kind.BLOB_DATA,
    "layer_link": Kind.LAYER_LINK,
    "revision_link": Kind.REVISION_LINK,
    "tag_link": Kind.TAG_LINK,
    "tag_index_link": Kind.TAG_INDEX_LINK,
}
# the layout's name (``paths.LAYOUT``) of each kind of file the view shows
LAYOUT_KIND = {kind: name for name, kind in _FILE_KINDS.items()}
_DIR_KINDS = {
    "blobs": Kind.BLOB_DIR,
    "repositories": Kind.NAMESPACE,
    "{name}": Kind.NAMESPACE,
    "_uploads": Kind.UPLOADS,
    "{upload}": Kind.UPLOAD,  # the view shows an upload as one file
}
# Directories every repository has in the view, stored or not.
_ALWAYS_IN_A_REPOSITORY = {"_layers", "_manifests", "_uploads", "revisions", "tags"}


@dataclass(frozen=True)
class Place:
    kind: Kind
    parts: Parts
    fields: dict[str, str] = field(default_factory=dict, compare=False, hash=False)
    at: str = ""  # the layout segment a directory ends at
    # the driver path, asked several times for every entry a listing shows: made once
    store_path: str = field(init=False, compare=False, hash=False, repr=False)

    def __post_init__(self) -> None:
        path = "/".join((paths.ROOT, *self.parts)) if self.parts else paths.ROOT
        object.__setattr__(self, "store_path", path)  # frozen: set once, here

    @property
    def repository(self) -> str:
        return self.fields.get("name", "")

    @property
    def where(self) -> str:
        return "/".join(self.parts) or "/"

    @property
    def is_dir(self) -> bool:
        return self.kind in DIR_KINDS

    @property
    def upload_name(self) -> str:
        return self.fields["upload"]

    @property
    def link_digest(self) -> Digest:
        """The digest a link's path names (the tag link names none)."""
        if self.kind == Kind.BLOB_DATA or self.kind in LINK_KINDS - {Kind.TAG_LINK}:
            return Digest.from_parts(self.fields["alg"], self.fields["hex"])
        raise ValueError(f"{self.kind.value} names no digest in its path")

    @property
    def digest_text(self) -> str:
        """What a finish names as the digest (parsed, and refused, by the finish)."""
        return self.parts[-1]

    @property
    def tag(self) -> str:
        return self.fields["tag"]

    @property
    def repository_parts(self) -> Parts:
        """``repositories/<name>`` of a place inside a repository."""
        return ("repositories", *self.repository.split("/"))

    @property
    def is_special_root(self) -> bool:
        """``_layers``, ``_manifests``, ``_uploads`` and ``_manifests``' revisions and
        tags: present in every repository, stored or not."""
        return self.kind in (Kind.UPLOADS, Kind.LINK_DIR) and self.at in _ALWAYS_IN_A_REPOSITORY


@functools.lru_cache(maxsize=1 << 16)
def classify(parts: Parts) -> Place:
    """What ``parts`` is in the view. A pure function of the path, asked several times
    per request (lookup, getattr, each entry of a listing): remembered."""
    if not parts:
        return Place(Kind.ROOT, parts)
    found = paths.match(parts)
    if found is None:
        inside = paths.split_repository(parts)
        return Place(Kind.OTHER, parts, {"name": inside[0]} if inside else {})
    if not found.is_dir:
        return Place(_FILE_KINDS.get(found.kind, Kind.OTHER), parts, found.fields)
    kind = _DIR_KINDS.get(found.at)
    if kind is None:
        kind = Kind.BLOB_DIR if found.kind == "blob_data" else Kind.LINK_DIR
        if found.kind.startswith("upload_"):
            kind = Kind.OTHER  # an upload's own files and folders stay hidden
    return Place(kind, parts, found.fields, found.at)


def decode(name: bytes) -> str:
    return name.decode("utf-8", "surrogateescape")


def looked_up(name: bytes) -> str:
    """A name to look up: one that no store entry can have is ENOENT, as on any file
    system, and one longer than NAME_MAX is ENAMETOOLONG."""
    if len(name) > NAME_MAX:
        raise Refusal(errno.ENAMETOOLONG, f"name of {len(name)} bytes: at most {NAME_MAX}")
    text = decode(name)
    if not paths.is_file_name(text):
        raise Refusal(errno.ENOENT, f"no entry can be named {text!r}")
    return text


def new_name(name: bytes, what: str) -> str:
    """A name to create: too long is ENAMETOOLONG, one the layout cannot store EINVAL."""
    if len(name) > NAME_MAX:
        raise Refusal(errno.ENAMETOOLONG, f"{what} name of {len(name)} bytes: at most {NAME_MAX}")
    text = decode(name)
    if not paths.is_file_name(text):
        raise Refusal(
            errno.EINVAL, f"invalid {what} name {text!r}: use letters, digits, '.', '_', '-'"
        )
    return text


def rename_target(parent: Parts, name: bytes) -> Place:
    """Where a rename into ``parent`` as ``name`` goes. A name with a ``:`` in an
    uploads directory is a digest (``sha256:<hex>``), which an upload's own name
    never holds: the target is a finish (``Kind.FINISH``; a bad digest is refused by
    parsing it, EINVAL, after the upload was found). Any other name must be one the
    layout can store (``new_name``)."""
    text = decode(name)
    if ":" in text and len(name) <= NAME_MAX:
        place = classify((*parent, text))
        if place.kind == Kind.UPLOAD:
            return Place(Kind.FINISH, place.parts, place.fields)
        return place  # a digest anywhere else: no finish, refused by where it is
    return classify((*parent, new_name(name, "upload")))
