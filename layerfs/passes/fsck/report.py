"""What fsck finds: findings, the report, and the states of a store the registry
writes that are no finding.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

Fix = Callable[[], Awaitable[None]]


class NotRepairable(Exception):
    """A repair that found nothing to repair from: the finding stays."""


# Normal states of a store the registry writes, counted rather than reported.
REGISTRY_STATES = {
    "deleted-link": "link directories whose link an API DELETE removed",
    "link-to-collected-blob": "layer links to blobs a garbage-collect deleted",
    "old-tag-history": "tag history entries naming manifests no longer held",
    "write-in-progress": "files being written on S3 (multipart uploads not completed)",
    "cancelled-upload": "upload directories a cancel left with no data and no startedat",
    # the registry's s3 writer stores the state of bytes it still buffers, so a PATCH
    # cut short leaves one; a resume uses only the state at the data's exact size
    "state-beyond-data": "upload hash states beyond the data (unused by any resume)",
}


@dataclass
class Finding:
    kind: str
    path: str
    detail: str
    remove: str | None = None  # what a repair deletes (or completes); None: reported only
    removed: bool = False
    fix: Fix | None = field(default=None, repr=False)  # a repair that is more than a delete
    kept: str | None = None  # why a repair left it (changed within the grace, a symlink)

    def as_dict(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "path": self.path,
            "detail": self.detail,
            "repair": self.remove,
            "removed": self.removed,
            "kept": self.kept,
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
    registry_states: Counter[str] = field(default_factory=Counter)

    @property
    def clean(self) -> bool:
        return not self.findings

    @property
    def unrepaired(self) -> list[Finding]:
        return [f for f in self.findings if not f.removed]
