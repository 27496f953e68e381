"""The state and bookkeeping every part of fsck shares."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass

from ...drivers import StorageDriver, UnsafeEntryError
from ...storage.digest import Digest
from ...storage.registry import Registry
from ..blobtable import BlobStates
from ..storepass import OverStore, StorePass
from .report import Finding, Fix, NotRepairable, Report

log = logging.getLogger(__name__)


Progress = Callable[[int], None]

SMALL_FILE = 256 << 10  # blobs and uploads up to this size are read in batches...
BATCH_BYTES = 16 << 20  # ...of at most this many bytes (and BATCH_FILES files)
BATCH_FILES = 512
CHUNK = 4096  # blobs hashed together (their paths held at once)
GOOD, CORRUPT, UNSAFE = 1, 2, 3  # a blob's verdict (0: none yet, or no blob)


@dataclass(frozen=True)
class CheckedBlob:
    digest: Digest
    path: str
    size: int


@dataclass(frozen=True)
class CheckedUpload:
    repository: str
    id: str
    size: int
    states: dict[int, str]  # offset -> hash state path
    has_data: bool
    readable: bool  # False: its bytes are in an S3 multipart upload not yet completed


class Checks(OverStore):
    """What every part of a check shares: the store read a group at a time, the
    report, each blob's verdict, and how a finding is recorded (and repaired)."""

    def __init__(
        self,
        driver: StorageDriver,
        repair: bool = False,
        workers: int = 2,
        progress: Progress | None = None,
        on_total: Callable[[int], None] | None = None,
        check_data: bool = True,
    ) -> None:
        self.driver = driver
        self.check_data = check_data  # False: a blob with data counts as good, unhashed
        self.store = StorePass(driver)  # the store's listings, a group at a time
        self.registry = Registry(driver)
        self.repair = repair
        self.workers = max(1, workers)
        self.progress = progress or (lambda n: None)
        self.on_total = on_total or (lambda n: None)
        self.report = Report()
        # each blob's verdict (GOOD, CORRUPT, UNSAFE: data is a symlink, neither good
        # nor missing), a byte a listed blob (blobtable.py)
        self.verdicts = BlobStates()
        self.pending: set[str] = set()  # paths whose bytes are in a write not completed
        self.held: set[tuple[str, Digest]] = set()  # (repository, manifest) with a revision link
        # of the repository being checked, the digests whose layer link file is there
        # (valid or not): its layer links are all read before its manifests, whose
        # references are then looked up here
        self.layer_link_files: set[Digest] = set()

    # bookkeeping -----------------------------------------------------------
    async def _found(
        self, kind: str, path: str, detail: str, remove: str | None = None, fix: Fix | None = None
    ) -> None:
        finding = Finding(kind, path, detail, remove, fix=fix)
        self.report.findings.append(finding)
        log.warning("%s: %s (%s)", path, detail, kind)
        if self.repair and remove is not None:
            try:
                if fix is not None:
                    await fix()
                else:
                    await self.driver.delete_if_present(remove)
            except UnsafeEntryError as exc:
                log.warning("not repaired: %s", exc)  # a symlink on the way: left alone
                return
            except NotRepairable as exc:
                log.warning("not repaired: %s: %s", path, exc)
                return
            finding.removed = True
            log.warning("repaired %s", remove)

    def _normal(self, state: str) -> None:
        self.report.registry_states[state] += 1

    async def _list(self, path: str) -> list[str]:
        return sorted(await self.snapshot.list_if_present(path))

    async def _odd(self, path: str, why: str) -> None:
        await self._found("odd-entry", path, why)

    async def _unsafe(self, exc: UnsafeEntryError) -> None:
        """A symbolic link or device where the layout has a file: reported, never
        followed, never removed (whoever put it there may still want it)."""
        await self._found("unsafe-entry", exc.path, exc.what)


def batches(blobs: list[CheckedBlob] | list[CheckedUpload]) -> list[list]:
    """Consecutive runs of at most BATCH_FILES files and BATCH_BYTES bytes."""
    batches: list[list] = []
    size = BATCH_BYTES
    for blob in blobs:
        if not batches or size + blob.size > BATCH_BYTES or len(batches[-1]) >= BATCH_FILES:
            batches.append([])
            size = 0
        batches[-1].append(blob)
        size += blob.size
    return batches


def hash_each(blobs: list[CheckedBlob], contents: list[bytes | Exception]) -> list[str | Exception]:
    """The hex digest of each blob's bytes (or the error that kept them from being
    read), in a worker thread."""
    return [
        hashlib.new(b.digest.algorithm, c).hexdigest() if isinstance(c, bytes) else c
        for b, c in zip(blobs, contents, strict=True)
    ]


def json_object(payload: bytes) -> dict | None:
    try:
        doc = json.loads(payload)
    except (UnicodeDecodeError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None
