"""What the mounted view should answer (docs/DESIGN.md, "The view"): the store
seeded at the start, and a small pure-Python model of uploads and handles."""

from __future__ import annotations

import errno
import json
from dataclasses import dataclass, field
from typing import Any

from layerfs.storage import Digest

REPOS = ("r", "s")  # stored from the start: seeded with one layer each
NEW_REPO = "new"  # made by mkdir during a run
NAMES = ("a", "b", "c")
BAD_NAMES = {"x" * 256: errno.ENAMETOOLONG, "has space": errno.EINVAL}
SEED = {repo: f"seed of {repo}".encode() for repo in REPOS}
CONFIG = b'{"architecture":"amd64","os":"linux"}'
MANIFEST = json.dumps(
    {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": str(Digest.of(CONFIG)),
            "size": len(CONFIG),
        },
        "layers": [
            {
                "mediaType": "application/vnd.oci.image.layer.v1.tar",
                "digest": str(Digest.of(SEED["r"])),
                "size": len(SEED["r"]),
            }
        ],
    }
).encode()  # stored as a blob from the start; registering it needs CONFIG and r's seed
M = Digest.of(MANIFEST).hex
TAGS = ("v1", "v2")


# the model -----------------------------------------------------------------------------
@dataclass(eq=False)
class MUpload:
    repo: str
    content: bytearray = field(default_factory=bytearray)
    gone: bool = False  # removed (rm, renamed over) or finished through the mount
    writer: int | None = None  # the file handle that may write (one writer at a time)
    dirty: bool = False  # the writer opened or wrote since its last flush

    def busy_for(self, fh: int | None) -> bool:
        """A writable open (fh None) or a truncate by another handle is EBUSY: a
        writer holds the upload (it is never released late here, so no wait helps)."""
        return self.writer is not None and self.writer != fh


@dataclass
class MHandle:
    fh: int
    upload: MUpload
    writable: bool


class Model:
    def __init__(self) -> None:
        self.uploads: dict[tuple[str, str], MUpload] = {}
        self.blobs: dict[str, bytes] = {Digest.of(s).hex: s for s in SEED.values()}
        self.blobs.update({Digest.of(CONFIG).hex: CONFIG, M: MANIFEST})
        self.layers: dict[str, set[str]] = {r: {Digest.of(SEED[r]).hex} for r in REPOS}
        self.layers["r"].add(Digest.of(CONFIG).hex)
        self.revisions: dict[str, set[str]] = {}
        self.tags: dict[str, dict[str, str]] = {}
        self.phantom_revisions: dict[str, set[str]] = {}  # folders kept or made, no link
        self.phantom_tags: dict[str, set[str]] = {}
        self.tag_indexes: dict[str, set[str]] = {}  # untagged: their index/ stays in view
        self.handles: dict[int, MHandle] = {}
        self.made: set[str] = set()  # repositories this mount made or keeps in view
        self.phantom_links: dict[str, set[str]] = {}  # mkdir'ed _layers/sha256/<hex> dirs

    def stored_repos(self) -> set[str]:
        held = {r for r, digests in self.layers.items() if digests}
        held |= {r for r, digests in self.revisions.items() if digests}
        held |= {r for r, tags in self.tags.items() if tags}
        return held | {repo for repo, _ in self.uploads}

    def can_register(self, repo: str) -> bool:
        """The seeded manifest's config and layer are linked in ``repo``."""
        needed = {Digest.of(CONFIG).hex, Digest.of(SEED["r"]).hex}
        return needed <= self.layers.get(repo, set())

    def visible_repos(self) -> set[str]:
        return self.stored_repos() | self.made

    def names(self, repo: str) -> list[str]:
        return sorted(name for r, name in self.uploads if r == repo)

    def remove(self, repo: str, name: str) -> None:
        self.uploads.pop((repo, name)).gone = True

    def remount(self) -> None:
        for upload in self.uploads.values():
            upload.writer, upload.dirty = None, False
        self.handles.clear()
        self.made.clear()
        self.phantom_links.clear()
        self.phantom_revisions.clear()
        self.phantom_tags.clear()
        self.tag_indexes.clear()


Result = tuple[str, Any]  # ("ok", value) or ("errno", code)
