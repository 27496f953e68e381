"""purge-uploads: by startedat age, leaving odd entries alone; from Python, from the
command line and as a mount option."""

from __future__ import annotations

import os
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import uuid4

import pytest

from layerfs.drivers import FilesystemDriver, PathNotFoundError, StorageDriver
from layerfs.drivers.s3 import S3Driver
from layerfs.storage import Registry, paths
from layerfs.storage.digest import Digest
from layerfs.storage.maintenance import parse_duration, purge_interrupted_copies, purge_uploads
from layerfs.storage.uploads import format_started_at

from ..conftest import S3_BUCKET
from ..mounts import LAYERFS, Mount
from ..seaweed import SeaweedFS

OLD = datetime.now(UTC) - timedelta(days=10)


@pytest.mark.parametrize(
    "text, seconds",
    [("168h", 168 * 3600), ("1h30m", 5400), ("90s", 90), ("0.5h", 1800), ("7d", 7 * 86400)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text).total_seconds() == seconds


@pytest.mark.parametrize("text", ["", "7y", "1h 30m", "h", "-1h", "10"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


async def make_upload(registry: Registry, name: str, started: datetime | None) -> str:
    upload = await registry.repository(name).uploads.create()
    await upload.write(b"pending bytes")
    await upload.close()
    if started is not None:
        await registry.driver.put_content(
            paths.upload_started_at(name, upload.id), format_started_at(started)
        )
    return upload.id


async def test_purge_by_age_leaves_odd_entries(driver: StorageDriver) -> None:
    registry = Registry(driver)
    old = await make_upload(registry, "app/one", OLD)
    young = await make_upload(registry, "app/one", None)
    other_old = await make_upload(registry, "app/two", OLD - timedelta(days=1))
    await driver.put_content(f"{paths.uploads_dir('app/one')}/not-an-upload/x", b"?")
    await driver.put_content(f"{paths.uploads_dir('app/one')}/stray", b"?")
    await driver.put_content(
        paths.upload_started_at("app/two", "00000000-0000-0000-0000-000000000000"), b"garbage"
    )

    listed = await purge_uploads(registry, timedelta(hours=168), dry_run=True)
    assert sorted(u.upload_id for u in listed) == sorted([old, other_old])
    assert sorted(await registry.repository("app/one").uploads.ids()) == sorted([old, young])

    purged = await purge_uploads(registry, timedelta(hours=168))
    assert sorted(u.upload_id for u in purged) == sorted([old, other_old])
    assert await registry.repository("app/one").uploads.ids() == [young]
    assert await driver.get_content(f"{paths.uploads_dir('app/one')}/stray") == b"?"
    assert await driver.get_content(f"{paths.uploads_dir('app/one')}/not-an-upload/x") == b"?"
    if isinstance(driver, S3Driver):  # nothing left pending to bill
        key = driver.key(paths.upload_data("app/one", old))
        assert await driver.pending_upload(key) is None
    with pytest.raises(PathNotFoundError):
        await driver.stat(paths.upload_dir("app/one", old))


async def test_purge_dates_a_create_cut_short_by_its_directory(tmp_path: Path) -> None:
    """A kill inside the first write of a create leaves an upload directory holding only
    the filesystem driver's hidden temporary file: no upload to anyone, so only its
    directory can date it, and purge must still clear it."""
    registry = Registry(FilesystemDriver(str(tmp_path)))
    uploads = tmp_path / paths.uploads_dir("cut/short").lstrip("/")
    stale, fresh = uploads / "a662edb5-775d-40e1-a417-a5a219a7c917", uploads / str(uuid4())
    for directory in (stale, fresh):
        directory.mkdir(parents=True)
        (directory / "startedat.tmp-b58ac997").write_bytes(b"")
    os.utime(stale, (OLD.timestamp(), OLD.timestamp()))

    purged = await purge_uploads(registry, timedelta(hours=168))
    assert [(u.upload_id, u.dated_by) for u in purged] == [(stale.name, "directory")]
    assert abs(purged[0].started_at.timestamp() - OLD.timestamp()) < 1
    assert not stale.exists() and fresh.exists()


async def test_purge_command(store_dir: Path) -> None:
    registry = Registry(FilesystemDriver(str(store_dir)))
    old = await make_upload(registry, "cli/app", OLD)
    young = await make_upload(registry, "cli/app", None)
    dry = subprocess.run(
        [LAYERFS, "purge-uploads", "--dry-run", str(store_dir)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert f"would delete cli/app {old}" in dry and young not in dry
    assert "1 uploads to delete" in dry
    out = subprocess.run(
        [LAYERFS, "purge-uploads", "--older-than", "24h", str(store_dir)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert f"deleted cli/app {old}" in out
    assert await registry.repository("cli/app").uploads.ids() == [young]
    bad = subprocess.run(
        [LAYERFS, "purge-uploads", "--older-than", "7y", str(store_dir)],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "invalid duration" in bad.stderr


def test_mount_option_purges_but_not_open_uploads(store_dir: Path, tmp_path: Path) -> None:
    mount = Mount(store_dir, tmp_path / "mnt", tmp_path / "log", "-o", "purge_uploads=2s")
    mount.start()
    try:
        repo = mount.mountpoint / "repositories/purge/me"
        repo.mkdir(parents=True)
        (repo / "_uploads/abandoned").write_bytes(b"left behind")
        held = open(repo / "_uploads/held", "wb")  # noqa: SIM115
        held.write(b"still writing")
        held.flush()
        deadline = time.monotonic() + 20
        while "abandoned" in os.listdir(repo / "_uploads") and time.monotonic() < deadline:
            time.sleep(0.2)
        assert os.listdir(repo / "_uploads") == ["held"]
        time.sleep(3)  # several more purge rounds, with "held" older than 2 s by now
        assert os.listdir(repo / "_uploads") == ["held"]
        held.write(b" more")
        held.close()
        assert (repo / "_uploads/held").read_bytes() == b"still writing more"
        assert "purged upload" in mount.log_text()
    finally:
        mount.stop()


async def test_purge_aborts_copies_into_blobs_cut_short(
    seaweedfs: SeaweedFS, tmp_path: Path
) -> None:
    """A kill inside a server-side copy into ``blobs/`` leaves a multipart upload that
    S3 keeps (and bills); purge-uploads aborts it by its age, and only below blobs/."""
    driver = S3Driver(
        S3_BUCKET, f"purge/{tmp_path.name}", endpoint=seaweedfs.endpoint,
        access_key="any", secret_key="any",
    )  # fmt: skip
    registry = Registry(driver)
    blob = paths.blob_data(Digest.of(b"never completed"))
    cut = driver.client.create_multipart_upload(Bucket=S3_BUCKET, Key=driver.key(blob))
    upload = await make_upload(registry, "app/one", None)  # its data is pending too
    [pending] = await driver.pending_writes(paths.BLOBS)
    assert (pending.path, pending.handle) == (blob, cut["UploadId"])

    assert await purge_interrupted_copies(registry, timedelta(hours=1)) == []
    assert await purge_interrupted_copies(registry, timedelta(0), dry_run=True) == [pending]
    assert await driver.pending_writes(paths.BLOBS) == [pending]
    purge = [
        LAYERFS,
        "purge-uploads",
        "--older-than",
        "0s",
        f"s3://{S3_BUCKET}/purge/{tmp_path.name}",
    ]
    env = {**os.environ, **seaweedfs.aws_env()}
    out = subprocess.run(purge, capture_output=True, text=True, env=env, check=True).stdout
    assert f"aborted an interrupted copy into {blob}" in out
    assert "1 uploads deleted, 1 interrupted copies aborted" in out
    assert await driver.pending_writes(paths.BLOBS) == []
    assert await purge_interrupted_copies(registry, timedelta(0)) == []
    assert await driver.pending_writes("/") == []  # the upload went with the purge
    assert upload not in await registry.repository("app/one").uploads.ids()


async def test_a_filesystem_keeps_no_pending_writes(tmp_path: Path) -> None:
    assert await FilesystemDriver(str(tmp_path)).pending_writes("/") == []
