"""Store upkeep that needs no mount: clearing abandoned uploads, and completing
finishes cut short between their move into ``blobs/`` and their link.

Uploads are deleted by the age their ``startedat`` gives (the registry's own rule);
one without a readable ``startedat`` is dated by its newest file instead, and one with
no file at all (a create cut short inside its first write, which leaves only the
driver's hidden temporary file) by its directory. Entries of
``_uploads`` that are not upload directories are reported and left alone, so odd keys
never stop a purge. On S3 the driver's delete also aborts pending multipart uploads,
and writes left pending below ``blobs/`` (a server-side copy into a blob cut short by a
crash; the next finish copies afresh) are aborted by the same age.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from ..drivers import PathNotFoundError, PendingWrite, StorageDriver, UnsafeEntryError
from . import paths, walk
from .digest import Digest
from .holders import unstored_link_targets, uploads_holding
from .registry import Registry
from .uploads import parse_started_at

log = logging.getLogger(__name__)

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(d|h|m|s)")


def parse_duration(text: str) -> timedelta:
    """Go-style durations as the registry's config uses them (``168h``, ``1h30m``,
    ``90s``), and days (``30d``), which retention is most often given in."""
    parts = _DURATION_PART.findall(text)
    if not text or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"invalid duration {text!r}: use days, hours, minutes, seconds (1h30m)")
    unit = {"d": 86400, "h": 3600, "m": 60, "s": 1}
    return timedelta(seconds=sum(float(n) * unit[u] for n, u in parts))


@dataclass(frozen=True)
class UploadAge:
    repository: str
    upload_id: str
    started_at: datetime
    dated_by: str  # "startedat"; "files" or "directory" when startedat was missing or unreadable


async def upload_age(
    driver: StorageDriver, name: str, upload_id: str, on_odd: walk.OnOdd | None = None
) -> UploadAge | None:
    """When the upload started; None when it is gone, or when a symbolic link on the
    way makes it unknown (then it goes to ``on_odd``, by default left alone)."""
    try:
        return await _date_known_upload(driver, name, upload_id)
    except UnsafeEntryError as exc:
        await (on_odd or _leave_alone)(paths.upload_dir(name, upload_id), exc.what)
        return None


async def _date_known_upload(driver: StorageDriver, name: str, upload_id: str) -> UploadAge | None:
    try:
        content = await driver.get_content(paths.upload_started_at(name, upload_id))
        return UploadAge(name, upload_id, parse_started_at(content), "startedat")
    except (PathNotFoundError, ValueError, UnicodeDecodeError):
        pass
    try:
        newest = await walk.newest_below(driver, paths.upload_dir(name, upload_id))
    except PathNotFoundError:
        return None
    if newest is not None:
        return UploadAge(name, upload_id, newest.astimezone(UTC), "files")
    try:
        made = (await driver.stat(paths.upload_dir(name, upload_id))).mod_time
    except PathNotFoundError:
        return None  # deleted meanwhile
    return UploadAge(name, upload_id, made.astimezone(UTC), "directory")


async def _leave_alone(path: str, why: str) -> None:
    log.warning("%s: %s, left alone", path, why)


async def upload_ages(registry: Registry) -> list[UploadAge]:
    """Every upload of every repository with the time it started."""
    found = []
    for name in await registry.repositories(_leave_alone):
        for upload_id in await walk.upload_ids(registry.driver, name, _leave_alone):
            age = await upload_age(registry.driver, name, upload_id)
            if age is not None:
                found.append(age)
    return found


# Claims an upload while the store's upkeep works on it (a purge, the completion of a
# finish cut short): yields False where someone else has it (a mount's open session),
# and keeps others out meanwhile.
Claim = Callable[[str], AbstractAsyncContextManager[bool]]


@asynccontextmanager
async def _unclaimed(upload_id: str) -> AsyncIterator[bool]:
    yield True


async def purge_uploads(
    registry: Registry,
    older_than: timedelta,
    dry_run: bool = False,
    now: datetime | None = None,
    claim: Claim = _unclaimed,
) -> list[UploadAge]:
    """Delete uploads started more than ``older_than`` ago; returns what was (or, with
    ``dry_run``, would be) deleted. Each is deleted under ``claim``: a mount keeps
    those it has open, even one opened after the ages were read."""
    cutoff = (now or datetime.now(UTC)) - older_than
    doomed = [a for a in await upload_ages(registry) if a.started_at < cutoff]
    last = await _last_copies(registry, {a.repository for a in doomed})
    doomed = [a for a in doomed if (a.repository, a.upload_id) not in last]
    if dry_run:
        return doomed
    purged = []
    for age in doomed:
        async with claim(age.upload_id) as mine:
            if not mine:
                continue  # open in the mount: not abandoned
            where = paths.upload_dir(age.repository, age.upload_id)
            if await registry.driver.delete_if_present(where):  # else gone meanwhile
                log.info(
                    "purged upload %s of %s, started %s",
                    age.upload_id,
                    age.repository,
                    age.started_at.isoformat(),
                )
            purged.append(age)
    return purged


async def _last_copies(registry: Registry, repositories: set[str]) -> set[tuple[str, str]]:
    """Uploads holding the only bytes of a blob a layer link names (a finish cut
    short inside its copy): never purged, whatever their age, until ``fsck --repair``
    finishes them."""
    kept = set()
    for name in sorted(repositories):
        unstored = await unstored_link_targets(registry.driver, name)
        holders = await uploads_holding(registry, name, unstored)
        kept |= {(name, upload_id) for upload_id in holders.unread}  # might hold one
        for target, upload_id in holders.items():
            log.warning(
                "upload %s of %s kept: it holds the only bytes of %s, which a layer link"
                " names (fsck --repair finishes it)",
                upload_id,
                name,
                target,
            )
            kept.add((name, upload_id))
    return kept


async def purge_interrupted_copies(
    registry: Registry,
    older_than: timedelta,
    dry_run: bool = False,
    now: datetime | None = None,
) -> list[PendingWrite]:
    """Abort writes into ``blobs/`` begun more than ``older_than`` ago and never
    finished; returns what was (or, with ``dry_run``, would be) aborted. Nothing
    reads them: a blob exists only once its copy completed."""
    cutoff = (now or datetime.now(UTC)) - older_than
    doomed = [w for w in await registry.driver.pending_writes(paths.BLOBS) if w.started < cutoff]
    for pending in doomed if not dry_run else []:
        await registry.driver.abort_write(pending)
        log.info("aborted an interrupted copy into %s, begun %s", pending.path, pending.started)
    return doomed


@dataclass(frozen=True)
class CompletedFinish:
    repository: str
    upload_id: str
    blob: Digest


async def complete_interrupted_finishes(
    registry: Registry, claim: Claim = _unclaimed
) -> list[CompletedFinish]:
    """Link the blob of every upload whose finish stopped after its move (a kill or a
    full disk), then remove the upload: what that finish had left to do. Each upload
    is held with ``claim`` while it is looked at and completed: a mount leaves one it
    has open alone, and a finish of it arriving meanwhile waits (then finds it gone)."""
    done = []
    for name in await registry.repositories():
        uploads = registry.repository(name).uploads
        for upload_id in await uploads.ids():
            async with claim(upload_id) as mine:
                if not mine:
                    continue
                blob = await uploads.interrupted_finish(upload_id)
                if blob is not None:
                    await uploads.complete_interrupted_finish(upload_id, blob)
                    done.append(CompletedFinish(name, upload_id, blob))
    return done
