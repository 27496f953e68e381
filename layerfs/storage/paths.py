"""Where the registry keeps each thing (distribution's registry/storage/paths.go).

One table, :data:`LAYOUT`, serves both directions: :func:`path` turns a kind and its
fields into a driver path, :func:`match` turns the components of a path back into the
kind it has (the mount's view classifies its paths with it). The tree it describes::

    /docker/registry/v2/
      blobs/<alg>/<hh>/<hex>/data                        blob data (hh: hex[:2])
      repositories/<name>/                               name: one or more components
        _layers/<alg>/<hex>/link                         layer link
        _manifests/revisions/<alg>/<hex>/link            revision link
        _manifests/tags/<tag>/current/link               tag link
        _manifests/tags/<tag>/index/<alg>/<hex>/link     tag index link (history)
        _uploads/<id>/data                               upload data
        _uploads/<id>/startedat                          RFC 3339 start time
        _uploads/<id>/name                               the name a user gave it (layerfs)
        _uploads/<id>/stamp                              what its newest state vouches for (layerfs)
        _uploads/<id>/hashstates/<alg>/<offset>          hash state after offset bytes

Every function returns a driver path; nothing here touches a driver.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from .digest import CANONICAL, Digest

ROOT = "/docker/registry/v2"
BLOBS = f"{ROOT}/blobs"
REPOSITORIES = f"{ROOT}/repositories"

Parts = tuple[str, ...]
NAME_MAX = 255  # bytes in one name, as every Linux file system has it
COMPONENT_RE = re.compile(r"[A-Za-z0-9._-]+")  # distribution's path rule, per component
UPLOAD_ID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
# The directories of a repository, below its name: no name component starts with "_".
SPECIAL_DIRS = ("_layers", "_manifests", "_uploads")

_REPO = ("repositories", "{name}")
LAYOUT: dict[str, Parts] = {
    "blob_data": ("blobs", "{alg}", "{hh}", "{hex}", "data"),
    "layer_link": (*_REPO, "_layers", "{alg}", "{hex}", "link"),
    "revision_link": (*_REPO, "_manifests", "revisions", "{alg}", "{hex}", "link"),
    "tag_link": (*_REPO, "_manifests", "tags", "{tag}", "current", "link"),
    "tag_index_link": (*_REPO, "_manifests", "tags", "{tag}", "index", "{alg}", "{hex}", "link"),
    "upload_data": (*_REPO, "_uploads", "{upload}", "data"),
    "upload_started_at": (*_REPO, "_uploads", "{upload}", "startedat"),
    "upload_name": (*_REPO, "_uploads", "{upload}", "name"),
    "upload_stamp": (*_REPO, "_uploads", "{upload}", "stamp"),
    "upload_hash_state": (*_REPO, "_uploads", "{upload}", "hashstates", "{alg}", "{offset}"),
}
LINK_KINDS = ("layer_link", "revision_link", "tag_link", "tag_index_link")


@dataclass(frozen=True)
class Match:
    """What a path is in :data:`LAYOUT`: a file of ``kind`` (``is_dir`` False), or a
    directory on the way to one (``kind`` is then the first file kind below it, and
    ``at`` the segment of that kind's pattern the directory ends at)."""

    kind: str
    fields: dict[str, str]
    is_dir: bool
    at: str = ""  # the pattern segment the path ends at

    @property
    def repository(self) -> str:
        return self.fields.get("name", "")


# Directories whose entries are named by digests, or lead only to such entries: what
# they hold changes only by appearing and by deletes, never in place (a blob's
# directory, the layer and revision links of a repository). By (kind, segment).
_CONTENT_ADDRESSED_DIRS = {
    *(("blob_data", at) for at in ("blobs", "{alg}", "{hh}", "{hex}")),
    *(("layer_link", at) for at in ("_layers", "{alg}", "{hex}")),
    *(("revision_link", at) for at in ("revisions", "{alg}", "{hex}")),
}


@functools.lru_cache(maxsize=1 << 16)
def is_content_addressed_dir(parts: Parts) -> bool:
    """Whether the directory with these components (below :data:`ROOT`) holds only
    what digests name: ``blobs/...``, ``_layers/...``, ``_manifests/revisions/...``.
    Asked for every directory a mount lists and shows: remembered."""
    found = match(parts) if parts else None
    return found is not None and found.is_dir and (found.kind, found.at) in _CONTENT_ADDRESSED_DIRS


def components(store_path: str) -> Parts:
    """The components below :data:`ROOT` of a driver path inside it."""
    return tuple(store_path[len(ROOT) + 1 :].split("/")) if store_path != ROOT else ()


def digest_of_link(store_path: str) -> Digest | None:
    """The digest a layer, revision or tag index link holds by its path (the tag's
    ``current`` link names none), or None for any other path."""
    return _digest_of(store_path, _DIGEST_LINKS)


def digest_of_blob_data(store_path: str) -> Digest | None:
    """The blob whose ``data`` is at ``store_path``, or None for any other path."""
    return _digest_of(store_path, ("blob_data",))


def _digest_of(store_path: str, kinds: tuple[str, ...]) -> Digest | None:
    """The digest the file at ``store_path`` is named by, if it is of ``kinds``."""
    if not store_path.startswith(ROOT + "/"):
        return None
    found = match(components(store_path))
    if found is None or found.is_dir or found.kind not in kinds:
        return None
    try:
        return Digest.from_parts(found.fields["alg"], found.fields["hex"])
    except ValueError:
        return None


_DIGEST_LINKS = ("layer_link", "revision_link", "tag_index_link")


def is_file_name(text: str) -> bool:
    """Whether ``text`` can name one entry of the store (and of the mount)."""
    return (
        COMPONENT_RE.fullmatch(text) is not None
        and text not in (".", "..")
        and len(text.encode()) <= NAME_MAX
    )


def path(kind: str, **fields: str) -> str:
    """The driver path of a ``kind`` (a :data:`LAYOUT` key) with its fields."""
    return _TEMPLATES[kind].format_map(fields)


# each kind's path as one format string (whole-store passes build hundreds of
# thousands of paths: a format is one call, where filling segment by segment is many)
_TEMPLATES = {kind: "/".join((ROOT, *segments)) for kind, segments in LAYOUT.items()}


def top_level_name(parts: Parts) -> str | None:
    """The name of ``repositories/<name>``, a directory right below ``repositories``
    (whatever the name: a layout directory such as ``_layers`` there is a bad name)."""
    return parts[1] if len(parts) == 2 and parts[0] == "repositories" else None


def split_repository(parts: Parts) -> tuple[str, Parts] | None:
    """``repositories/<name>/<special>/...`` as (name, the components from the
    special directory on); None outside a repository's special directories."""
    if len(parts) < 2 or parts[0] != "repositories":
        return None
    for i, part in enumerate(parts[1:], start=1):
        if part in SPECIAL_DIRS:
            return "/".join(parts[1:i]), parts[i:]
    return None


def match(parts: Parts) -> Match | None:
    """The kind of the path with these components (below :data:`ROOT`), or None when
    the layout has no place for it. ``repositories/a/b`` (no special directory yet)
    matches as a directory at ``{name}``. A file matches the first kind whose pattern
    it fills; a directory on the way matches as the first kind (in :data:`LAYOUT`
    order) whose pattern passes through it."""
    if parts[:1] != ("repositories",):
        return _LAYOUT_TREE.walk(parts, {})
    inside = split_repository(parts)
    if inside is None:  # repositories/ itself, or a name not yet ended by _layers etc.
        name = "/".join(parts[1:])
        return Match("layer_link", {"name": name}, True, "{name}" if name else "repositories")
    name, rest = inside
    if not name:
        return None
    return _IN_A_REPOSITORY.walk(rest, {"name": name})


@dataclass
class _Segment:
    """One segment of the layout's patterns, as a tree: the patterns that begin alike
    share their first segments, so a path is matched in one step per component (a
    mount classifies every entry it lists). No segment is followed both by names and
    by a field (checked where the tree is built), so each step has one way on."""

    kind: str  # the first kind, in LAYOUT order, whose pattern passes here
    at: str  # the pattern segment this stands for
    names: dict[str, _Segment] = field(default_factory=dict)  # literal segments next
    fills: str = ""  # or the field the next component fills, whatever it is
    any: _Segment | None = None
    ends: bool = False  # a pattern (a file) ends here

    def walk(self, parts: Parts, fields: dict[str, str]) -> Match | None:
        segment = self
        for part in parts:
            step = segment.names.get(part)
            if step is None:
                if segment.any is None:
                    return None
                fields[segment.fills] = part
                step = segment.any
            segment = step
        return Match(segment.kind, fields, not segment.ends, segment.at)

    def step(self, kind: str, at: str) -> _Segment:
        if at.startswith("{"):
            if self.any is None:
                self.any, self.fills = _Segment(kind, at), at[1:-1]
            following = self.any
        else:
            following = self.names.setdefault(at, _Segment(kind, at))
        assert not (self.names and self.any), f"names and a field both follow {self.at}"
        return following


def _layout_tree() -> _Segment:
    root = _Segment(next(iter(LAYOUT)), "")
    for kind, pattern in LAYOUT.items():
        segment = root
        for at in pattern:
            assert not segment.ends, f"{kind} goes on below a file"
            segment = segment.step(kind, at)
        segment.ends = True
        assert not (segment.names or segment.any), f"{kind} ends where another goes on"
    return root


_LAYOUT_TREE = _layout_tree()
_IN_A_REPOSITORY = _LAYOUT_TREE.names["repositories"].any
assert _IN_A_REPOSITORY is not None


# name → path, for each kind --------------------------------------------------------
def blob_dir(d: Digest) -> str:
    return blob_data(d).rsplit("/", 1)[0]


def blob_data(d: Digest) -> str:
    return blob_data_maker(d.algorithm)(d.hex)


# what follows a blob's directory (``<alg>/<hh>/<hex>``) in its data path
BLOB_DATA_BELOW = "/" + LAYOUT["blob_data"][-1]


@functools.cache
def blob_data_maker(algorithm: str) -> Callable[[str], str]:
    """``blob_data`` of a hex of ``algorithm``, by joining strings: a pass over every
    blob makes hundreds of thousands."""
    head, middle, tail = path("blob_data", alg=algorithm, hh="\0", hex="\0").split("\0")
    return lambda hexpart: f"{head}{hexpart[:2]}{middle}{hexpart}{tail}"


def repository(name: str) -> str:
    return f"{REPOSITORIES}/{name}"


def layers_dir(name: str) -> str:
    return f"{repository(name)}/_layers"


def layer_link(name: str, d: Digest) -> str:
    return path("layer_link", name=name, alg=d.algorithm, hex=d.hex)


def uploads_dir(name: str) -> str:
    return f"{repository(name)}/_uploads"


def upload_dir(name: str, upload_id: str) -> str:
    return f"{uploads_dir(name)}/{upload_id}"


def upload_data(name: str, upload_id: str) -> str:
    return path("upload_data", name=name, upload=upload_id)


def upload_started_at(name: str, upload_id: str) -> str:
    return path("upload_started_at", name=name, upload=upload_id)


def upload_name(name: str, upload_id: str) -> str:
    """The file name a user gave an upload (layerfs only; the registry ignores it)."""
    return path("upload_name", name=name, upload=upload_id)


def upload_stamp(name: str, upload_id: str) -> str:
    """The data's stamp when layerfs stored its newest hash state (layerfs only; the
    registry ignores it): any mount trusts that state while the data keeps it."""
    return path("upload_stamp", name=name, upload=upload_id)


def upload_hash_states_dir(name: str, upload_id: str) -> str:
    """Every hash state of an upload, of every algorithm."""
    return f"{upload_dir(name, upload_id)}/hashstates"


def upload_hash_states(name: str, upload_id: str, algorithm: str) -> str:
    return f"{upload_hash_states_dir(name, upload_id)}/{algorithm}"


def upload_hash_state(name: str, upload_id: str, algorithm: str, offset: int) -> str:
    return path("upload_hash_state", name=name, upload=upload_id, alg=algorithm, offset=str(offset))


def manifests_dir(name: str) -> str:
    return f"{repository(name)}/_manifests"


def manifest_revisions(name: str) -> str:
    return f"{manifests_dir(name)}/revisions"


def manifest_revision_link(name: str, d: Digest) -> str:
    return path("revision_link", name=name, alg=d.algorithm, hex=d.hex)


def tags_dir(name: str) -> str:
    return f"{manifests_dir(name)}/tags"


def tag_dir(name: str, tag: str) -> str:
    return f"{tags_dir(name)}/{tag}"


def tag_current_link(name: str, tag: str) -> str:
    return path("tag_link", name=name, tag=tag)


def tag_index_dir(name: str, tag: str) -> str:
    return index_in(tag_dir(name, tag))


def tag_index_link(name: str, tag: str, d: Digest) -> str:
    return path("tag_index_link", name=name, tag=tag, alg=d.algorithm, hex=d.hex)


# directories and files found by a walk -------------------------------------------------
def parent(path: str) -> str:
    """The directory holding ``path``."""
    return path.rpartition("/")[0]


def base_name(path: str) -> str:
    """The last component of ``path``."""
    return path.rpartition("/")[2]


def link_tree_depth(parts: Parts, repository_depth: int) -> int:
    """How many components of a link's path reach the directory its kind always
    shows in a repository (``_layers``, ``_manifests/revisions``,
    ``_manifests/tags``): what is below it exists for links alone."""
    return repository_depth + (2 if parts[repository_depth] == "_manifests" else 1)


def tag_index_of_current(parts: Parts) -> Parts:
    """The tag's ``index`` directory beside its ``current`` link (``<tag>/current/link``)."""
    return (*parts[:-2], "index")


LINK = "link"  # the file of every link directory


def link_in(entry: str) -> str:
    """The link file of a link directory a walk found (``<alg>/<hex>/`` below
    ``_layers``, revisions or a tag's index)."""
    return f"{entry}/{LINK}"


def index_in(tag_dir: str) -> str:
    """The ``index`` (history) directory of a tag directory a walk found."""
    return f"{tag_dir}/index"


def is_link_file(path: str) -> bool:
    """Whether ``path`` names a link file (its last component is ``link``)."""
    return path.endswith("/link")


def is_layers_dir(path: str) -> bool:
    """Whether ``path`` is a repository's ``_layers``."""
    return path.endswith("/_layers")


def is_uploads_or_tags_dir(path: str) -> bool:
    """Whether ``path`` is a repository's ``_uploads`` or ``_manifests/tags``."""
    return path.endswith(("/_uploads", "/_manifests/tags"))


def current_link_in(tag_dir: str) -> str:
    """The ``current`` link of a tag directory a walk found."""
    return f"{tag_dir}/current/link"


def tag_history_of_current_link(link: str) -> str | None:
    """For a tag's ``current`` link, the directory whose hex-named entries are the
    sha256 digests of the tag's history (``<tag>/index/sha256``); None for any other
    path."""
    tag, ending = link[: -len("/current/link")], link[-len("/current/link") :]
    if ending != "/current/link" or not parent(tag).endswith("/_manifests/tags"):
        return None
    return f"{index_in(tag)}/{CANONICAL}"


def is_tag_index_dir(path: str) -> bool:
    """Whether ``path`` is a tag's ``index`` directory (its history)."""
    return path.endswith("/index") and parent(parent(path)).endswith("/_manifests/tags")
