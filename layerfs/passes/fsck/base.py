"""The state and bookkeeping every part of fsck shares."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from ...drivers import PathNotFoundError, StorageDriver, UnsafeEntryError
from ...storage import paths, walk
from ...storage.digest import Digest
from ...storage.registry import Registry
from ..blobtable import BlobStates
from ..storepass import OverStore, StorePass
from .report import Finding, Fix, NotRepairable, Report

log = logging.getLogger(__name__)


Progress = Callable[[int], None]
# Whether what a finding was made of is still so when the repair comes to it
StillSo = Callable[[], Awaitable[bool]]

# A repair deletes nothing that changed within this time: a writer may be in the
# middle of it (docker-registry writes a link by truncating it, then writing)
REPAIR_GRACE = timedelta(hours=1)

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
        grace: timedelta = REPAIR_GRACE,
    ) -> None:
        self.driver = driver
        self.grace = grace
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
        # of the repository being checked, the blobs each revision misses (corrupt
        # ones left out): what a second look at a tag naming it looks for again
        self.missing_of: dict[Digest, list[Digest]] = {}

    # bookkeeping -----------------------------------------------------------
    async def _found(
        self,
        kind: str,
        path: str,
        detail: str,
        remove: str | None = None,
        fix: Fix | None = None,
        still: StillSo | None = None,
    ) -> None:
        """Report a finding; with a repair, remove ``remove`` (or run ``fix``), a
        removal only after a second look (``_why_kept``)."""
        finding = Finding(kind, path, detail, remove, fix=fix)
        self.report.findings.append(finding)
        log.warning("%s: %s (%s)", path, detail, kind)
        if not self.repair or remove is None:
            return
        try:
            finding.kept = None if fix is not None else await self._why_kept(path, remove, still)
            if finding.kept is not None:
                log.warning("not repaired: %s: %s", path, finding.kept)
                return
            if fix is not None:
                await fix()
            else:
                await self.driver.delete_if_present(remove)
        except UnsafeEntryError as exc:
            finding.kept = str(exc)
            log.warning("not repaired: %s", exc)  # a symlink on the way: left alone
            return
        except NotRepairable as exc:
            finding.kept = str(exc)
            log.warning("not repaired: %s: %s", path, exc)
            return
        finding.removed = True
        log.warning("repaired %s", remove)

    async def _why_kept(self, path: str, remove: str, still: StillSo | None) -> str | None:
        """The second look before a removal: why it must not happen (what the finding
        was made of changed since it was read, or something there changed within
        the grace), else None. A completion (``fix``) validates what it moves and
        needs none."""
        if still is not None and not await still():
            return "changed since it was read: looked at again, no longer so"
        if not self.grace:  # no grace: whatever its age
            return None
        below = path == remove or path.startswith(remove + "/")  # one walk sees both
        places = [remove] if below else [path, remove]
        times = [await self._newest_change(place) for place in places]
        newest = max((t for t in times if t is not None), default=None)
        if newest is not None and newest > datetime.now(UTC) - self.grace:
            return f"changed at {newest:%Y-%m-%d %H:%M:%S} UTC, within the grace ({self.grace})"
        return None

    async def _newest_change(self, path: str) -> datetime | None:
        """The newest time of ``path`` and of everything below it (a directory's own
        time only where the driver keeps one); None when nothing is there. A symlink
        has no age worth anything: UnsafeEntryError."""
        try:
            info = await self.driver.stat(path)
        except PathNotFoundError:
            return None
        if not info.is_dir:
            return info.mod_time.astimezone(UTC)
        own = self.driver.directory_times
        below = await walk.newest_below(self.driver, path, directories=own)
        times = [t for t in (info.mod_time if own else None, below) if t is not None]
        return max((t.astimezone(UTC) for t in times), default=None)

    def _unchanged(self, path: str, content: bytes | None) -> StillSo:
        """A second look: the file holds the bytes read (None: it is still absent)."""

        async def still() -> bool:
            try:
                return await self.driver.get_content(path) == content
            except PathNotFoundError:
                return content is None

        return still

    @staticmethod
    def _all(*looks: StillSo) -> StillSo:
        """A second look made of several: each must find its part still so."""

        async def still() -> bool:
            for look in looks:
                if not await look():
                    return False
            return True

        return still

    def _absent_blobs(self, digests: Sequence[Digest]) -> StillSo:
        """A second look: none of these blobs has its data now (a symlink there is
        not known to be gone)."""

        async def still() -> bool:
            found = await self.driver.stat_many([paths.blob_data(d) for d in digests])
            return all(isinstance(info, PathNotFoundError) for info in found)

        return still

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
